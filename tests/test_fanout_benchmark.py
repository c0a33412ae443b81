"""The fan-out benchmark runs end to end (its timing targets live in the benchmark, not here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from mediaserver import consumer as consumer_module

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"subscribers", "forwarded_packets_per_s", "server_cpu_us_per_forwarded_packet",
        "latency_ms_p50", "latency_ms_p99", "loss_ratio", "decoded_fps"}


@pytest.mark.timeout(90)
def test_fanout_benchmark_reports_a_valid_run(tmp_path: Path) -> None:
    saved = tmp_path / "runs.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.fanout", "--subscribers", "2", "--seconds", "3",
         "--warmup", "1", "--json", "--quiet", "--json-out", str(saved)],
        cwd=ROOT, capture_output=True, text=True, timeout=80, check=False)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout
    result = json.loads(lines[0])
    assert KEYS <= result.keys(), sorted(KEYS - result.keys())
    assert result["subscribers"] == 2
    assert result["forwarded_packets_per_s"] > 0
    assert result["server_cpu_us_per_forwarded_packet"] is not None
    assert result["latency_samples"] > 0
    assert result["decoded_fps"] > 0
    assert result["loss_ratio"] < 0.05
    # The result names the code that forwarded and the machine, so runs can be compared.
    native = consumer_module.native_fanout is not None
    assert result["server_paths"]["fanout"] == ("native" if native else "python")
    assert result["server_paths"]["srtp_protect"], result["server_paths"]
    assert result["machine"]["cpus"] == os.cpu_count()
    assert result["machine"]["aiortc"] == metadata.version("aiortc")

    # The saved line plots (what an operator does to compare runs later).
    png = tmp_path / "runs.png"
    done = subprocess.run([sys.executable, "-m", "benchmarks.fanout_plot", str(saved), str(png)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(saved.read_text()) == result


@pytest.mark.timeout(90)
def test_a_run_without_the_c_extension_says_so() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.fanout", "--subscribers", "1", "--seconds", "1",
         "--warmup", "0.5", "--json", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=80, check=False,
        env={**os.environ, "SHOPCALL_NATIVE_FANOUT": "0"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["server_paths"] == {"fanout": "python", "srtp_protect": ["libsrtp"]}
    assert result["forwarded_packets_per_s"] > 0


def test_plotting_nothing_is_refused_clearly(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("plot written to nowhere\n")
    done = subprocess.run([sys.executable, "-m", "benchmarks.fanout_plot", str(empty),
                           str(tmp_path / "x.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "no results" in done.stderr
    assert not (tmp_path / "x.png").exists()
