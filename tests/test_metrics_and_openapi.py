"""/metrics reflects what happened; /api/openapi.json is valid and covers every API route."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from signaling.app import create_app
from signaling.config import load_settings

from .conftest import accepted_conversation
from .harness import http, scrape

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_conversations_queue_and_connections(server_factory, connect):
    server = server_factory(missed_after_s=0.5)
    alice, shopper, cid = await accepted_conversation(server, connect)
    await shopper.ok("chat.send", conversation_id=cid, text="hi")
    await shopper.ok("conversation.close", conversation_id=cid)
    missed = (await shopper.ok("conversation.open", store="paris", skill="pianos",
                               channel="video"))["conversation"]["conversation_id"]
    await shopper.expect("conversation.missed", conversation_id=missed, timeout=5)
    await shopper.fail("chat.send", "invalid_message", conversation_id=cid)

    m = samples(await scrape(server))
    assert value(m, "shopcall_conversations_opened_total", store="lyon", channel="chat") == 1
    assert value(m, "shopcall_conversations_opened_total", store="paris", channel="video") == 1
    assert value(m, "shopcall_conversations_closed_total", store="lyon", channel="chat") == 1
    assert value(m, "shopcall_conversations_missed_total", store="paris", channel="video") == 1
    assert value(m, "shopcall_queue_wait_seconds_count", store="lyon") == 1
    assert value(m, "shopcall_staff_online", store="lyon") == 1
    assert value(m, "shopcall_staff_online", store="paris") == 0
    assert value(m, "shopcall_websocket_connections", role="staff") == 1
    assert value(m, "shopcall_websocket_connections", role="shopper") == 1
    assert value(m, "shopcall_message_handling_seconds_count", type="chat.send") == 1
    # A frame that fails validation is labelled "invalid": its type is not trusted.
    assert value(m, "shopcall_message_handling_seconds_count", type="invalid") == 1
    assert value(m, "shopcall_protocol_errors_total", code="invalid_message") == 1
    assert value(m, "shopcall_queue_length") == 0
    # The server process itself, for load tests and dashboards.
    assert value(m, "process_cpu_seconds_total") > 0
    assert value(m, "process_resident_memory_bytes") > 10e6

    await alice.close()
    await shopper.close()
    for _ in range(50):  # the server notices the closed sockets
        m = samples(await scrape(server))
        if value(m, "shopcall_websocket_connections", role="staff") == 0:
            break
    assert value(m, "shopcall_websocket_connections", role="staff") == 0
    assert value(m, "shopcall_staff_online", store="lyon") == 0


async def test_health_and_readiness(server):
    assert await http("GET", server.base_url + "/healthz") == (200, {"status": "ok"})
    assert await http("GET", server.base_url + "/readyz") == (200, {"status": "ready"})


async def test_openapi_document_is_valid_and_complete(server, tmp_path: Path):
    status, spec = await http("GET", server.base_url + "/api/openapi.json")
    assert status == 200
    validate(spec)
    app = create_app(load_settings(overrides={"database.path": str(tmp_path / "x.db"),
                                              "auth.secret": "s" * 40}))
    routes = set()
    for resource in app.router.resources():
        path = resource.canonical
        if path.startswith("/api/"):
            for route in resource:
                if route.method not in ("HEAD", "OPTIONS"):  # OPTIONS: CORS preflights
                    routes.add((re.sub(r"\{(\w+)\}", r"{\1}", path), route.method.lower()))
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert routes == documented
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert "200" in op["responses"], (path, method)
            if "security" in op:
                assert "401" in op["responses"] and "403" in op["responses"], (path, method)
    # Links (which response field feeds which operation's parameter) name real operations.
    operation_ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))
    for ops in spec["paths"].values():
        for op in ops.values():
            for response in op["responses"].values():
                for link in response.get("links", {}).values():
                    assert link["operationId"] in operation_ids, link
