"""What every real-browser test shares: launching Debian's Chromium through Playwright with a
fake camera, running the test inside a private network namespace, and reading what the pages
really decode.

Why a network namespace: Chromium on the host network picks a non-loopback address for its
ICE candidate pair even when the server only offers 127.0.0.1 (field notes, section 1). So an
outer test re-runs its module's inner tests with `unshare -n` (only `lo` up), where the
server process and Chromium both live; inner tests are skipped when collected normally.

Cameras are Chromium's fake capture device, fed with a y4m file made at test time from real
photos that ship inside scikit-image: a person (astronaut.png) for shoppers, a product
(coffee.png) for staff. Tests compare what a page decodes with those photos.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from signaling.model import Role

from .harness import ROOT, ServerProcess

CHROMIUM = os.environ.get("SHOPCALL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox",
    "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]
W, H = 640, 480
DESKTOP = {"width": 1280, "height": 860}
# A common phone (iPhone 12-15 class): CSS pixels, touch, mobile layout.
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}

# Every RTCPeerConnection a page creates, so a test can read the real getStats().
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
          codec: (byId.get(s.codecId) || {}).mimeType, track: s.trackIdentifier,
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

# A <video>'s current frame, scaled to 64x48 grey levels.
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


def not_runnable() -> str | None:
    """Why this machine cannot run browser tests, or None."""
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


def run_in_private_network(target: str, inside_flag: str, *, expect_passed: int,
                           timeout_s: float, namespace: str | None = None,
                           env: dict[str, str] | None = None) -> str:
    """Run pytest on `target` (a file or node id) inside `unshare -n` with `inside_flag` set
    in the environment; fail unless exactly `expect_passed` tests passed. Returns the output.

    The child is its own process group, killed as a whole if it overruns, so no Chromium or
    server process outlives the test.
    """
    import pytest

    if os.environ.get(inside_flag):
        pytest.skip("this is the run inside the namespace")
    reason = not_runnable()
    if reason:
        pytest.skip(reason)
    pytest_args = ["-m", "pytest", target, "-p", "no:cacheprovider", "-q", "-rA"]
    if namespace is None:  # a fresh namespace with only lo
        script = 'ip link set lo up && exec "$0" "$@"'
        argv = ["unshare", "-n", "sh", "-c", script, sys.executable, *pytest_args]
    else:  # a named one the caller set up (tests/netns.py)
        argv = ["ip", "netns", "exec", namespace, sys.executable, *pytest_args]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env={**os.environ, **(env or {}), inside_flag: "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"the browser tests did not finish in {timeout_s:.0f} s:\n{output[-8000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    ARTIFACTS.mkdir(exist_ok=True)  # the whole inner run, for reading after a failure
    (ARTIFACTS / f"{Path(target.split('::')[0]).stem}.log").write_text(output)
    summary = [line for line in output.splitlines()
               if line.startswith(("PASSED", "FAILED", "ERROR", "SKIPPED"))]
    print("\n".join(summary) or output[-3000:])
    # The inner assertion first (the tail is mostly the failure dump of pages and stats).
    reasons = "\n".join([line for line in output.splitlines()
                         if line.startswith("E   ") and len(line) < 2000][:40])
    assert proc.returncode == 0, reasons + "\n...\n" + output[-12000:]
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed)", output)}
    assert counts.get("passed", 0) == expect_passed, (
        f"the inner tests did not all run:\n{output[-4000:]}")
    return output


# Cameras --------------------------------------------------------------------------------

def photo(name: str) -> np.ndarray:
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


def write_y4m(path: Path, bgr: np.ndarray, frames: int = 30) -> None:
    """A y4m file Chromium's fake camera loops over; the picture drifts a little each frame."""
    import cv2

    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{W} H{H} F30:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            shift = (i if i < frames // 2 else frames - i) // 4  # 0-3 px back and forth
            frame = np.roll(bgr, shift, axis=1)
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())


def grey_thumb(bgr: np.ndarray) -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (64, 48), interpolation=cv2.INTER_AREA).astype(float)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


class Cameras:
    """The two photos as fake camera files in `folder`, and their thumbnails."""

    def __init__(self, folder: Path) -> None:
        self.shopper_photo, self.staff_photo = photo("astronaut.png"), photo("coffee.png")
        self.shopper, self.staff = folder / "shopper.y4m", folder / "staff.y4m"
        write_y4m(self.shopper, self.shopper_photo)
        write_y4m(self.staff, self.staff_photo)
        self.shopper_thumb = grey_thumb(self.shopper_photo)
        self.staff_thumb = grey_thumb(self.staff_photo)


def launch(pw: Any, camera: Path | None = None, *, fake_devices: str | None = None,
           extra: tuple[str, ...] = (), executable: str = CHROMIUM) -> Any:
    """Chromium with a fake camera: the given y4m file, or Chromium's generated pattern.

    `fake_devices` configures the generated devices (e.g. "device-count=2": two cameras;
    a y4m file is always a single camera). `executable`: e.g. a wrapper that starts
    Chromium in another network namespace (tests/netns.py)."""
    args = [*FLAGS, *extra]
    if fake_devices:
        args = [f"--use-fake-device-for-media-stream={fake_devices}"
                if a == "--use-fake-device-for-media-stream" else a for a in args]
    if camera is not None:
        args.append(f"--use-file-for-fake-video-capture={camera}")
    return pw.chromium.launch(executable_path=executable, args=args)


def new_context(browser: Any, console: list[str], who: str, **options: Any) -> Any:
    """A browser context whose pages record their peer connections and console output."""
    options.setdefault("viewport", DESKTOP)
    ctx = browser.new_context(**options)
    ctx.add_init_script(TRACK_PEER_CONNECTIONS)
    ctx.set_default_timeout(20000)

    def watch(page: Any) -> None:
        page.on("console", lambda m: console.append(f"{who} {m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"{who} pageerror: {e}"))

    ctx.on("page", watch)
    return ctx


def snap(page: Any, name: str, **options: Any) -> None:
    """Save a screenshot of a main screen under test-artifacts/ (animations finished)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), animations="disabled", **options)


def page_errors(console: list[str]) -> list[str]:
    return [line for line in console if "pageerror" in line]


def shop_csp(shopcall: str) -> str:
    """The Content-Security-Policy of a strict shop page embedding the widget: exactly what
    the README tells shops to allow for shopcall (`shopcall` is its origin)."""
    ws = shopcall.replace("http://", "ws://").replace("https://", "wss://")
    return (f"default-src 'self'; script-src 'self' {shopcall}; style-src 'self' {shopcall}; "
            f"connect-src 'self' {shopcall} {ws}; img-src 'self' data: {shopcall}; "
            "media-src 'self' blob:; frame-ancestors 'self'")


class ShopSite:
    """The shop's own web site, on another origin than shopcall (127.0.0.2, its own port):
    its product page embeds the widget with the documented script tag and sends a strict
    CSP, as a real shop's site does. Pages: /shop.html, /plain.html (the widget alone)."""

    HOST = "127.0.0.2"

    def __init__(self, host: str = HOST) -> None:
        import http.server
        import threading

        self.pages: dict[str, bytes] = {}
        self.csp = ""
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                kind = "text/css" if self.path.endswith(".css") else "text/html; charset=utf-8"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                if site.csp and kind.startswith("text/html"):
                    self.send_header("Content-Security-Policy", site.csp)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.origin = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return self.origin + "/shop.html"

    def embed(self, shopcall: str) -> None:
        """Serve the demo product page as the shop would: its own CSS from its own site, the
        widget's tag pointing at shopcall."""
        web = ROOT / "web_client"
        html = (web / "shop.html").read_text()
        html = html.replace('href="/static/shop.css"', 'href="/shop.css"')
        html = html.replace('src="/static/widget.js"', f'src="{shopcall}/static/widget.js"')
        assert f"{shopcall}/static/widget.js" in html
        self.pages["/shop.html"] = html.encode()
        self.pages["/shop.css"] = (web / "shop.css").read_bytes()
        self.csp = shop_csp(shopcall)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def browser_server(workdir: Path, *, site_host: str = ShopSite.HOST,
                   public_host: str | None = None, **overrides: Any) -> Iterator[ServerProcess]:
    """A server for browsers, and the shop's site on another origin that embeds its widget
    (`server.shop_url`); the production frame limit (a browser's SDP offer is 5-8 kB; the
    harness's 4096-byte default is for protocol tests). `site_host`: the shop site's
    address; `public_host`: the address browsers reach shopcall at (a server listening on
    every address, seen from other hosts)."""
    workdir.mkdir(parents=True, exist_ok=True)
    site = ShopSite(site_host)
    server = ServerProcess(workdir, **{"max_message_bytes": 65536,
                                       "allowed_origins": json.dumps([site.origin]),
                                       **overrides})
    try:
        server.start()
    except BaseException:
        site.close()
        raise
    if public_host is not None:
        server.public_base = server.base_url.replace(  # type: ignore[attr-defined]
            "://127.0.0.1:", f"://{public_host}:")
    site.embed(getattr(server, "public_base", server.base_url))
    server.shop_url = site.url  # type: ignore[attr-defined]
    server.shop_site = site  # type: ignore[attr-defined]
    try:
        yield server
    except BaseException:
        print(f"--- server log ---\n{server.log.read_text()[-4000:]}")
        try:  # what the SFU forwarded to whom: the first thing to read when media stalls
            request = urllib.request.Request(
                server.base_url + "/api/media-sessions",
                headers={"Authorization": f"Bearer {server.token(Role.OPERATOR, 'debug')}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                print(f"--- media sessions ---\n{response.read().decode()[:40000]}")
        except Exception as exc:  # the failure being reported matters more
            print(f"--- media sessions unavailable: {exc!r}")
        raise
    finally:
        server.stop()
        site.close()


def dump_failure(name: str, contexts: list[Any], console: list[str]) -> None:
    """Screenshots and RTP statistics of every open page, and the console, for a failure."""
    ARTIFACTS.mkdir(exist_ok=True)
    for i, page in enumerate(p for ctx in contexts for p in ctx.pages):
        try:
            page.screenshot(path=str(ARTIFACTS / f"failure-{name}-{i}.png"))
            print(f"--- page {page.url} RTP stats ---")
            for row in page.evaluate(RTP_STATS):
                print(row)
        except Exception as exc:  # a closed page must not hide the real failure
            print(f"(page {i}: {exc})")
    print("--- browser console ---\n" + "\n".join(console[-80:]))


# Reading what pages decode ------------------------------------------------------------------

def api(server: ServerProcess, path: str, token: str) -> Any:
    request = urllib.request.Request(server.base_url + path,
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def frames_decoded(page: Any) -> int:
    """Video frames this page decoded so far, over all its live connections."""
    return sum(s["framesDecoded"] for s in page.evaluate(INBOUND_VIDEO))


def wait_frames(page: Any, who: str, minimum: int = 30, timeout_s: float = 40.0,
                above: int = 0) -> list[dict]:
    """Wait until one inbound video stream decoded more than `above + minimum` frames."""
    deadline = time.monotonic() + timeout_s
    stats: list[dict] = []
    while time.monotonic() < deadline:
        stats = page.evaluate(INBOUND_VIDEO)
        if sum(s["framesDecoded"] for s in stats) > above + minimum:
            return stats
        page.wait_for_timeout(200)
    raise AssertionError(f"{who} decoded too few frames (wanted > {above + minimum}): {stats}")


def wait_for(page: Any, condition: Callable[[], bool], what: str,
             timeout_s: float = 30.0) -> None:
    """Poll a Python condition (reading the page) until it holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        page.wait_for_timeout(200)
    raise AssertionError(f"timed out waiting for {what}")


def remote_picture(page: Any, video: Any = None) -> tuple[np.ndarray, dict]:
    video = video or page.locator("video.remote-video").first
    grabbed = video.evaluate(GRAB_FRAME)
    return np.array(grabbed["grey"], dtype=float).reshape(48, 64), grabbed


def assert_sees(page: Any, who: str, expected: np.ndarray, own: np.ndarray,
                video: Any = None) -> None:
    """The page's remote video shows the other side's photo: not blank, not its own camera.

    The first frames of a call are coarse (the encoder ramps its bitrate up): look at frames
    until one matches well, and judge the best one seen.
    """
    best = None
    deadline = time.monotonic() + 15
    while True:
        picture, grabbed = remote_picture(page, video)
        match = correlation(picture, expected) if picture.std() > 0 else -1.0
        if best is None or match > best[0]:
            best = (match, picture, grabbed)
        if match > 0.8 or time.monotonic() > deadline:
            break
        page.wait_for_timeout(250)
    match, picture, grabbed = best
    assert grabbed["width"] > 0 and grabbed["height"] > 0, grabbed
    assert picture.std() > 20, f"{who}: remote video looks blank (std {picture.std():.1f})"
    mine = correlation(picture, own)
    assert match > 0.7 and match > mine + 0.3, (
        f"{who}: remote video is not the other side's camera "
        f"(correlation {match:.2f} with it, {mine:.2f} with own)")
