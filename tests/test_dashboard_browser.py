"""The operator dashboard in real Chromium, against a server seeded through its real API.

The seed is test_reports_api.py's four conversations (c1-c4: one missed, two orders, two
ratings) plus two real calls through the SFU between aiortc peers: c5 in Paris, where the
store's downlink is squeezed under the video floor mid-call (an audio-only fallback: a call
with trouble), rated 2/3 with no order; and c6 in Lyon, a clean call, rated 5/9 with a
250 EUR order. The page must show the numbers the API gives, draw the 168-hour heat map,
list the staff, open the conversations behind a figure, and refuse non-operator tokens
with a message that says what is needed.

Like test_browser_e2e.py, the outer test re-runs the inner one inside a private network
namespace (`unshare -n`, only `lo` up) so the server, the WebRTC peers and Chromium all stay
on 127.0.0.1; the inner test is skipped when collected normally.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from signaling.model import Role

from .harness import ROOT, ServerProcess, WsClient, http, seeded_server

pytestmark = pytest.mark.browser

INSIDE = "SHOPCALL_DASHBOARD_BROWSER_INSIDE"
CHROMIUM = os.environ.get("SHOPCALL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def _not_runnable() -> str | None:
    """Why this machine cannot run the browser test, or None."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (make test installs the Debian package chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[test]')"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2) for a private network namespace"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return ("cannot create a network namespace (needs root or user namespaces): "
                f"{probe.stderr.strip()}")
    return None


@pytest.mark.timeout(240)
def test_dashboard_in_a_browser() -> None:
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
        output, _ = proc.communicate(timeout=220)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"the dashboard test did not finish in 220 s:\n{output[-6000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(output[-3000:])
    assert proc.returncode == 0, output[-8000:]
    assert "1 passed" in output, f"the inner test did not run:\n{output[-3000:]}"


# Seeding: the reports world plus two real calls ---------------------------------------------
async def _media_call(server: ServerProcess, staff: WsClient, shopper: WsClient, cid: str,
                      *, squeeze: dict[str, Any] | None) -> None:
    """A video call with real media both ways; `squeeze` (a store body) drops the store's
    downlink under the floor mid-call and restores it, forcing an audio-only fallback."""
    from .media_peers import MediaPeer
    from .test_call_media_e2e import BLUE, RED, negotiate

    ops = server.token(Role.OPERATOR, "seeder")
    call_id = (await shopper.ok("call.propose", conversation_id=cid,
                                kind="video"))["call"]["call_id"]
    await staff.expect("call.proposed")
    await staff.ok("call.accept", call_id=call_id)
    await shopper.expect("call.started")
    shopper_cam, staff_cam = MediaPeer("shopper", RED), MediaPeer("staff", BLUE)
    try:
        await negotiate(shopper, call_id, shopper_cam)
        await negotiate(staff, call_id, staff_cam)
        await staff_cam.wait_frames(10)
        await shopper_cam.wait_frames(10)
        if squeeze is not None:
            store = squeeze["id"]
            body = {k: v for k, v in squeeze.items() if k != "id"}
            status, _ = await http("PUT", f"{server.base_url}/api/stores/{store}", ops,
                                   {**body, "downlink_kbps": 120})
            assert status == 200
            await staff.expect("media.notice", code="video_paused", direction="receiving",
                               timeout=15)
            status, _ = await http("PUT", f"{server.base_url}/api/stores/{store}", ops, body)
            assert status == 200
        await shopper.ok("call.end", call_id=call_id)
        await staff.expect("call.ended")
    finally:
        await shopper_cam.close()
        await staff_cam.close()


async def _seed(server: ServerProcess) -> dict[str, Any]:
    from mediaserver.aiortc_adapter import use_host_addresses

    from .test_reports_api import _seed as reports_seed
    from .test_reports_api import _shopper, _staff

    use_host_addresses(["127.0.0.1"])
    data = await reports_seed(server)
    ops = server.token(Role.OPERATOR, "seeder")
    clients: list[WsClient] = []
    try:
        carol, alice = await _staff(server, "carol"), await _staff(server, "alice")
        clients += [carol, alice]
        for name, staff, store, squeeze, rating, outcome in (
                ("c5", carol, "paris", {"id": "paris", "name": "Harmonie Paris"}, (2, 3),
                 {"order_placed": False}),
                ("c6", alice, "lyon", None, (5, 9),
                 {"order_placed": True, "order_value": 250.0, "currency": "EUR"})):
            shopper = await _shopper(server)
            clients.append(shopper)
            cid = (await shopper.ok("conversation.open", store=store, skill="guitars",
                                    language="en"))["conversation"]["conversation_id"]
            await staff.expect("conversation.offered", conversation__conversation_id=cid)
            await staff.ok("conversation.accept", conversation_id=cid)
            await staff.ok("chat.send", conversation_id=cid, text="Hello, let me show you.")
            await _media_call(server, staff, shopper, cid, squeeze=squeeze)
            await staff.ok("conversation.close", conversation_id=cid)
            await shopper.ok("feedback.submit", conversation_id=cid, satisfaction=rating[0],
                             recommendation=rating[1])
            status, body = await http(
                "POST", f"{server.base_url}/api/conversations/{cid}/outcome", ops, outcome)
            assert status == 200, body
            data["cids"][name] = cid
        for staff in (carol, alice):
            await staff.ok("presence.set", status="offline")
    finally:
        for client in clients:
            await client.close()
    return data


# Inner test ----------------------------------------------------------------------------------
def _api(server: ServerProcess, path: str) -> Any:
    request = urllib.request.Request(
        server.base_url + path,
        headers={"Authorization": f"Bearer {server.token(Role.OPERATOR, 'checker')}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        body = resp.read().decode()
    return json.loads(body) if resp.headers.get_content_type() == "application/json" else body


@pytest.mark.skipif(not os.environ.get(INSIDE),
                    reason="run by test_dashboard_in_a_browser inside a private network "
                           "namespace")
@pytest.mark.timeout(200)
def test_inside_private_network(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with seeded_server(tmp_path, _seed, missed_after_s=0.5,
                       max_message_bytes=65536) as (server, data), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            _scenario(server, data, browser)
        except BaseException:
            print(f"--- server log ---\n{server.log.read_text()[-4000:]}")
            raise
        finally:
            browser.close()


def _scenario(server: ServerProcess, data: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    cids = data["cids"]
    ctx = browser.new_context(viewport={"width": 1360, "height": 900})
    ctx.set_default_timeout(15000)
    errors: list[str] = []
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{server.base_url}/dashboard#token={server.token(Role.OPERATOR, 'maya')}")
        page.wait_for_selector("body[data-loaded]")
        assert "token=" not in page.url  # the token left the address bar
        expect(page.locator("#who")).to_have_text("Signed in as maya")

        # The same period as the page asked for ("last 7 days" to now), in its time zone.
        tz = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
        kpis = _api(server, f"/api/reports/kpis?from={data['began'] - 1}")["figures"]
        assert kpis["conversations"]["value"] == 6 and kpis["missed"]["value"] == 1

        def tile(key: str) -> Any:
            return page.locator(f"#tiles .tile[data-figure='{key}'] .value")

        expect(tile("conversations")).to_have_text(str(kpis["conversations"]["value"]))
        expect(tile("missed")).to_have_text(str(kpis["missed"]["value"]))
        expect(tile("conversion_rate")).to_have_text(
            f"{kpis['conversion_rate']['value'] * 100:.1f}%")  # 3 orders / 6
        expect(tile("revenue_EUR")).to_have_text("€1,199.00")  # 899 + 50 + 250
        nps = round(kpis["nps"]["value"])  # (2 promoters - 2 detractors) / 4 ratings: 0
        expect(tile("nps")).to_have_text(f"+{nps}" if nps > 0 else str(nps))

        # Daily bars add up to the period's figures.
        for series, key in (("Conversations", "conversations"), ("Missed", "missed")):
            values = page.locator(f"#chart-daily rect.bar[data-series='{series}']"
                                  ).evaluate_all("els => els.map(e => +e.dataset.value)")
            assert sum(values) == kpis[key]["value"], (series, values)

        # Call quality joined to results: c5 fell back to audio only and sold nothing, c6
        # went well and sold; c1 and c2's calls never carried media, so were not measured.
        assert kpis["calls_measured"]["value"] == 2
        assert kpis["calls_with_fallbacks"]["conversation_ids"] == [cids["c5"]]
        quality = page.locator("#quality")
        expect(quality.locator("[data-figure='calls_measured'] .value")).to_have_text("2")
        expect(quality.locator("[data-figure='trouble_share'] .value")).to_have_text(
            f"{kpis['trouble_share']['value'] * 100:.1f}%")
        expect(quality.locator("[data-figure='fallback_share'] .value")).to_have_text("50.0%")
        expect(quality.locator(".compare-row[data-figure='conversion_with_trouble'] .value")
               ).to_have_text("0.0%")
        expect(quality.locator(".compare-row[data-figure='conversion_without_trouble'] .value")
               ).to_have_text("100.0%")

        # Staff table: one row per staff member, handled counts as the API says.
        staff = _api(server, f"/api/reports/staff?from={data['began'] - 1}")["staff"]
        rows = page.locator("#staff-table tbody tr")
        expect(rows).to_have_count(len(staff))
        for member in staff:
            row = page.locator(f"#staff-table tbody tr[data-staff='{member['staff_id']}']")
            expect(row.locator("td").nth(2)).to_have_text(
                str(member["figures"]["handled"]["value"]))
        expect(page.locator("#staff-table tbody tr[data-staff='alice'] td").nth(2)
               ).to_have_text("2")  # c1 and c6

        # Staffing heat map: 168 cells, each the API's recommendation for that hour.
        cells = page.locator("#heatmap rect.cell")
        expect(cells).to_have_count(168)
        plan = _api(server, f"/api/reports/staffing?tz={tz}")["stores"][0]
        assert page.locator("#heatmap").get_attribute("data-store") == plan["store"]
        shown = cells.evaluate_all(
            "els => els.map(e => [+e.dataset.day, +e.dataset.hour, e.dataset.value])")
        for day, hour, value in shown:
            want = plan["recommended_staff"][day][hour]
            assert value == ("" if want is None else str(want)), (day, hour, value, want)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        page.locator(".seg label", has_text="Missed last week").click()
        expect(page.locator("#heatmap")).to_have_attribute("data-view", "missed_last_week")
        missed_cells = page.locator("#heatmap rect.cell.hit")
        expect(missed_cells).to_have_count(1)  # c3, lyon's only miss

        # Every figure opens the conversations behind it, and each opens its record.
        page.locator("#tiles .tile[data-figure='missed']").click()
        drawer = page.locator("#drawer")
        expect(drawer).to_be_visible()
        expect(drawer.locator("#drawer-list button")).to_have_text([cids["c3"]])
        drawer.locator("#drawer-list button").click()
        detail = drawer.locator("#drawer-detail")
        expect(detail.locator("h3")).to_have_text(cids["c3"])
        expect(detail).to_contain_text("missed")
        expect(detail).to_contain_text("video")
        page.screenshot(path=str(ARTIFACTS / "dashboard-drawer.png"))
        page.keyboard.press("Escape")
        expect(drawer).to_be_hidden()

        # A store filter re-reads every figure for that store only.
        page.select_option("#store", "paris")
        expect(tile("conversations")).to_have_text("2")  # c4 and c5
        expect(page.locator("#heatmap")).to_have_attribute("data-store", "paris")
        expect(rows).to_have_count(1)  # carol
        assert not errors, errors

        # The weekly report the button downloads is the HTML file with its charts.
        with page.expect_download() as download:
            page.locator("#weekly").click()
        path = download.value.path()
        html = Path(path).read_text()
        assert html.startswith("<!doctype html>") and "<svg" in html
        assert download.value.suggested_filename.endswith("-paris.html")

        # On a phone the same page stacks its panels.
        phone = browser.new_context(viewport={"width": 390, "height": 844},
                                    device_scale_factor=2, is_mobile=True, has_touch=True)
        mobile = phone.new_page()
        mobile.goto(f"{server.base_url}/dashboard#token={server.token(Role.OPERATOR, 'maya')}")
        mobile.wait_for_selector("body[data-loaded]")
        expect(mobile.locator("#tiles .tile[data-figure='conversations'] .value")
               ).to_have_text("6")
        mobile.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"))
        phone.close()

        # A weekly report, as a manager opens it.
        report = ctx.new_page()
        report.set_content(_api(server, "/api/reports/weekly?week=" + _this_week()))
        report.screenshot(path=str(ARTIFACTS / "weekly-report.png"), full_page=True)
    finally:
        ctx.close()

    # Non-operators get a clear refusal on the sign-in form, and nothing else.
    for token, says in ((server.token(Role.STAFF, "alice"), "not an operator token"),
                        (server.token(Role.SHOPPER, "shp_x"), "not an operator token"),
                        ("garbage.token.x", "refused or has expired")):
        other = browser.new_context()
        try:
            refused = other.new_page()
            refused.goto(f"{server.base_url}/dashboard#token={token}")
            expect(refused.locator("#signin-error")).to_contain_text(says)
            expect(refused.locator("#signin")).to_be_visible()
            expect(refused.locator("#dash")).to_be_hidden()
            assert refused.locator("#tiles .tile").count() == 0
        finally:
            other.close()


def _this_week() -> str:
    from datetime import UTC, datetime

    year, week, _ = datetime.now(UTC).isocalendar()
    return f"{year}-W{week:02d}"
