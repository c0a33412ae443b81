"""Loss recovery under real packet loss: nftables drops 5% of UDP in a private network
namespace, on every path between the peers and the SFU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
DROP_RULES = ("nft add table inet loss && "
              "nft add chain inet loss out '{ type filter hook output priority 0; }' && "
              "nft add rule inet loss out meta l4proto udp numgen random mod 100 '<' 5 drop")


def can_make_namespaces() -> bool:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not can_make_namespaces(),
                    reason="needs root, unshare and nftables (make test installs nftables)")
def test_nack_recovery_under_five_percent_udp_loss() -> None:
    script = (f"ip link set lo up && {DROP_RULES} && "
              f"exec {sys.executable} -m tests.sfu_loss_scenario 6")
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The receiver lost packets on the SFU -> receiver path, asked, and got them from history.
    assert result["nacks_from_receiver"] > 0, result
    assert result["retransmitted_to_receiver"] > 0, result
    # The SFU noticed gaps in what the publisher sent and asked for them itself.
    assert result["nacks_to_publisher"] > 0, result
    # And the picture kept decoding: at 30 fps for 6 s, well over half the frames.
    assert result["frames_decoded"] > 90, result
    assert result["colour_ok"], result
