"""Deployment files checked in-process: the systemd units against the server's own defaults,
the Grafana dashboard's shape, the guide's references, and the PromQL reading that
tests/test_deploy_files.py uses to hold every metric the alerts and the dashboard name
against what a live server exports (promtool and systemd-analyze run there)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from signaling.cli import EXIT_USAGE
from signaling.config import ServerConfig

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "shopcall.service"
COTURN_DROPIN = DEPLOY / "systemd" / "coturn.service.d" / "shopcall.conf"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "shopcall-alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "shopcall-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "shopcall-dashboard.json"
GUIDE = ROOT / "docs" / "deploying.md"
TURN_CONF = DEPLOY / "coturn" / "turnserver.conf"  # the main deployment's, not ours

# Series Prometheus itself writes for every scrape target, not the server.
PROMETHEUS_SERIES = frozenset({"up"})


# PromQL reading -------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$\w+|\[\[\w+\]\])
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],@:])
  | (?P<space>\s+)
""", re.VERBOSE)

_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = frozenset({"bool", "offset", "and", "or", "unless", "atan2", "inf", "nan"})
# Aggregations may put their `by (...)` between the name and the parenthesis.
_AGGREGATIONS = frozenset({"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                           "count_values", "bottomk", "topk", "quantile", "limitk",
                           "limit_ratio"})


@dataclass
class PromQL:
    """What one expression refers to: metric names with the label names their selectors
    match on, and the label names it groups or joins by."""

    selectors: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        return {name for name, _ in self.selectors}


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read PromQL at {expr[pos:pos + 20]!r} in {expr!r}")
        pos = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup or "", m.group()))
    return out


def read_promql(expr: str) -> PromQL:
    """Metric names (bare identifiers not called as functions, not keywords, not label names
    in braces or grouping lists, not inside [range] brackets) and label names."""
    toks = _tokens(expr)
    found = PromQL()
    i = 0

    def label_list(start: int) -> tuple[set[str], int]:
        """Identifiers of a parenthesised list at toks[start] == "("; returns (names, end)."""
        names, j = set(), start + 1
        while toks[j][1] != ")":
            if toks[j][0] == "ident":
                names.add(toks[j][1])
            j += 1
        return names, j + 1

    def matchers(start: int) -> tuple[frozenset[str], str | None, int]:
        """Label names in a {...} selector at toks[start]; and __name__="x" if given."""
        names, name_eq, j = set(), None, start + 1
        while toks[j][1] != "}":
            kind, text = toks[j]
            if kind in ("ident", "string") and toks[j + 1][1] in ("=", "!=", "=~", "!~"):
                label = text.strip("\"'`") if kind == "string" else text
                names.add(label)
                if label == "__name__" and toks[j + 1][1] == "=":
                    name_eq = toks[j + 2][1].strip("\"'`")
                j += 3
                continue
            j += 1
        return frozenset(names - {"__name__"}), name_eq, j + 1

    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if text == "[":  # a range or subquery: durations and variables only
            depth = 1
            i += 1
            while depth:
                depth += {"[": 1, "]": -1}.get(toks[i][1], 0)
                i += 1
            continue
        if text == "{":  # a selector without a metric name before it
            labels, name_eq, i = matchers(i)
            found.selectors.append((name_eq or "", labels))
            continue
        if kind != "ident":
            i += 1
            continue
        if text in _GROUPING:
            if nxt == "(":
                names, i = label_list(i + 1)
                found.grouping |= names
            else:
                i += 1  # group_left without a list
            continue
        if text == "offset":
            i += 2 + (nxt == "-")
            continue
        if text in _KEYWORDS or text in _AGGREGATIONS or nxt == "(":  # not a metric
            i += 1
            continue
        if nxt == "{":
            labels, _, i = matchers(i + 1)
        else:
            labels, i = frozenset(), i + 1
        found.selectors.append((text, labels))
    return found


def grafana_query(query: str) -> PromQL:
    """A dashboard variable's query: label_values(selector, label) or plain PromQL."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*", query, re.DOTALL)
    if m is None:
        return read_promql(query)
    found = read_promql(m.group(1))
    found.grouping.add(m.group(2))
    return found


# What the deployment files query --------------------------------------------------------

def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels


def deployment_queries() -> list[tuple[str, str, PromQL]]:
    """(where, expression, what it names) for every alert and dashboard query."""
    out = [(f"{ALERTS.name}: {rule['alert']}", rule["expr"], read_promql(rule["expr"]))
           for rule in alert_rules()]
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            out.append((f"{DASHBOARD.name}: panel {panel['title']!r} {target['refId']}",
                        target["expr"], read_promql(target["expr"])))
    for var in dashboard()["templating"]["list"]:
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        out.append((f"{DASHBOARD.name}: variable {var['name']}", query, grafana_query(query)))
    return out


def exported_names(exposition: str) -> set[str]:
    """Every series name a /metrics page can carry, from its # TYPE lines (families exist
    there before their first sample) with the suffixes prometheus_client adds, and from
    its samples."""
    names: set[str] = set()
    suffixes = {"counter": ("_total", "_created"),
                "histogram": ("_bucket", "_sum", "_count", "_created"),
                "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
                "summary": ("", "_sum", "_count", "_created"),
                "info": ("_info",)}
    for line in exposition.splitlines():
        if m := re.match(r"# TYPE (\S+) (\S+)", line):
            name, kind = m.groups()
            if kind == "counter":
                name = name.removesuffix("_total")
            names |= {name + s for s in suffixes.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def unexported(exposition: str) -> list[str]:
    """Queries that name a metric the exposition does not carry."""
    exported = exported_names(exposition) | PROMETHEUS_SERIES
    return [f"{where}: {sorted(q.metrics - exported)} in {expr!r}"
            for where, expr, q in deployment_queries() if q.metrics - exported]


# systemd units ---------------------------------------------------------------------------

def unit_file(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values in order]}}: keys repeat, an empty value
    resets a list, a trailing backslash continues a line."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    logical = re.sub(r"\\\n", " ", path.read_text())
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if m := re.fullmatch(r"\[([^\]]+)\]", line):
            current = sections.setdefault(m.group(1), {})
            continue
        assert current is not None, f"{path.name}: {line!r} before any [section]"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not key=value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    """A systemd time span: "30", "30s", "1min 30s", "2m"."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def test_unit_runs_shopcall_serve_as_an_unprivileged_user() -> None:
    unit = unit_file(UNIT)
    assert set(unit) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    (exec_start,) = service["ExecStart"]
    argv = exec_start.split()
    assert argv[0].startswith("/") and argv[0].endswith("/shopcall"), exec_start
    assert argv[1:] == ["serve", "--config", "/etc/shopcall/shopcall.toml"]
    assert service["User"] == ["shopcall"] and service["Group"] == ["shopcall"]
    assert service["Restart"] == ["on-failure"]
    # A configuration error (exit 2) is not restarted over and over.
    assert service["RestartPreventExitStatus"] == [str(EXIT_USAGE)]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0].split()


def test_unit_hardening() -> None:
    service = unit_file(UNIT)["Service"]
    expected = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                "ProtectHome": "yes", "CapabilityBoundingSet": "",
                "SystemCallFilter": "@system-service"}
    for key, value in expected.items():
        assert service.get(key) == [value], f"{key}={service.get(key)}"
    assert service["ReadWritePaths"] == ["/var/lib/shopcall"]
    assert service["StateDirectory"] == ["shopcall"]
    # aioice lists host addresses with getifaddrs(), over netlink.
    assert set(service["RestrictAddressFamilies"][0].split()) == {
        "AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}
    # Well above the default soft limit of 1024: one UDP socket per media participant and
    # announced address, one connection per client.
    assert int(service["LimitNOFILE"][0]) > 1024


def test_stop_timeout_outlasts_the_shutdown_grace() -> None:
    """systemd must not SIGKILL the server while it drains (signaling/shutdown.py)."""
    service = unit_file(UNIT)["Service"]
    assert service["KillSignal"] == ["SIGTERM"]
    grace = ServerConfig.model_fields["shutdown_grace_s"].default
    timeout = seconds(service["TimeoutStopSec"][0])
    # Measured: 12.3 s from SIGTERM to exit with 10 running calls and the 10 s default.
    assert timeout >= grace + 10, (timeout, grace)


def test_coturn_dropin_keeps_the_packaged_command_and_adds_what_the_conf_needs() -> None:
    dropin = unit_file(COTURN_DROPIN)
    assert set(dropin) == {"Service"}
    service = dropin["Service"]
    assert "ExecStart" not in service  # the packaged unit runs /etc/turnserver.conf already
    assert service["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert service["LogsDirectory"] == ["turnserver"]
    if TURN_CONF.exists():  # the main deployment's file: what the drop-in exists for
        conf = TURN_CONF.read_text()
        assert re.search(r"^log-file=/var/log/turnserver/", conf, re.M)
        ports = [int(p) for p in re.findall(r"^(?:tls-)?listening-port=(\d+)", conf, re.M)]
        assert any(p < 1024 for p in ports), "no privileged port: drop the capability"
        quota = re.search(r"^total-quota=(\d+)", conf, re.M)
        if quota:
            assert int(service["LimitNOFILE"][0]) > 2 * int(quota.group(1))


# Prometheus and Grafana files ------------------------------------------------------------

def test_prometheus_config_scrapes_shopcall_and_loads_the_rules() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert config["rule_files"] == [ALERTS.name]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "shopcall"  # the alerts and the dashboard select job="shopcall"
    assert job["metrics_path"] == "/metrics"
    # The token variant, commented out, names the token file the guide tells how to write.
    assert "credentials_file: /etc/prometheus/shopcall-operator-token" in PROMETHEUS.read_text()


def test_every_alert_has_severity_summary_and_description() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    for wanted in ("ShopcallDown", "ShopcallQueueWaitHigh", "ShopcallConversationsMissed",
                   "ShopcallSfuHighLoss", "ShopcallAudioOnlyFallbacks",
                   "MediaConnectionsFailing"):
        assert wanted in names


def test_alert_unit_tests_cover_the_main_alerts() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    assert tests["rule_files"] == [ALERTS.name]
    tested: dict[str, list[bool]] = {}
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            tested.setdefault(check["alertname"], []).append(bool(check["exp_alerts"]))
    for alert in ("ShopcallDown", "ShopcallQueueWaitHigh", "MediaConnectionsFailing"):
        assert True in tested[alert] and False in tested[alert], (
            f"{alert}: needs a case that fires and one that does not")


def test_every_alert_and_panel_selects_the_shopcall_job() -> None:
    """Selectors pin job="shopcall" (the scrape job's name), so a Prometheus that also
    scrapes other things (process_* metrics, up) does not mix them in."""
    for where, _, query in deployment_queries():
        for name, labels in query.selectors:
            assert "job" in labels, f"{where}: {name} without job=\"shopcall\""


def test_dashboard_shape() -> None:
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 39
    (ds_input,) = board["__inputs"]
    assert ds_input["name"] == "DS_PROMETHEUS" and ds_input["pluginId"] == "prometheus"
    ids, boxes = set(), []
    for panel in dashboard_panels():
        assert panel["id"] not in ids, f"duplicate panel id {panel['id']}"
        ids.add(panel["id"])
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        boxes.append((panel["title"], pos))
    for i, (a, p) in enumerate(boxes):  # no panel drawn over another
        for b, q in boxes[i + 1:]:
            overlap = (p["x"] < q["x"] + q["w"] and q["x"] < p["x"] + p["w"]
                       and p["y"] < q["y"] + q["h"] and q["y"] < p["y"] + p["h"])
            assert not overlap, f"{a!r} overlaps {b!r}"
    for var in board["templating"]["list"]:
        assert var["datasource"]["uid"] == "${DS_PROMETHEUS}"


def test_dashboard_covers_what_a_shop_watches() -> None:
    named = set().union(*(q.metrics for where, _, q in deployment_queries()
                          if where.startswith(DASHBOARD.name)))
    for metric in ("shopcall_conversations_opened_total", "shopcall_conversations_missed_total",
                   "shopcall_queue_wait_seconds_bucket", "shopcall_calls_started_total",
                   "shopcall_sfu_forwarded_packets_total",
                   "shopcall_sfu_retransmitted_packets_total",
                   "shopcall_sfu_forwarded_bytes_total",
                   "shopcall_sfu_audio_only_fallbacks_total",
                   "shopcall_protocol_errors_total", "shopcall_media_connections_total"):
        assert metric in named, metric
    grouped = set().union(*(q.grouping for w, _, q in deployment_queries()
                            if "Media connections" in w))
    assert {"outcome", "candidate_type"} <= grouped


def test_a_misspelt_metric_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live comparison (tests/test_deploy_files.py) fails for a name the server does
    not export: here one alert misspelt against an exposition that has the right one."""
    real = alert_rules

    def with_typo() -> list[dict[str, Any]]:
        rules = real()
        rules[0] = {**rules[0], "expr": 'shopcall_queue_lenght{job="shopcall"} > 0'}
        return rules

    monkeypatch.setattr(f"{__name__}.alert_rules", with_typo)
    exposition = "# TYPE shopcall_queue_length gauge\nshopcall_queue_length 0.0\n"
    assert any("shopcall_queue_lenght" in m for m in unexported(exposition))
    assert not any("shopcall_queue_length'" in m for m in unexported(exposition))


def test_guide_names_existing_files_and_the_same_paths_as_the_units() -> None:
    guide = GUIDE.read_text()
    for path in sorted(set(re.findall(r"(?<![\w/])((?:deploy|docs)/[\w./-]+\w)", guide))):
        assert (ROOT / path).exists(), f"docs/deploying.md names {path}, which does not exist"
    for text in ("/etc/shopcall/shopcall.toml", "/var/lib/shopcall", "/etc/turnserver.conf",
                 "/etc/prometheus/shopcall-operator-token"):
        assert text in guide, text


# The PromQL reader itself ----------------------------------------------------------------

@pytest.mark.parametrize(("expr", "metrics", "grouping"), [
    ('up{job="shopcall"} == 0', {"up"}, set()),
    ('histogram_quantile(0.9, sum by (job, store, le) (rate(a_bucket{job="x"}[5m]))) > 60',
     {"a_bucket"}, {"job", "store", "le"}),
    ("sum(rate(a_total[$__rate_interval])) without (instance) / ignoring(x) b",
     {"a_total", "b"}, {"instance", "x"}),
    ('a > 0 and on (job, instance) sum by (job) (b{store=~"$store"}) == bool 0',
     {"a", "b"}, {"job", "instance"}),
    ("a * on (x) group_left (y) b offset 5m", {"a", "b"}, {"x", "y"}),
    ("a * on (x) group_left b", {"a", "b"}, {"x"}),
    ('{__name__="c_total", job="shopcall"}', {"c_total"}, set()),
    ("max_over_time(deriv(a[1h:5m])[30m:]) + 1e3 - 0x10 + inf", {"a"}, set()),
    ('label_replace(a, "dst", "$1", "src", "(.*)") unless b @ start()', {"a", "b"}, set()),
    ("60 * sum(increase(a_total{code=~\"x|y\"}[${__range}]))", {"a_total"}, set()),
])
def test_promql_reader(expr: str, metrics: set[str], grouping: set[str]) -> None:
    found = read_promql(expr)
    assert found.metrics == metrics
    assert found.grouping == grouping


def test_promql_reader_keeps_selector_labels_apart() -> None:
    found = read_promql('sum by (store) (a{job="s", instance=~"$i"}) / b{outcome="failed"}')
    assert found.selectors == [("a", frozenset({"job", "instance"})),
                               ("b", frozenset({"outcome"}))]


def test_grafana_label_values_query() -> None:
    found = grafana_query('label_values(shopcall_staff_online{job="shopcall"}, store)')
    assert found.metrics == {"shopcall_staff_online"} and found.grouping == {"store"}


def test_exported_names_from_an_exposition() -> None:
    text = "\n".join([
        "# TYPE a_total counter", "# TYPE old counter", "# TYPE h histogram",
        "# TYPE g gauge", "# TYPE s summary", "# TYPE i info", "g 1.0", "x_extra{l=\"v\"} 2"])
    assert exported_names(text) == {
        "a_total", "a_created", "old_total", "old_created", "h_bucket", "h_sum", "h_count",
        "h_created", "g", "s", "s_sum", "s_count", "s_created", "i_info", "x_extra"}
