"""The report's PNG plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_plots(report: dict[str, Any], out_dir: Path, prefix: str = "") -> list[str]:
    """Write the plots; return their file names. Needs the `bench` extra (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / f"{prefix}{name}", dpi=90)
        plt.close(fig)
        written.append(f"{prefix}{name}")

    # Sessions over time.
    line = report["timeline"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    t = [p["t"] for p in line]
    for key, label in (("up", "up"), ("in_call", "in call"), ("done", "done"),
                       ("failed", "failed")):
        ax.step(t, [p[key] for p in line], where="post", label=label)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("consultations")
    ax.set_title("Consultations over time")
    ax.legend()
    save(fig, "sessions_over_time.png")

    # Join-time distribution.
    sessions = report["session_results"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    series = [("open_to_assigned", "chat opened → staff assigned"),
              ("escalate_to_first_packet", "escalation → first media packet"),
              ("escalate_to_first_keyframe", "escalation → first keyframe")]
    for key, label in series:
        values = sorted(1000 * s["times"][key] for s in sessions
                        if s["times"].get(key) is not None)
        if values:
            ax.plot(values, [(i + 1) / len(values) for i in range(len(values))],
                    drawstyle="steps-post", label=label)
    ax.set_xlabel("ms")
    ax.set_ylabel("share of consultations")
    ax.set_title("Join times (cumulative)")
    ax.legend(fontsize=8)
    save(fig, "join_times.png")

    # Server CPU and memory.
    srv = report["server_series"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    t = [p["t"] for p in srv]
    ax1.plot(t, [p["cpu_percent"] if p["cpu_percent"] is not None else float("nan")
                 for p in srv], label="server process (% of one core)")
    ax1.plot(t, [p["generator_cpu_percent"] if p.get("generator_cpu_percent") is not None
                 else float("nan") for p in srv], label="generator processes (% of one core)")
    cores = max((len(p["cores_busy_percent"]) for p in srv), default=0)
    for c in range(cores):
        ax1.plot(t, [p["cores_busy_percent"][c] if c < len(p["cores_busy_percent"])
                     else float("nan") for p in srv], linestyle=":",
                 label=f"machine CPU {c} busy %")
    ax1.set_ylabel("CPU %")
    ax1.legend(fontsize=7)
    ax1.set_title("Server CPU and memory")
    ax2.plot(t, [p["rss_mb"] if p["rss_mb"] is not None else float("nan") for p in srv])
    ax2.set_ylabel("RSS (MB)")
    ax2.set_xlabel("time (s)")
    save(fig, "server_cpu_memory.png")

    # Loss and latency percentiles.
    media = report["media"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.5))
    labels = ["p50", "p95", "p99", "max"]
    for kind in ("audio", "video"):
        lat = media[kind]["latency_ms"]
        loss = media[kind]["stream_loss_percent"]
        ax1.plot(labels, [lat[k] if lat[k] is not None else float("nan") for k in labels],
                 "o-", label=kind)
        ax2.plot(labels, [loss[k] if loss[k] is not None else float("nan") for k in labels],
                 "o-", label=kind)
    ax1.set_ylabel("one-way latency (ms)")
    ax1.set_title("Packet latency")
    ax1.legend()
    ax2.set_ylabel("loss per stream (%)")
    ax2.set_title("Loss")
    ax2.legend()
    save(fig, "loss_latency.png")

    if "capacity" in report and report["capacity"]["steps"]:
        steps = sorted(report["capacity"]["steps"], key=lambda s: s["sessions"])
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot([s["sessions"] for s in steps],
                [s["server_cpu_steady"] if s["server_cpu_steady"] is not None
                 else float("nan") for s in steps], "o-")
        ax.set_xlabel("concurrent consultations")
        ax.set_ylabel("server CPU (% of one core)")
        ax.set_title("Capacity search")
        save(fig, "capacity.png")
    return written
