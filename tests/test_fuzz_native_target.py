"""The `make fuzz` driver (benchmarks/fuzz_native.py) still runs, against the normal build.

`make fuzz` builds the C extensions with ASan and UBSan and takes a minute, so the suite does
not run it; but a driver nobody runs rots (an API it calls changes, an oracle goes stale and
reports nonsense, a target stops reaching the C code) and the next `make fuzz` would then
fail for the driver's sake, not the extensions'. This runs it for a few seconds, without
sanitizers, on the normally built extensions with a fixed seed: every target must run, reach
the native code, and find nothing. It is a process of its own, as under `make fuzz`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def test_fuzz_driver_runs_clean_on_the_normal_build() -> None:
    if importlib.util.find_spec("mediaserver._fanout") is None:
        pytest.skip("mediaserver._fanout is not built: nothing to fuzz")
    if os.environ.get("SHOPCALL_NATIVE_FANOUT", "1") == "0":
        pytest.skip("native fan-out disabled (SHOPCALL_NATIVE_FANOUT=0)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LD_PRELOAD", "ASAN_",
                                                                     "UBSAN_"))}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.fuzz_native", "--seconds", "4", "--seed", "7",
         "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["findings"] == [] and summary["sanitizers"] is False
    targets = summary["targets"]
    expected = {"fanout_extremes", "fanout_garbage", "fanout_reentry", "configure",
                "consumer_attributes", "target", "unprotect"}
    if importlib.util.find_spec("mediaserver._srtp_gcm") is not None:
        expected.add("srtp_gcm")
    assert expected <= set(targets), targets
    for name in expected:
        stats = targets[name]
        assert stats["cases"] > 0 and stats["checked"] > 0, (name, stats)
        # the C code was reached, not just the argument checks in front of it
        assert stats["native"] > 0, (name, stats)
