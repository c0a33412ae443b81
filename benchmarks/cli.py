"""`shopcall bench`: simulate many real consultations against a shopcall server and report
what it carried. See README, "Load testing (`shopcall bench`)".

    shopcall bench --sessions 20 --ramp 2 --call-seconds 30 --out bench-results
    shopcall bench --find-capacity --call-seconds 20 --max-sessions 64
    shopcall bench --url https://shop.example.com --operator-token T --auth-secret S ...
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from pathlib import Path

from benchmarks.load.capacity import Limits
from benchmarks.load.plan import MEDIA_PATHS, Options


def _share(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"a share is between 0 and 1: {value!r}")
    return number


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value!r}")
    return number


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shopcall bench", description=__doc__.splitlines()[0])
    load = p.add_argument_group("load")
    load.add_argument("--sessions", type=int, default=4, help="consultations (default 4)")
    load.add_argument("--ramp", type=_positive, default=2.0, metavar="PER_S",
                      help="consultations started per second (default 2)")
    load.add_argument("--call-seconds", type=_positive, default=10.0,
                      help="media time of each call (default 10)")
    load.add_argument("--chat-messages", type=int, default=2,
                      help="chat messages each side sends before the escalation (default 2)")
    load.add_argument("--audio-only-share", type=_share, default=0.0,
                      help="share of audio-only calls (default 0)")
    load.add_argument("--second-staff-share", type=_share, default=0.0,
                      help="share of calls a second staff member tries to join (default 0)")
    load.add_argument("--tryon-share", type=_share, default=0.0,
                      help="share of calls that switch try-on on (tryon.set; default 0)")
    load.add_argument("--stores", type=int, default=2, help="bench stores (default 2)")
    load.add_argument("--skills", default="guitars,pianos",
                      help="comma-separated skills mix (default guitars,pianos)")
    load.add_argument("--language", default="en")
    load.add_argument("--no-staff", action="store_true",
                      help="simulate no staff: every consultation should fail unassigned")
    load.add_argument("--assign-timeout", type=_positive, default=15.0,
                      help="seconds a consultation waits for a staff member (default 15)")
    load.add_argument("--step-timeout", type=_positive, default=15.0,
                      help="seconds any other step may take (default 15)")
    load.add_argument("--seed", type=int, default=1)

    gen = p.add_argument_group("generator")
    gen.add_argument("--workers", type=int, default=1, help="generator processes (default 1)")
    gen.add_argument("--decode-sample", type=int, default=1,
                     help="consultations per worker whose shopper really decodes the staff's video "
                          "(default 1)")
    gen.add_argument("--media-path", choices=MEDIA_PATHS, default="raw",
                     help="raw (default): packet-level peers, cheap enough to load a server "
                          "core from one generator core; aiortc: a full RTCPeerConnection "
                          "per participant, to compare")
    gen.add_argument("--client-address", default=None,
                     help="ICE host address of the simulated clients (default 127.0.0.1 "
                          "with a server the tool starts, all interfaces with --url)")
    gen.add_argument("--no-pin", action="store_true",
                     help="do not pin the server and the generators to separate CPUs")
    gen.add_argument("--cache-dir", type=Path,
                     help="where the pre-encoded media loop is cached "
                          "(default benchmarks/.cache)")

    target = p.add_argument_group("server")
    target.add_argument("--url", help="a running deployment (default: start a server)")
    target.add_argument("--operator-token", default=os.environ.get("SHOPCALL_OPERATOR_TOKEN"),
                        help="operator token for --url (or SHOPCALL_OPERATOR_TOKEN)")
    target.add_argument("--auth-secret", default=os.environ.get("SHOPCALL_AUTH__SECRET"),
                        help="the deployment's auth secret, to mint the simulated staff's "
                             "tokens (or SHOPCALL_AUTH__SECRET)")

    cap = p.add_argument_group("capacity search")
    cap.add_argument("--find-capacity", action="store_true",
                     help="raise N until loss > 1%%, join p99 > 2 s or CPU saturation")
    cap.add_argument("--start-sessions", type=int, default=2)
    cap.add_argument("--max-sessions", type=int, default=256)
    cap.add_argument("--resolution", type=int, default=1,
                     help="stop bisecting when the bounds are this close (default 1)")
    cap.add_argument("--max-loss", type=float, default=0.01)
    cap.add_argument("--max-join-p99", type=float, default=2.0, metavar="SECONDS")

    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, default=Path("bench-results"),
                     help="directory for report.json, summary.md and the PNG plots")
    out.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    skills = [s.strip() for s in args.skills.split(",") if s.strip()]
    if args.sessions < 1 or args.workers < 1 or args.stores < 1 or not skills:
        print("shopcall bench: --sessions, --workers, --stores and --skills must be at "
              "least 1", file=sys.stderr)
        return 2
    client_address = args.client_address or (None if args.url else "127.0.0.1")
    options = Options(
        sessions=args.sessions, ramp_per_s=args.ramp, call_s=args.call_seconds,
        chat_messages=args.chat_messages, audio_only_share=args.audio_only_share,
        second_staff_share=args.second_staff_share, tryon_share=args.tryon_share,
        stores=args.stores, skills=skills, language=args.language, workers=args.workers,
        decode_sample=args.decode_sample, url=args.url, operator_token=args.operator_token,
        auth_secret=args.auth_secret, staff=not args.no_staff,
        assign_timeout_s=args.assign_timeout, step_timeout_s=args.step_timeout,
        seed=args.seed, out_dir=args.out, cache_dir=args.cache_dir,
        client_address=client_address, quiet=args.quiet,
        server_cpu=None if args.no_pin else 0, media_path=args.media_path)
    command = "shopcall bench " + shlex.join(argv)
    from benchmarks.load.runner import run

    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    report = runner(run(options, command, find_capacity=args.find_capacity,
                        start_sessions=args.start_sessions, max_sessions=args.max_sessions,
                        resolution=args.resolution,
                        limits=Limits(max_loss=args.max_loss,
                                      max_join_p99_s=args.max_join_p99)))
    s = report["sessions"]
    print(f"{s['ok']}/{s['planned']} consultations completed; report in "
          f"{args.out / 'report.json'}, summary in {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
