"""The whole product in real browsers: a shopper on the demo shop page and a staff member in
the staff console, both in headless Chromium, chat, escalate to video through the SFU, see
each other's camera, hang up, rate, and the database keeps the story.

WebRTC must stay on 127.0.0.1: Chromium on the host network picks a non-loopback address
for its candidate pair. So the outer test re-runs this file's inner test inside a private
network namespace (`unshare -n`, only `lo` up), where the server process and Chromium both
live; the inner test is skipped when collected normally.

Cameras are Chromium's fake capture device fed with a y4m file made at test time from real
photos that ship inside scikit-image: the shopper's camera shows a person (astronaut.png),
the staff member's camera shows a product (coffee.png). Each side checks that the picture it
decodes is the other side's photo, not black and not its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from signaling.model import Role

from .harness import ROOT, ServerProcess

INSIDE = "SHOPCALL_BROWSER_E2E_INSIDE"
CHROMIUM = os.environ.get("SHOPCALL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox",
    "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]
W, H = 640, 480

# Every RTCPeerConnection a page creates, so the test can read the real getStats().
TRACK_PEER_CONNECTIONS = """
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native) return;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  };
})();
"""

INBOUND_VIDEO = """
async () => {
  const out = [];
  for (const pc of window.__pcs || []) {
    if (pc.connectionState === 'closed') continue;
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
    });
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.push({
          framesDecoded: s.framesDecoded || 0, width: s.frameWidth, height: s.frameHeight,
          codec: (byId.get(s.codecId) || {}).mimeType,
          local: pair && (byId.get(pair.localCandidateId) || {}).address,
          remote: pair && (byId.get(pair.remoteCandidateId) || {}).address,
        });
      }
    });
  }
  return out;
}
"""

# Everything RTP-related getStats() says, for failure reports.
RTP_STATS = """
async () => {
  const keep = ['kind', 'packetsReceived', 'packetsLost', 'framesReceived', 'framesDecoded',
    'keyFramesDecoded', 'framesDropped', 'nackCount', 'pliCount', 'firCount', 'packetsSent',
    'framesEncoded', 'keyFramesEncoded', 'qualityLimitationReason', 'targetBitrate',
    'retransmittedPacketsSent', 'bytesReceived', 'bytesSent', 'frameWidth'];
  const out = [];
  for (const pc of window.__pcs || []) {
    const report = await pc.getStats();
    report.forEach((s) => {
      if (!['inbound-rtp', 'outbound-rtp'].includes(s.type)) return;
      const row = { type: s.type };
      for (const k of keep) if (s[k] !== undefined) row[k] = s[k];
      out.push(row);
    });
    out.push({ connection: pc.connectionState, signaling: pc.signalingState });
  }
  return out;
}
"""

# The remote <video>'s current frame, scaled to 64x48 grey levels.
GRAB_FRAME = """
(video) => {
  const canvas = document.createElement('canvas');
  canvas.width = 64;
  canvas.height = 48;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, 64, 48);
  const rgba = ctx.getImageData(0, 0, 64, 48).data;
  const grey = [];
  for (let i = 0; i < rgba.length; i += 4) {
    grey.push(Math.round(0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2]));
  }
  return { grey, width: video.videoWidth, height: video.videoHeight };
}
"""


def _not_runnable() -> str | None:
    """Why this machine cannot run the browser test, or None."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (make test installs the Debian package chromium)"
    try:
        import playwright  # noqa: F401
        import skimage  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[test]')"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2) for a private network namespace"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return ("cannot create a network namespace (needs root or user namespaces): "
                f"{probe.stderr.strip()}")
    return None


@pytest.mark.timeout(200)
def test_browser_video_call_end_to_end() -> None:
    reason = _not_runnable()
    if reason:
        pytest.skip(reason)
    inner = f"{Path(__file__).resolve()}::test_inside_private_network"
    script = 'ip link set lo up && exec "$0" -m pytest "$1" -p no:cacheprovider -q -x -rN'
    proc = subprocess.Popen(
        ["unshare", "-n", "sh", "-c", script, sys.executable, inner],
        cwd=ROOT, env={**os.environ, INSIDE: "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"the browser test did not finish in 180 s:\n{output[-6000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(output[-3000:])
    assert proc.returncode == 0, output[-8000:]
    assert "1 passed" in output, f"the inner test did not run:\n{output[-3000:]}"


# Inner test ----------------------------------------------------------------------------------

def _photo(name: str) -> np.ndarray:
    """A 640x480 BGR picture from a photo shipped in scikit-image's wheel."""
    import cv2
    import skimage

    path = Path(skimage.__file__).parent / "data" / name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    h, w = image.shape[:2]
    if h * W > w * H:  # taller than 4:3: keep the top (heads are at the top)
        image = image[: w * H // W]
    else:  # wider: keep the centre
        keep = h * W // H
        image = image[:, (w - keep) // 2:(w - keep) // 2 + keep]
    return cv2.resize(image, (W, H), interpolation=cv2.INTER_AREA)


def _write_y4m(path: Path, bgr: np.ndarray, frames: int = 30) -> None:
    """A y4m file Chromium's fake camera loops over; the picture drifts a little each frame."""
    import cv2

    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{W} H{H} F30:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            shift = (i if i < frames // 2 else frames - i) // 4  # 0-3 px back and forth
            frame = np.roll(bgr, shift, axis=1)
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())


def _grey_thumb(bgr: np.ndarray) -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (64, 48), interpolation=cv2.INTER_AREA).astype(float)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _api(server: ServerProcess, path: str, token: str) -> Any:
    request = urllib.request.Request(server.base_url + path,
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def _wait_frames(page: Any, who: str, minimum: int = 30, timeout_s: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    stats: list[dict] = []
    while time.monotonic() < deadline:
        stats = page.evaluate(INBOUND_VIDEO)
        if any(s["framesDecoded"] > minimum for s in stats):
            return stats
        page.wait_for_timeout(200)
    raise AssertionError(f"{who} decoded too few frames: {stats}")


def _remote_picture(page: Any) -> tuple[np.ndarray, dict]:
    grabbed = page.locator("video.remote-video").first.evaluate(GRAB_FRAME)
    return np.array(grabbed["grey"], dtype=float).reshape(48, 64), grabbed


@pytest.mark.skipif(not os.environ.get(INSIDE),
                    reason="run by test_browser_video_call_end_to_end inside a private "
                           "network namespace")
def test_inside_private_network(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    ARTIFACTS.mkdir(exist_ok=True)
    shopper_photo, staff_photo = _photo("astronaut.png"), _photo("coffee.png")
    shopper_cam, staff_cam = tmp_path / "shopper.y4m", tmp_path / "staff.y4m"
    _write_y4m(shopper_cam, shopper_photo)
    _write_y4m(staff_cam, staff_photo)

    workdir = tmp_path / "server"
    workdir.mkdir()
    # The harness's 4096-byte frame limit is for protocol tests; a browser's SDP offer is
    # 5-8 kB, so run with the production default (limits.max_message_bytes = 65536).
    server = ServerProcess(workdir, max_message_bytes=65536)
    server.start()
    try:
        with sync_playwright() as pw:
            def launch(camera: Path) -> Any:
                return pw.chromium.launch(
                    executable_path=CHROMIUM,
                    args=[*FLAGS, f"--use-file-for-fake-video-capture={camera}"])

            # One browser per side: each has its own fake camera file.
            shopper_browser = launch(shopper_cam)
            staff_browser = launch(staff_cam)
            try:
                _scenario(server, shopper_browser, staff_browser, shopper_photo, staff_photo,
                          expect)
            finally:
                shopper_browser.close()
                staff_browser.close()
    except BaseException:
        print(f"--- server log ---\n{server.log.read_text()[-4000:]}")
        raise
    finally:
        server.stop()
    print(f"browser scenario took {time.monotonic() - started:.1f} s")


def _scenario(server: ServerProcess, shopper_browser: Any, staff_browser: Any,
              shopper_photo: np.ndarray, staff_photo: np.ndarray, expect: Any) -> None:
    viewport = {"width": 1280, "height": 860}
    staff_ctx = staff_browser.new_context(viewport=viewport)
    shopper_ctx = shopper_browser.new_context(viewport=viewport)
    for ctx in (staff_ctx, shopper_ctx):
        ctx.add_init_script(TRACK_PEER_CONNECTIONS)
        ctx.set_default_timeout(15000)
    console: list[str] = []
    try:
        _chat_call_and_rate(server, staff_ctx, shopper_ctx, console, shopper_photo, staff_photo,
                            expect)
    except BaseException:
        for i, page in enumerate(staff_ctx.pages + shopper_ctx.pages):
            page.screenshot(path=str(ARTIFACTS / f"failure-{i}.png"))
            print(f"--- page {page.url} RTP stats ---")
            for row in page.evaluate(RTP_STATS):
                print(row)
        try:
            print("--- media sessions ---\n" + json.dumps(_api(
                server, "/api/media-sessions", server.token(Role.OPERATOR, "ops")), indent=1))
        except OSError as exc:
            print(f"no media sessions: {exc}")
        print("--- browser console ---\n" + "\n".join(console[-80:]))
        raise


def _chat_call_and_rate(server: ServerProcess, staff_ctx: Any, shopper_ctx: Any,
                        console: list[str], shopper_photo: np.ndarray, staff_photo: np.ndarray,
                        expect: Any) -> None:

    # Staff signs in (token in the fragment) and goes online.
    staff = staff_ctx.new_page()
    staff.on("console", lambda m: console.append(f"staff {m.type}: {m.text}"))
    staff.on("pageerror", lambda e: console.append(f"staff pageerror: {e}"))
    staff.goto(f"{server.base_url}/staff#token={server.token(Role.STAFF, 'alice')}")
    expect(staff.locator("#conn")).to_have_text("Connected")
    staff.locator("label.p-online").click()
    expect(staff.locator("#presence")).to_have_attribute("data-status", "online")

    # The shopper opens the demo shop page and the widget: video is offered.
    shopper = shopper_ctx.new_page()
    shopper.on("console", lambda m: console.append(f"shopper {m.type}: {m.text}"))
    shopper.on("pageerror", lambda e: console.append(f"shopper pageerror: {e}"))
    shopper.goto(server.base_url + "/")
    shopper.get_by_role("button", name="Ask a guitar expert").click()
    widget = shopper.locator("#shopcall-widget")
    channels = widget.locator(".channels")
    expect(channels.get_by_role("button", name="Video call")).to_be_visible()
    expect(channels.get_by_role("button", name="Start a chat")).to_be_visible()
    expect(widget.locator(".presence")).to_contain_text("1 specialist online")
    channels.get_by_role("button", name="Start a chat").click()

    question = "Hello! Does the D-14 come with a hard case?"
    widget.locator("#sc-input").fill(question)
    widget.locator("#sc-input").press("Enter")

    # Staff accepts the offer and gets the message sent while waiting; they answer.
    staff.locator(".offer").get_by_role("button", name="Accept").click()
    column = staff.locator("article.conv").first
    expect(column.locator(".msg.theirs .text")).to_have_text(question)
    answer = "Hi! Yes, a hard case is included. Want me to show you on video?"
    column.locator("textarea").first.fill(answer)
    column.locator("textarea").first.press("Enter")
    expect(widget.locator(".msg.theirs .text")).to_have_text(answer)
    expect(widget.locator(".sub")).to_contain_text("Alice is helping you")
    expect(widget.locator(".msg.mine .receipt")).to_contain_text("Read")
    shopper.screenshot(path=str(ARTIFACTS / "widget-chat.png"))

    # The shopper escalates to video; staff accepts; the shopper consents to the camera.
    widget.locator(".chat-actions").get_by_role("button", name="Video call").click()
    column.locator(".callbar").get_by_role("button", name="Accept").click()
    consent = widget.locator(".consent")
    expect(consent.get_by_role("heading", name="Turn on camera?")).to_be_visible()
    shopper.screenshot(path=str(ARTIFACTS / "widget-consent.png"))
    consent.get_by_role("button", name="Turn on camera").click()

    # Both sides negotiate through the SFU and decode the other's camera.
    for page, who in ((shopper, "shopper"), (staff, "staff")):
        stats = _wait_frames(page, who)
        live = [s for s in stats if s["framesDecoded"] > 30]
        assert live[0]["local"] == "127.0.0.1" and live[0]["remote"] == "127.0.0.1", stats
        assert live[0]["width"] and live[0]["codec"] in ("video/VP8", "video/H264"), stats

    expected = {"shopper": _grey_thumb(staff_photo), "staff": _grey_thumb(shopper_photo)}
    own = {"shopper": _grey_thumb(shopper_photo), "staff": _grey_thumb(staff_photo)}
    for page, who in ((shopper, "shopper"), (staff, "staff")):
        # The first frames of a call are coarse (the encoder ramps its bitrate up): look at a
        # few frames and keep the best match.
        best = None
        for _ in range(8):
            picture, grabbed = _remote_picture(page)
            match = _correlation(picture, expected[who])
            if best is None or match > best[0]:
                best = (match, picture, grabbed)
            if match > 0.8:
                break
            page.wait_for_timeout(250)
        match, picture, grabbed = best
        assert grabbed["width"] > 0 and grabbed["height"] > 0, grabbed
        assert picture.std() > 20, f"{who}: remote video looks blank (std {picture.std():.1f})"
        mine = _correlation(picture, own[who])
        assert match > 0.7 and match > mine + 0.3, (
            f"{who}: remote video is not the other side's camera "
            f"(correlation {match:.2f} with it, {mine:.2f} with own)")

    expect(column.locator(".quality")).to_contain_text("frames")
    expect(column.locator(".quality")).to_contain_text("In ")
    expect(widget.locator(".stage-self")).to_be_visible()
    shopper.wait_for_timeout(600)  # let the self view and quality line paint
    shopper.screenshot(path=str(ARTIFACTS / "widget-call.png"))
    staff.screenshot(path=str(ARTIFACTS / "staff-console-call.png"), full_page=True)

    # Mute and camera buttons act on the local tracks.
    widget.get_by_role("button", name="Mute", exact=True).click()
    assert shopper.evaluate(
        "() => window.__pcs.at(-1).getSenders().filter((s) => s.track && s.track.kind === "
        "'audio').every((s) => !s.track.enabled)")
    widget.get_by_role("button", name="Unmute", exact=True).click()

    # The shopper hangs up, ends the chat and rates it.
    widget.locator(".stage-controls").get_by_role("button", name="Hang up").click()
    expect(widget.locator(".stage")).to_have_count(0)
    expect(column.locator(".stage")).to_have_count(0)
    expect(column.locator(".callbar")).to_contain_text("Call ended")
    assert shopper.evaluate("() => window.__pcs.every((pc) => pc.connectionState === 'closed')")
    widget.get_by_role("button", name="End chat").click()
    widget.get_by_role("button", name="Yes, end it").click()
    widget.locator("label.star").nth(4).click()
    widget.locator("label.nps-opt").nth(9).click()
    widget.locator("#sc-comment").fill("Alice showed me the case on video, great help.")
    widget.get_by_role("button", name="Send feedback").click()
    expect(widget.get_by_role("heading", name="Thank you for your feedback!")).to_be_visible()
    expect(column.locator(".ended")).to_contain_text("The shopper ended the conversation")
    staff.screenshot(path=str(ARTIFACTS / "staff-console-after.png"))

    # The database holds the conversation.
    operator = server.token(Role.OPERATOR, "ops")
    [conv] = _api(server, "/api/conversations", operator)["conversations"]
    record = _api(server, f"/api/conversations/{conv['conversation_id']}", operator)
    kinds = [e["kind"] for e in record["events"]]
    wanted = ["opened", "accepted", "call_started", "call_ended", "closed", "rated"]
    positions = [kinds.index(k) for k in wanted if k in kinds]
    assert len(positions) == len(wanted) and positions == sorted(positions), kinds
    texts = [m["text"] for m in record["messages"]]
    assert texts == [question, answer], texts
    assert [m["from"] for m in record["messages"]] == ["shopper", "staff"]
    [call] = record["calls"]
    assert call["kind"] == "video" and call["started_at"] and call["ended_at"], call
    assert record["rating"]["satisfaction"] == 5 and record["rating"]["recommendation"] == 9
    errors = [line for line in console if "pageerror" in line]
    assert not errors, "\n".join(console)
