"""The deployment files against the tools that read them and a live server: promtool checks
the Prometheus configuration (both scrape variants), the alert rules and their unit tests
and parses every dashboard query; systemd-analyze verifies the units; and every metric the
alerts and the dashboard name, with the labels they use, is one a running server exports."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml

from signaling.model import Role

from .conftest import accepted_conversation, new_shopper
from .harness import ServerProcess, WsClient, http
from .test_deploy_units import (
    ALERT_TESTS,
    ALERTS,
    COTURN_DROPIN,
    PROMETHEUS,
    UNIT,
    deployment_queries,
    unexported,
)

pytestmark = pytest.mark.integration

# The label names Prometheus attaches to every sample of a target.
TARGET_LABELS = {"job", "instance"}
# The distribution's units (merged /usr or not).
SYSTEM_UNITS = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
                     if p.is_dir()), Path("/usr/lib/systemd/system"))


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `sudo make system-deps` (Debian package "
                    f"{package})")
    return found


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


# promtool -----------------------------------------------------------------------------------

def test_alert_rules_pass_promtool() -> None:
    done = run(tool("promtool", "prometheus"), "check", "rules", ALERTS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rule_unit_tests_pass() -> None:
    done = run(tool("promtool", "prometheus"), "test", "rules", ALERT_TESTS.name,
               cwd=ALERT_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_prometheus_config_passes_promtool() -> None:
    done = run(tool("promtool", "prometheus"), "check", "config", PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout  # the alerts file was found and loaded


def test_token_scrape_variant_passes_promtool(tmp_path: Path) -> None:
    """The commented job for the main address (operator bearer token) is valid too, once
    uncommented in place of the default one."""
    text = PROMETHEUS.read_text()
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  # - job_name:"))
    variant = [line.replace("  # ", "  ", 1) for line in lines[start:] if line.strip()]
    token = tmp_path / "shopcall-operator-token"
    token.write_text("token\n")
    config = yaml.safe_load(text)
    config["scrape_configs"] = yaml.safe_load("\n".join(variant))
    assert config["scrape_configs"][0]["authorization"]["credentials_file"] == (
        "/etc/prometheus/shopcall-operator-token")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(token)
    config["rule_files"] = [str(ALERTS)]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    done = run(tool("promtool", "prometheus"), "check", "config", checked)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each panel's expression, Grafana's variables filled in, as a recording rule that
    promtool parses."""
    values = {"$__rate_interval": "1m", "${__rate_interval}": "1m", "$__range": "6h",
              "${__range}": "6h", "$__interval": "15s", "$instance": ".*", "$store": ".*"}
    rules = []
    for where, expr, _ in deployment_queries():
        if "panel" not in where:
            continue
        for var, value in values.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"{where}: unknown variable in {expr!r}"
        rules.append({"record": f"dashboard:query{len(rules)}", "expr": expr})
    assert len(rules) > 20
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run(tool("promtool", "prometheus"), "check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr


# systemd ----------------------------------------------------------------------------------

def _verify(tmp_path: Path, unit: str, files: dict[str, Path], executables: list[str]) -> str:
    """systemd-analyze verify in a root of our own: the distribution's units (the targets
    ours hang on, Debian's coturn.service), our files, and stub executables where the unit
    expects the real ones (which this machine need not have installed)."""
    analyze = tool("systemd-analyze", "systemd")
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    for where, source in files.items():
        target = root / where.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    for exe in executables:
        stub = root / exe.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    done = run(analyze, "verify", f"--root={root}", unit)
    # Warnings (an unknown key, a bad value) leave the exit code at 0: none are allowed.
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        done.stdout + done.stderr)
    return done.stdout


def test_shopcall_unit_verifies(tmp_path: Path) -> None:
    exec_start = next(line for line in UNIT.read_text().splitlines()
                      if line.startswith("ExecStart="))
    executable = exec_start.removeprefix("ExecStart=").split()[0]
    _verify(tmp_path, "shopcall.service", {"/etc/systemd/system/shopcall.service": UNIT},
            [executable])


def test_shopcall_unit_verify_catches_mistakes(tmp_path: Path) -> None:
    """The check above would see a misspelt key: systemd-analyze only warns about it."""
    broken = tmp_path / "shopcall.service"
    broken.write_text(UNIT.read_text().replace("LockPersonality=", "LockPersonalty="))
    with pytest.raises(AssertionError, match="Unknown key"):
        _verify(tmp_path, "shopcall.service", {"/etc/systemd/system/shopcall.service": broken},
                ["/opt/shopcall/venv/bin/shopcall"])


def test_coturn_dropin_verifies_with_the_packaged_unit(tmp_path: Path) -> None:
    packaged = SYSTEM_UNITS / "coturn.service"
    if not packaged.exists():
        pytest.fail("coturn is not installed: run `sudo make system-deps` (Debian package "
                    "coturn)")
    assert "-c /etc/turnserver.conf" in packaged.read_text()  # the path the guide installs to
    _verify(tmp_path, "coturn.service",
            {"/etc/systemd/system/coturn.service.d/shopcall.conf": COTURN_DROPIN},
            ["/usr/bin/turnserver"])


# Names against a live server --------------------------------------------------------------

def sample_labels(exposition: str) -> dict[str, set[str]]:
    """Label names seen on each series name's samples."""
    seen: dict[str, set[str]] = {}
    for line in exposition.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][\w:]*)(?:\{(.*)\})? ", line)
        assert m, line
        labels = set(re.findall(r'([A-Za-z_]\w*)="', m.group(2) or ""))
        seen.setdefault(m.group(1), set()).update(labels)
    return seen


async def open_metrics(server: ServerProcess) -> str:
    """/metrics on the separate [metrics] address, without a token: prometheus.yml's job."""
    status, text = await http("GET", server.metrics_url)
    assert status == 200, text
    return text


async def drive_traffic(server: ServerProcess,
                        connect: Callable[..., Awaitable[WsClient]]) -> None:
    """Enough for most labelled series to appear: a video call started and ended, its
    conversation closed, a conversation missed, an error reply."""
    staff, shopper, cid = await accepted_conversation(server, connect)
    call_id = (await shopper.ok("call.propose", conversation_id=cid,
                                kind="video"))["call"]["call_id"]
    await staff.ok("call.accept", call_id=call_id)
    await shopper.expect("call.started")
    await staff.ok("call.end", call_id=call_id)
    await staff.ok("conversation.close", conversation_id=cid)
    waiting = await connect(server, token=await new_shopper(server))
    await waiting.ok("conversation.open", store="paris", skill="pianos", language="de")
    await waiting.expect("conversation.missed", timeout=15)
    reply = await staff.send("no.such.type")
    assert reply["type"] == "error", reply


async def test_every_metric_named_is_exported_by_a_running_server(
        server_factory: Callable[..., ServerProcess],
        connect: Callable[..., Awaitable[WsClient]]) -> None:
    # A TURN relay configured (nothing listens there): its check's gauge is exported too.
    server = server_factory(missed_after_s=1.0,
                            extra_config='[metrics]\nhost = "127.0.0.1"\nport = 0\n'
                                         '[media.turn]\nurls = ["turn:127.0.0.1:9?transport=tcp"]'
                                         '\nsecret = "not-used"\n')
    assert server.metrics_url, server.banner
    # The main address wants an operator token (prometheus.yml's commented variant).
    status, _ = await http("GET", server.base_url + "/metrics")
    assert status == 401
    status, _ = await http("GET", server.base_url + "/metrics",
                           server.token(Role.OPERATOR, "prometheus"))
    assert status == 200

    # Families are listed before any traffic: names are checked on an idle server.
    idle = await open_metrics(server)
    missing = unexported(idle)
    assert not missing, "not exported by the server:\n  " + "\n  ".join(missing)

    # Label names, once traffic made the labelled series appear.
    await drive_traffic(server, connect)
    await asyncio.sleep(0.2)
    labels = sample_labels(await open_metrics(server))
    wrong, checked = [], set()
    for where, expr, query in deployment_queries():
        known: set[str] = set(TARGET_LABELS)
        complete = True
        for name, used in query.selectors:
            if name not in labels:  # no sample yet (up, or no traffic of that kind)
                complete = False
                continue
            checked.add(name)
            known |= labels[name] | ({"le"} if name.endswith("_bucket") else set())
            if used - TARGET_LABELS - labels[name]:
                wrong.append(f"{where}: {name} has no label {sorted(used - labels[name])}")
        if complete and query.grouping - known:
            wrong.append(f"{where}: grouped by {sorted(query.grouping - known)}, which "
                         f"none of {sorted(query.metrics)} has, in {expr!r}")
    assert not wrong, "\n".join(wrong)
    for name in ("shopcall_queue_wait_seconds_bucket", "shopcall_calls_started_total",
                 "shopcall_conversations_missed_total", "shopcall_conversations_closed_total",
                 "shopcall_protocol_errors_total", "shopcall_media_connections_total"):
        assert name in checked, f"{name}: no sample after the traffic, labels unchecked"

