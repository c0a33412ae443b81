-- Initial schema. Timestamps are REAL unix seconds; sets and dicts are JSON text.
-- Store, staff and shopper ids are deliberately not foreign keys: a shopper's page may name a
-- store the configuration does not know (yet), and that must not make a conversation fail.
-- Rows that only make sense inside a conversation do reference it.

CREATE TABLE stores (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    overflow            INTEGER NOT NULL DEFAULT 1,
    uplink_kbps         INTEGER,
    downlink_kbps       INTEGER,
    staff_cost_per_hour REAL
);

CREATE TABLE staff (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    store_id          TEXT NOT NULL,
    skills            TEXT NOT NULL DEFAULT '[]',
    languages         TEXT NOT NULL DEFAULT '[]',
    max_conversations INTEGER NOT NULL,
    channels          TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX staff_by_store ON staff (store_id);

CREATE TABLE presence_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    staff_id TEXT NOT NULL,
    presence TEXT NOT NULL,
    at       REAL NOT NULL
);
CREATE INDEX presence_log_by_staff ON presence_log (staff_id, at);

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    shopper_id  TEXT NOT NULL,
    store_id    TEXT,
    page_url    TEXT,
    sku         TEXT,
    skill       TEXT,
    language    TEXT,
    channel     TEXT NOT NULL,
    state       TEXT NOT NULL,
    staff_id    TEXT,
    opened_at   REAL NOT NULL,
    queued_at   REAL,
    closed_at   REAL,
    declined_by TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX conversations_by_opened ON conversations (opened_at);
CREATE INDEX conversations_by_shopper ON conversations (shopper_id, opened_at);
CREATE INDEX conversations_by_staff ON conversations (staff_id, opened_at);
CREATE INDEX conversations_by_store_state ON conversations (store_id, state, opened_at);
-- Restart recovery lists live conversations of every store.
CREATE INDEX conversations_by_state ON conversations (state, opened_at);

CREATE TABLE conversation_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    at              REAL NOT NULL,
    actor           TEXT,
    data            TEXT
);
CREATE INDEX conversation_events_by_conversation ON conversation_events (conversation_id, at);

CREATE TABLE messages (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    sender_role     TEXT NOT NULL,
    sender_id       TEXT,
    kind            TEXT NOT NULL,
    text            TEXT,
    card            TEXT,
    at              REAL NOT NULL,
    client_id       TEXT,
    PRIMARY KEY (conversation_id, seq),
    -- NULL client ids are distinct in SQLite, so messages without one never collide.
    UNIQUE (conversation_id, sender_id, client_id)
);

CREATE TABLE calls (
    id               TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    proposed_by      TEXT NOT NULL,
    proposed_at      REAL NOT NULL,
    started_at       REAL,
    ended_at         REAL,
    media_session_id TEXT
);
CREATE INDEX calls_by_conversation ON calls (conversation_id, proposed_at);

CREATE TABLE ratings (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    satisfaction    INTEGER NOT NULL CHECK (satisfaction BETWEEN 1 AND 5),
    recommendation  INTEGER NOT NULL CHECK (recommendation BETWEEN 0 AND 10),
    comment         TEXT,
    at              REAL NOT NULL
);

CREATE TABLE outcomes (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    order_placed    INTEGER NOT NULL,
    order_value     REAL,
    currency        TEXT,
    reported_by     TEXT NOT NULL,
    at              REAL NOT NULL
);

CREATE TABLE async_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    shopper_id      TEXT NOT NULL,
    store_id        TEXT,
    skill           TEXT,
    text            TEXT NOT NULL,
    contact         TEXT NOT NULL,
    created_at      REAL NOT NULL,
    answer          TEXT,
    answered_by     TEXT,
    answered_at     REAL
);
CREATE INDEX async_messages_by_conversation ON async_messages (conversation_id);
CREATE INDEX async_messages_by_shopper ON async_messages (shopper_id);
CREATE INDEX async_messages_by_store ON async_messages (store_id, created_at);
-- The staff inbox asks for unanswered messages over and over; keep that cheap.
CREATE INDEX async_messages_unanswered ON async_messages (created_at) WHERE answered_at IS NULL;
