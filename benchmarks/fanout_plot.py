"""The plot of a `benchmarks.fanout --sweep`: CPU per forwarded packet and latency against
the number of receivers, with the targets the SFU is held to, so a run reads at a glance.

It also renders saved results: `python -m benchmarks.fanout_plot results.jsonl out.png`
(the lines `--json-out` appends; the last run of each subscriber count is drawn).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# The SFU's targets on the reference 2-core machine (issue 3): (subscribers, value).
CPU_TARGETS_US = ((16, 12.0), (256, 8.0))
LATENCY_TARGETS_MS = {"p50": ((16, 1.0),), "p99": ((16, 5.0),)}


def plot(results: list[dict[str, Any]], path: Path) -> bool:
    """Write the PNG; False (and a note on stderr) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (the JSON lines have the numbers)",
              file=sys.stderr)
        return False
    results = sorted(results, key=lambda r: r["subscribers"])
    ns = [r["subscribers"] for r in results]
    sfu = results[0]["mode"] == "sfu"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    cpu = [r["server_cpu_us_per_forwarded_packet"] for r in results]
    windowed = all("window_cpu_us" in r for r in results)
    ax1.plot(ns, cpu, "o-", label="median of the windows" if windowed else "measured")
    if windowed:
        low = [c - min(r["window_cpu_us"]) for c, r in zip(cpu, results, strict=True)]
        high = [max(r["window_cpu_us"]) - c for c, r in zip(cpu, results, strict=True)]
        ax1.errorbar(ns, cpu, yerr=[low, high], fmt="none", capsize=3,
                     label=f"min-max of {results[0]['windows']} windows")
    if sfu:
        ax1.plot(*zip(*CPU_TARGETS_US, strict=True), "rv", label="target (at most)")
    ax1.legend()
    ax1.set_ylim(bottom=0)
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(ns, [str(n) for n in ns])
    ax1.set_xlabel("subscribers")
    ax1.set_ylabel("server CPU per forwarded packet (us)")
    for key, colour in (("p50", "C0"), ("p99", "C1")):
        ax2.plot(ns, [r[f"latency_ms_{key}"] for r in results], "o-", color=colour, label=key)
        if sfu:
            ax2.plot(*zip(*LATENCY_TARGETS_MS[key], strict=True), "v", color=colour,
                     label=f"{key} target (under)")
    ax2.set_ylim(bottom=0)
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(ns, [str(n) for n in ns])
    ax2.set_xlabel("subscribers")
    ax2.set_ylabel("publisher send -> receiver arrival (ms)")
    ax2.legend()
    fig.suptitle(f"fan-out, mode {results[0]['mode']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    print(f"plot written to {path}", file=sys.stderr)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description="Plot saved fan-out results.")
    parser.add_argument("results", type=Path, help="JSON lines from --json or --json-out")
    parser.add_argument("out", type=Path, help="PNG to write")
    args = parser.parse_args()
    latest: dict[int, dict[str, Any]] = {}
    for line in args.results.read_text().splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            latest[result["subscribers"]] = result
    if not latest:
        sys.exit(f"{args.results}: no results")
    if not plot(list(latest.values()), args.out):
        sys.exit(1)


if __name__ == "__main__":
    main()
