"""Pre-encoded media for the fan-out benchmark: encoded once, replayed with no encoding cost.

``load_media()`` returns ~10 s of VP8 640x480 at 30 fps (aiortc's Vp8Encoder at its
1.5 Mbps maximum target) and Opus 20 ms frames (aiortc's OpusEncoder), already split into
RTP payloads. The first call encodes (a few seconds) and caches the result under
``benchmarks/.cache/``; later calls load the file.

The picture is a moving diagonal gradient with a sweeping bar and film grain on the lower
third, so that the encoder really spends ~1.5 Mbps (flat colours code to almost nothing).
Frame 0 is the only keyframe: the publisher answers a keyframe request by restarting the
loop at frame 0, and the loop wraps there too. The audio is a tone plus low noise, so every
Opus payload in the loop is distinct (the benchmark identifies packets by payload).
"""

from __future__ import annotations

import fractions
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
CACHE_VERSION = 1
WIDTH, HEIGHT, FPS = 640, 480, 30
VIDEO_BPS = 1_500_000
SECONDS = 10
AUDIO_FRAME_S = 0.02
VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000


@dataclass
class Media:
    video: list[list[bytes]]  # per frame: VP8 RTP payloads (descriptor included)
    audio: list[bytes]  # per 20 ms: one Opus payload
    video_bytes: int

    @property
    def video_bps(self) -> float:
        return self.video_bytes * 8 / (len(self.video) / FPS)


def _encode() -> Media:
    import numpy as np
    from aiortc.codecs.opus import OpusEncoder
    from aiortc.codecs.vpx import Vp8Encoder
    from av import AudioFrame, VideoFrame

    encoder = Vp8Encoder()
    encoder.target_bitrate = VIDEO_BPS
    rng = np.random.default_rng(11)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    video: list[list[bytes]] = []
    total = 0
    grain_rows = HEIGHT // 3
    for n in range(FPS * SECONDS):
        image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
        image[..., 0] = (xs + ys + 4 * n) % 256
        image[..., 1] = (xs // 2 + 3 * n) % 256
        image[..., 2] = (ys // 2 + 128) % 256
        x = (n * 6) % WIDTH
        image[:, x:x + 12] = 255
        grain = rng.integers(-24, 25, (grain_rows, WIDTH, 3), np.int16)
        image[-grain_rows:] = np.clip(image[-grain_rows:].astype(np.int16) + grain, 0, 255)
        frame = VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = n * VIDEO_CLOCK // FPS
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        payloads, _ = encoder.encode(frame, force_keyframe=n == 0)
        video.append(payloads)
        total += sum(len(p) for p in payloads)

    opus = OpusEncoder()
    samples = int(AUDIO_CLOCK * AUDIO_FRAME_S)
    audio: list[bytes] = []
    t = np.arange(samples * 50 * SECONDS) / AUDIO_CLOCK
    signal = 6000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 300, t.shape)
    pcm = np.clip(signal, -32768, 32767).astype(np.int16)
    for n in range(50 * SECONDS):
        chunk = np.repeat(pcm[n * samples:(n + 1) * samples], 2).reshape(1, -1)
        frame = AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate = AUDIO_CLOCK
        frame.pts = n * samples
        frame.time_base = fractions.Fraction(1, AUDIO_CLOCK)
        payloads, _ = opus.encode(frame)
        audio.extend(payloads)
    return Media(video, audio, total)


def load_media(cache_dir: Path = CACHE_DIR) -> Media:
    path = cache_dir / f"fanout_media_v{CACHE_VERSION}.pickle"
    if path.exists():
        with path.open("rb") as f:
            data = pickle.load(f)
        return Media(data["video"], data["audio"], data["video_bytes"])
    print(f"encoding {SECONDS} s of {WIDTH}x{HEIGHT} VP8 and Opus once into {path} ...",
          file=sys.stderr, flush=True)
    media = _encode()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump({"video": media.video, "audio": media.audio,
                     "video_bytes": media.video_bytes}, f)
    tmp.replace(path)
    return media


if __name__ == "__main__":
    m = load_media()
    print(f"video {len(m.video)} frames, {m.video_bps / 1e6:.2f} Mbps, "
          f"{sum(len(f) for f in m.video) / len(m.video):.1f} packets/frame, keyframe "
          f"{len(m.video[0])} packets; audio {len(m.audio)} frames, "
          f"{len(set(m.audio))} distinct")
