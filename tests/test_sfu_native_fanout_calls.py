"""Calls through the SFU with real aiortc peers, with the native fan-out on (and proven used)
and off, and with the extension disabled altogether (SHOPCALL_NATIVE_FANOUT=0, in a child
process). The C path packet by packet is in test_sfu_native_fanout.py."""

from __future__ import annotations

import os

import pytest

import mediaserver.consumer as consumer_module

from .media_peers import MediaPeer, colour_close
from .test_sfu_forwarding import (
    BLUE,
    RED,
    session,  # noqa: F401  (fixture)
)
from .test_sfu_forwarding import Session as CallSession

_fanout = pytest.importorskip("mediaserver._fanout")

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
async def test_call_forwards_with_and_without_native_path(
        session: CallSession, native: bool, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    if not native:
        monkeypatch.setattr(consumer_module, "native_fanout", None)
    shopper = MediaPeer("shopper", RED)
    staff = MediaPeer("staff", BLUE)
    await session.join("shopper:s1", shopper)
    await session.join("staff:alice", staff)
    await shopper.wait_frames(20)
    await staff.wait_frames(20)
    assert colour_close(staff.video_in()[0].mean_bgr(), RED)
    assert colour_close(shopper.video_in()[0].mean_bgr(), BLUE)
    router = session.router()
    sent = sum(p.peer.native_target.sent for p in router.participants.values())
    if native:
        assert sent > 100
        for p in router.participants.values():  # sent with send() on a connected socket
            assert p.peer.native_target.connected
        assert all(type(p.peer._unprotect.__self__) is _fanout.Unprotector
                   for p in router.participants.values())
    else:
        assert sent == 0
    assert all(p.peer.native_target.errors == 0 for p in router.participants.values())


def test_calls_work_without_the_extension() -> None:
    """With SHOPCALL_NATIVE_FANOUT=0 nothing native is loaded (the pure Python Consumer
    state, the Python fan-out, pylibsrtp): a call still decodes and survives a rejoin."""
    import subprocess
    import sys

    env = dict(os.environ, SHOPCALL_NATIVE_FANOUT="0")
    check = subprocess.run(
        [sys.executable, "-c", "import mediaserver.consumer as c, mediaserver.consumer_state "
         "as s; assert c.native_fanout is None and c.Consumer.__mro__[1] is s.PyConsumerState"],
        env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_sfu_forwarding.py", "-k", "decodes_both_ways or keeps_receiver_stream"],
        env=env, capture_output=True, text=True, timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1]
