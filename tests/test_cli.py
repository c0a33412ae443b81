"""The `shopcall` command, run as a real subprocess the way scripts and `make` use it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from signaling.auth import TokenIssuer
from signaling.model import Role, StaffMember

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SECRET = "cli-test-secret-cli-test-secret-0123"


def run(tmp_path: Path, *args: str,
        secret: str | None = SECRET) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SHOPCALL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if secret is not None:
        env["SHOPCALL_AUTH__SECRET"] = secret
    return subprocess.run([sys.executable, "-m", "signaling", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def token_of(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # only the token, so $(shopcall token ...) works
    return lines[0]


def test_operator_token(tmp_path: Path) -> None:
    principal = TokenIssuer(SECRET).verify(token_of(run(tmp_path, "token", "operator", "ops")))
    assert (principal.role, principal.subject) == (Role.OPERATOR, "ops")


def test_operator_token_ttl_and_generated_secret(tmp_path: Path) -> None:
    token = token_of(run(tmp_path, "token", "operator", "ops", "--ttl", "90",
                         "--db", "data/x.db", secret=None))
    secret = (tmp_path / "data" / "secret.key").read_text().strip()
    principal = TokenIssuer(secret).verify(token)
    assert principal.expires_at - time.time() <= 91


def test_serve_with_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[routing]\nmissed_after_s = -1\n[server]\nprot = 1\n")
    result = run(tmp_path, "serve", "--config", "bad.toml")
    assert result.returncode == 2
    assert result.stderr.startswith("shopcall: invalid configuration")
    assert "routing.missed_after_s" in result.stderr and "server.prot" in result.stderr


def test_serve_with_bad_port_or_missing_file_exits_2(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", "--port", "70000")
    assert result.returncode == 2 and "server.port" in result.stderr
    result = run(tmp_path, "serve", "--config", "missing.toml")
    assert result.returncode == 2 and "missing.toml" in result.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run(tmp_path).returncode == 2
    assert run(tmp_path, "token", "operator").returncode == 2
    assert run(tmp_path, "token", "operator", "x", "--ttl", "-1").returncode == 2


def test_bench_is_forwarded_to_the_load_tool(tmp_path: Path) -> None:
    result = run(tmp_path, "bench", "--help")
    assert result.returncode == 0, result.stderr
    assert "--find-capacity" in result.stdout and "--sessions" in result.stdout
    result = run(tmp_path, "bench", "--sessions", "-3")
    assert result.returncode == 2 and "sessions" in result.stderr


def test_migrate(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate", "--db", "var/test.db")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("database at var/test.db is at schema version ")
    assert int(result.stdout.split()[-1]) >= 1
    assert (tmp_path / "var" / "test.db").exists()
    assert run(tmp_path, "migrate", "--db", "var/test.db").stdout == result.stdout  # idempotent


def _stored_staff(db: Path, staff_id: str) -> StaffMember | None:
    from signaling.sqlite_storage import SQLiteStorage

    async def get() -> StaffMember | None:
        async with SQLiteStorage(db) as storage:
            return await storage.get_staff(staff_id)

    return asyncio.run(get())


def test_token_staff_unknown_without_store(tmp_path: Path) -> None:
    result = run(tmp_path, "token", "staff", "ghost", "--db", "s.db")
    assert result.returncode == 2
    assert "unknown staff member ghost: give --store to create it" in result.stderr
    assert result.stdout == ""


def test_token_staff_creates_and_updates(tmp_path: Path) -> None:
    (tmp_path / "shop.toml").write_text('[[stores]]\nid = "lyon"\nname = "Lyon"\n')
    base = ("--config", "shop.toml", "--db", "s.db")
    result = run(tmp_path, "token", "staff", "ana", "--store", "nowhere", *base)
    assert result.returncode == 2 and "unknown store nowhere" in result.stderr
    result = run(tmp_path, "token", "staff", "ana", "--store", "lyon", "--max", "99", *base)
    assert result.returncode == 2 and "--max" in result.stderr

    token = token_of(run(tmp_path, "token", "staff", "ana", "--store", "lyon", "--name", "Ana",
                         "--skills", "pianos,guitars", "--languages", "fr,en",
                         "--channels", "chat,audio", "--max", "3", *base))
    principal = TokenIssuer(SECRET).verify(token)
    assert (principal.role, principal.subject) == (Role.STAFF, "ana")
    member = _stored_staff(tmp_path / "s.db", "ana")
    assert member is not None and member.store_id == "lyon" and member.name == "Ana"
    assert member.skills == {"pianos", "guitars"} and member.max_conversations == 3
    assert {c.value for c in member.channels} == {"chat", "audio"}

    # Existing member: a token needs no profile, and a partial update keeps the rest.
    token_of(run(tmp_path, "token", "staff", "ana", *base))
    token_of(run(tmp_path, "token", "staff", "ana", "--skills", "recording", *base))
    member = _stored_staff(tmp_path / "s.db", "ana")
    assert member is not None and member.skills == {"recording"}
    assert member.name == "Ana" and member.languages == {"fr", "en"}


def test_token_staff_from_demo_config(tmp_path: Path) -> None:
    token = token_of(run(tmp_path, "token", "staff", "camille", "--demo", "--db", "d.db"))
    assert TokenIssuer(SECRET).verify(token).subject == "camille"


def test_demo_banner_gives_working_staff_and_operator_tokens(tmp_path: Path) -> None:
    """`make run` prints where everything is and tokens that open the staff console and the
    dashboard: a first-time user needs nothing else."""
    import json
    import urllib.request

    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SHOPCALL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["SHOPCALL_MEDIA__BACKEND"] = "none"
    proc = subprocess.Popen([sys.executable, "-m", "signaling", "serve", "--demo", "--port",
                             "0", "--db", str(tmp_path / "demo.db")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(6)]
        base = lines[0].rsplit(" ", 1)[1]
        assert lines[3] == f"dashboard:     {base}/dashboard"
        staff = next(x for x in lines if x.startswith("demo staff token")).rsplit(" ", 1)[1]
        operator = next(x for x in lines
                        if x.startswith("demo operator token")).rsplit(" ", 1)[1]

        def get(path: str, token: str) -> int:
            request = urllib.request.Request(base + path,
                                             headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    json.load(response)
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert get("/api/reports/kpis", operator) == 200
        assert get("/api/reports/kpis", staff) == 403  # a staff token is not an operator's
        with urllib.request.urlopen(base + "/dashboard", timeout=10) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
