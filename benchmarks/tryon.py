"""CPU cost of the virtual try-on path per 640x480 frame: decode, detect, blend, encode.

    python -m benchmarks.tryon --frames 300 --json

The input is a real VP8 stream: the scikit-image astronaut photo (a person, head to
waist) padded to 640x480 and moved slightly every frame (a slow sway, a small roll and
a little sensor noise), encoded beforehand with aiortc's ``Vp8Encoder`` (not timed: that
is the customer's browser). Each frame then goes through exactly what the media path
will do, each stage timed with ``time.process_time`` (CPU of the whole process, so
codec and OpenCV worker threads count too):

- decode: ``Vp8Decoder.decode`` + conversion to a BGR array;
- detect: ``needs_detection`` + ``detect`` + ``update`` when due (amortized: most frames
  cost nothing here, so the mean is the figure that matters);
- blend: smoothed placement + warp + alpha blend (``TryOnRenderer.apply``);
- encode: BGR to a yuv420p ``VideoFrame`` + VP8 encode to RTP payloads at 1 Mbps, with the
  encoder the server uses (``mediaserver.tryon.encoding.FastVp8Encoder``: libvpx
  ``cpu-used -12``, no denoiser); ``--aiortc-encoder`` uses aiortc's ``Vp8Encoder``
  (``cpu-used -6``, denoiser on) instead.

Conversions use ``mediaserver.tryon.frames`` (OpenCV I420); ``--av-convert`` uses PyAV's
own conversions instead, to show what that would cost (~1.7 ms more per frame).

``--scene empty`` runs the same on a photo with no person (coffee cup), where every
detection is a whole-frame search that finds nothing.

``--pipeline`` measures the server's own code instead of the stages one by one: the RTP
packets of each frame go into a camera ``Producer`` whose tap feeds a real
``mediaserver.tryon.stream.TryOnStream`` (reassembly on the event loop, decode + blend +
encode in its worker thread, face detection in the shared detection pool, packetizing
into the try-on ``Producer``). Frames are fed at 30 fps, one in flight at a time; each
frame's sample is the process CPU time from its first packet to its last output packet,
so detection, running in its own thread, is counted in the frames it overlaps
(amortized); the mean is the whole run's process CPU time divided by the frames.

The budget is 10 ms of CPU per frame in total (mean), so one core carries three
30 fps try-on streams. OpenCV runs single-threaded by default here (``--cv-threads``):
in a server with many streams, OpenCV's own thread pool only adds CPU (the same Haar
pass costs ~10-20% more CPU with 2 threads for a lower wall time).
"""

from __future__ import annotations

import argparse
import fractions
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 640, 480, 30
STAGES = ("decode", "detect", "blend", "encode")


def astronaut_frame(scene: str = "person") -> np.ndarray:
    """The astronaut photo (or, for ``scene="empty"``, the coffee-cup photo: no person)
    scaled to the frame height and centred on a grey 640x480 frame."""
    from skimage import data

    photo = cv2.cvtColor(data.astronaut() if scene == "person" else data.coffee(),
                         cv2.COLOR_RGB2BGR)
    frame = np.full((HEIGHT, WIDTH, 3), 96, np.uint8)
    width = min(WIDTH, round(photo.shape[1] * HEIGHT / photo.shape[0]))
    left = (WIDTH - width) // 2
    frame[:, left:left + width] = cv2.resize(photo, (width, HEIGHT),
                                             interpolation=cv2.INTER_AREA)
    return frame


def moving_frames(count: int, scene: str = "person", seed: int = 5) -> list[np.ndarray]:
    """``count`` frames of the photo swaying by up to 14 px and 3 degrees, with noise."""
    base = astronaut_frame(scene)
    rng = np.random.default_rng(seed)
    frames = []
    for n in range(count):
        t = n / FPS
        dx, dy = 14 * math.sin(2 * math.pi * t / 3.0), 5 * math.sin(2 * math.pi * t / 2.3)
        angle = 3 * math.sin(2 * math.pi * t / 4.1)
        matrix = cv2.getRotationMatrix2D((WIDTH / 2, HEIGHT / 2), angle, 1.0)
        matrix[:, 2] += (dx, dy)
        moved = cv2.warpAffine(base, matrix, (WIDTH, HEIGHT), borderMode=cv2.BORDER_REPLICATE)
        noise = rng.integers(0, 4, moved.shape, np.uint8)
        frames.append(cv2.add(moved, noise))
    return frames


def encode_stream(frames: Sequence[np.ndarray]) -> list[bytes]:
    """The frames as VP8 frames (descriptor stripped), as a receiver would reassemble."""
    from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
    from av import VideoFrame

    encoder = Vp8Encoder()
    stream = []
    for n, image in enumerate(frames):
        frame = VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base = n * 3000, fractions.Fraction(1, 90_000)
        payloads, _ = encoder.encode(frame, force_keyframe=n == 0)
        stream.append(b"".join(vp8_depayload(p) for p in payloads))
    return stream


def encode_packets(frames: Sequence[np.ndarray]) -> list[list[bytes]]:
    """The frames as VP8 RTP payloads (descriptors on), as a browser would send them."""
    from aiortc.codecs.vpx import Vp8Encoder
    from av import VideoFrame

    encoder = Vp8Encoder()
    encoder.target_bitrate = 1_500_000
    stream = []
    for n, image in enumerate(frames):
        frame = VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base = n * 3000, fractions.Fraction(1, 90_000)
        payloads, _ = encoder.encode(frame, force_keyframe=n == 0)
        stream.append(payloads)
    return stream


async def _run_pipeline(frame_count: int, garment_id: str, scene: str,
                        bitrate_kbps: int) -> dict[str, Any]:
    import asyncio

    from mediaserver.producer import Producer
    from mediaserver.rtp_header import build_packet
    from mediaserver.tryon import Catalogue
    from mediaserver.tryon.service import TryOnService

    packets = encode_packets(moving_frames(frame_count, scene))
    threads = cv2.getNumThreads()
    service = TryOnService(Catalogue.with_samples(), bitrate=bitrate_kbps * 1000)
    cv2.setNumThreads(threads)  # the service sets 1; honour --cv-threads
    stream = service.open_stream("shopper:bench", "video/vp8")
    stream.set_garment(garment_id)
    camera = Producer("shopper:bench", "video", 0x5EED, "video/vp8", 96, 90_000, None,
                      lambda _producer: None)
    stream.follow(camera, time.monotonic())
    out = asyncio.Event()
    stream.on_output = out.set
    clock = time.process_time
    samples: list[float] = []
    seq = 1000
    started = clock()
    wall = time.monotonic()
    for n, payloads in enumerate(packets):
        # Paced like a camera: detection is scheduled in wall time (every 5/30 s), so a
        # faster feed would make it look cheaper per frame than it is.
        await asyncio.sleep(max(0.0, wall + n / FPS - time.monotonic()))
        out.clear()
        begin = clock()
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            seq += 1
            marker = int(i == last)
            camera.receive(build_packet(96, marker, seq & 0xFFFF, n * 3000, 0x5EED, payload),
                           marker, seq & 0xFFFF, n * 3000, 12, time.monotonic())
        await asyncio.wait_for(out.wait(), 10)
        samples.append((clock() - begin) * 1000)
    stream.close()
    service.close(wait=True)  # the last detection's CPU lands in the total too
    total_ms = (clock() - started) * 1000
    mean = total_ms / len(samples)
    worker = stream.worker_cpu_s * 1000 / len(samples)
    detect = stream.detect_cpu_s * 1000 / len(samples)
    return {
        "benchmark": "tryon", "mode": "pipeline", "frames": frame_count,
        "size": f"{WIDTH}x{HEIGHT}", "scene": scene, "garment": garment_id,
        "cv_threads": threads, "bitrate_kbps": bitrate_kbps,
        "detections": stream.detections,
        "frames_out": stream.frames_out, "frames_skipped": stream.frames_skipped,
        "median_ms": {"total": round(statistics.median(samples), 3)},
        "mean_ms": {"total": round(mean, 3), "decode_blend_encode": round(worker, 3),
                    "detect": round(detect, 3),
                    "packets_and_loop": round(mean - worker - detect, 3)},
        "p95_ms": {"total": round(float(np.percentile(samples, 95)), 3)},
        "budget_ms": 10.0, "within_budget": mean <= 10.0,
        "streams_per_core_30fps": round(1000 / (FPS * mean), 2),
    }


def run_pipeline(frame_count: int, garment_id: str = "sample-tshirt",
                 scene: str = "person", bitrate_kbps: int = 1000) -> dict[str, Any]:
    import asyncio

    return asyncio.run(_run_pipeline(frame_count, garment_id, scene, bitrate_kbps))


def run(frame_count: int, garment_id: str = "sample-tshirt", av_convert: bool = False,
        scene: str = "person", aiortc_encoder: bool = False) -> dict[str, Any]:
    from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder
    from aiortc.jitterbuffer import JitterFrame
    from av import VideoFrame

    from mediaserver.tryon import Catalogue, FaceDetector, TryOnRenderer
    from mediaserver.tryon.frames import bgr_from_video_frame, video_frame_from_bgr

    def to_bgr(frame: VideoFrame) -> np.ndarray:
        return frame.to_ndarray(format="bgr24") if av_convert else bgr_from_video_frame(frame)

    def from_bgr(image: np.ndarray) -> VideoFrame:
        if av_convert:
            return VideoFrame.from_ndarray(image, format="bgr24")
        return video_frame_from_bgr(image)

    stream = encode_stream(moving_frames(frame_count, scene))
    renderer = TryOnRenderer(Catalogue.with_samples(), detector=FaceDetector())
    renderer.set_garment(garment_id)
    from mediaserver.tryon.encoding import FastVp8Encoder

    decoder = Vp8Decoder()
    encoder: Any = Vp8Encoder() if aiortc_encoder else FastVp8Encoder()
    encoder.target_bitrate = 1_000_000
    clock = time.process_time
    samples: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total")}
    detections = drawn = 0

    def timed(stage: str, work: Callable[[], Any]) -> Any:
        start = clock()
        result = work()
        samples[stage].append((clock() - start) * 1000)
        return result

    for n, data in enumerate(stream):
        now = n / FPS
        timestamp = n * 3000

        def decode(data: bytes = data, timestamp: int = timestamp) -> np.ndarray:
            (decoded,) = decoder.decode(JitterFrame(data=data, timestamp=timestamp))
            return to_bgr(decoded)

        image = timed("decode", decode)

        def detect(image: np.ndarray = image, now: float = now) -> bool:
            if not renderer.needs_detection(now):
                return False
            hint = renderer.begin_detection(now)
            renderer.update(renderer.detect(image, hint), now)
            return True

        detections += timed("detect", detect)

        def blend(image: np.ndarray = image, now: float = now) -> np.ndarray:
            return renderer.apply(image, renderer.placement(now))

        out = timed("blend", blend)
        drawn += out is not image

        def encode(out: np.ndarray = out, timestamp: int = timestamp) -> list[bytes]:
            frame = from_bgr(out)
            frame.pts, frame.time_base = timestamp, fractions.Fraction(1, 90_000)
            payloads, _ = encoder.encode(frame)
            return payloads

        timed("encode", encode)
        samples["total"].append(sum(samples[stage][-1] for stage in STAGES))

    median = {k: round(statistics.median(v), 3) for k, v in samples.items()}
    mean = {k: round(statistics.fmean(v), 3) for k, v in samples.items()}
    p95 = {k: round(float(np.percentile(v, 95)), 3) for k, v in samples.items()}
    return {
        "benchmark": "tryon",
        "frames": frame_count,
        "size": f"{WIDTH}x{HEIGHT}",
        "scene": scene,
        "garment": garment_id,
        "cv_threads": cv2.getNumThreads(),
        "conversion": "pyav" if av_convert else "opencv-i420",
        "encoder": "aiortc" if aiortc_encoder else "fast",
        "detections": detections,
        "frames_with_garment": drawn,
        "median_ms": median,
        "mean_ms": mean,
        "p95_ms": p95,
        "budget_ms": 10.0,
        "within_budget": mean["total"] <= 10.0,
        "streams_per_core_30fps": round(1000 / (FPS * mean["total"]), 2),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Try-on CPU cost per 640x480 frame")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--garment", default="sample-tshirt")
    parser.add_argument("--cv-threads", type=int, default=1,
                        help="cv2.setNumThreads (0 = OpenCV default pool)")
    parser.add_argument("--scene", choices=("person", "empty"), default="person",
                        help="empty: a photo with no person (whole-frame searches only)")
    parser.add_argument("--av-convert", action="store_true",
                        help="convert BGR<->yuv420p with PyAV instead of OpenCV")
    parser.add_argument("--aiortc-encoder", action="store_true",
                        help="encode with aiortc's Vp8Encoder instead of the server's")
    parser.add_argument("--pipeline", action="store_true",
                        help="run the server's TryOnStream end to end (RTP in, RTP out)")
    parser.add_argument("--bitrate-kbps", type=int, default=1000,
                        help="--pipeline: the try-on stream's bitrate (tryon.bitrate_kbps)")
    parser.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    args = parser.parse_args(argv)
    if args.cv_threads > 0:
        cv2.setNumThreads(args.cv_threads)
    summary = sys.stderr if args.json else sys.stdout
    if args.pipeline:
        result = run_pipeline(args.frames, args.garment, args.scene, args.bitrate_kbps)
        if args.json:
            print(json.dumps(result), flush=True)
        worker, detect = (result["mean_ms"][k] for k in ("decode_blend_encode", "detect"))
        mean = result["mean_ms"]["total"]
        print(f"try-on pipeline (RTP in, RTP out, {args.bitrate_kbps} kbps), "
              f"{result['scene']} scene, "
              f"{result['frames']} frames {result['size']}, {result['detections']} "
              f"detections, {result['frames_out']} frames out; CPU per frame: median "
              f"{result['median_ms']['total']:.2f} ms, mean {mean:.2f}"
              f" ms (decode+blend+encode {worker:.2f}, detection {detect:.2f}, packets and "
              f"event loop {mean - worker - detect:.2f}), "
              f"p95 {result['p95_ms']['total']:.2f} ms vs budget 10 ms: "
              f"{result['streams_per_core_30fps']} streams/core at 30 fps", file=summary)
        return
    result = run(args.frames, args.garment, args.av_convert, args.scene, args.aiortc_encoder)
    if args.json:
        print(json.dumps(result), flush=True)
    print(f"try-on, {result['scene']} scene, {result['frames']} frames {result['size']}, "
          f"cv threads "
          f"{result['cv_threads']}, {result['conversion']} conversion, "
          f"{result['detections']} detections, garment drawn on "
          f"{result['frames_with_garment']} frames", file=summary)
    print(f"{'stage':8} {'median':>8} {'mean':>8} {'p95':>8}  (ms CPU per frame)", file=summary)
    for stage in (*STAGES, "total"):
        print(f"{stage:8} {result['median_ms'][stage]:8.3f} {result['mean_ms'][stage]:8.3f} "
              f"{result['p95_ms'][stage]:8.3f}", file=summary)
    print(f"mean total {result['mean_ms']['total']:.2f} ms vs budget 10 ms: "
          f"{result['streams_per_core_30fps']} streams/core at 30 fps", file=summary)


if __name__ == "__main__":
    main()
