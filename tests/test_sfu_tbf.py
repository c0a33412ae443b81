"""A real bandwidth limit (tc tbf on a veth into a second network namespace) on one receiver
of a layered publisher: the SFU thins that receiver's temporal layers to fit the link while
the other receiver keeps the full stream. See tests/sfu_tbf_scenario.py for the setup."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
RATE_KBIT = 350  # the stream: ~140 kbps base layer, ~250 with TL1, ~490 with all three


def can_shape_links() -> bool:
    if os.geteuid() != 0 or any(shutil.which(tool) is None
                                for tool in ("unshare", "ip", "tc", "nsenter")):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not can_shape_links(),
                    reason="needs root, unshare, nsenter, ip and tc (make test installs them)")
def test_limited_receiver_gets_fewer_layers_while_the_other_keeps_all() -> None:
    script = (f"ip link set lo up && exec {sys.executable} -m tests.sfu_tbf_scenario "
              f"14 {RATE_KBIT}")
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=ROOT,
                          capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    timeline = result["timeline"]
    thinned = [s for s in timeline if s["limited_layer"] in (0, 1)]
    # The limited receiver's stream adapted: fewer layers, and then it fit the link.
    assert thinned, timeline
    assert result["layer_switches"] >= 1, result
    assert statistics.median(s["limited_bps"] for s in thinned) < RATE_KBIT * 1000, timeline
    assert min(s["limited_estimate_bps"] for s in timeline) < RATE_KBIT * 1000, timeline
    # The other receiver of the same publisher was never thinned and kept every frame.
    assert all(s["full_layer"] is None for s in timeline), timeline
    assert statistics.median(s["full_fps"] for s in timeline) >= 25, timeline
    assert statistics.median(s["full_bps"] for s in timeline) > \
        statistics.median(s["limited_bps"] for s in thinned), timeline
