-- What the media server measured over each call (issue 7: call quality joined to results).
-- One row per call that ran through the SFU, written when the call ends. Definitions are in
-- mediaserver/call_quality.py; loss fractions are 0-1 and NULL when the call had no video.

CREATE TABLE call_quality (
    call_id                 TEXT PRIMARY KEY REFERENCES calls (id) ON DELETE CASCADE,
    measured_s              REAL NOT NULL,
    video_freezes           INTEGER NOT NULL DEFAULT 0,
    freeze_s                REAL NOT NULL DEFAULT 0,
    audio_only_fallbacks    INTEGER NOT NULL DEFAULT 0,
    audio_only_s            REAL NOT NULL DEFAULT 0,
    loss_fraction           REAL,
    uplink_loss_fraction    REAL,
    downlink_loss_fraction  REAL,
    max_rtt_ms              REAL,
    video_packets_forwarded INTEGER NOT NULL DEFAULT 0,
    audio_packets_forwarded INTEGER NOT NULL DEFAULT 0,
    recorded_at             REAL NOT NULL
);
