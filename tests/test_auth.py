"""Tokens: every bad input becomes a TokenError with a code a client can act on."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import jwt
import pytest

from signaling.auth import (
    Principal,
    TokenError,
    TokenIssuer,
    bearer_token,
    default_ttl,
    new_shopper_id,
    resolve_secret,
)
from signaling.config import ConfigError, load_settings
from signaling.model import Role

pytestmark = pytest.mark.unit

SECRET = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SHOPCALL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(SECRET)


def refused(issuer: TokenIssuer, token: object) -> str:
    with pytest.raises(TokenError) as info:
        issuer.verify(token)
    return info.value.code


@pytest.mark.parametrize("role", list(Role))
def test_round_trip(issuer: TokenIssuer, role: Role) -> None:
    now = time.time()
    principal = issuer.verify(issuer.mint(role, "someone", 60, now=now))
    assert principal == Principal(role=role, subject="someone", expires_at=int(now) + 60)
    assert isinstance(principal.role, Role)


def test_claims(issuer: TokenIssuer) -> None:
    token = issuer.mint(Role.STAFF, "ana", 3600, now=1000)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert set(claims) == {"iss", "sub", "role", "iat", "exp", "jti"}
    assert (claims["iss"], claims["sub"], claims["role"]) == ("shopcall", "ana", "staff")
    assert (claims["iat"], claims["exp"]) == (1000, 4600)
    assert claims["jti"] != jwt.decode(issuer.mint(Role.STAFF, "ana", 3600, now=1000), SECRET,
                                       algorithms=["HS256"], options={"verify_exp": False})["jti"]


def test_expired(issuer: TokenIssuer) -> None:
    token = issuer.mint(Role.SHOPPER, "shp_x", 10, now=time.time() - 60)
    assert refused(issuer, token) == "expired_token"
    assert issuer.verify(token, now=time.time() - 55).subject == "shp_x"
    with pytest.raises(TokenError, match="expired"):
        issuer.verify(token)


def test_wrong_secret_and_issuer(issuer: TokenIssuer) -> None:
    assert refused(issuer, TokenIssuer("x" * 32).mint(Role.STAFF, "ana", 60)) == "invalid_token"
    other = TokenIssuer(SECRET, issuer="elsewhere").mint(Role.STAFF, "ana", 60)
    assert refused(issuer, other) == "invalid_token"
    # An expired token signed with another key is a forgery first, an expired token never.
    old = TokenIssuer("x" * 32).mint(Role.STAFF, "ana", 1, now=0)
    assert refused(issuer, old) == "invalid_token"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_payload(issuer: TokenIssuer) -> None:
    header, payload, signature = issuer.mint(Role.SHOPPER, "shp_x", 60).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "operator"
    assert refused(issuer, f"{header}.{_b64(claims)}.{signature}") == "invalid_token"


def test_alg_none(issuer: TokenIssuer) -> None:
    now = int(time.time())
    claims = {"iss": "shopcall", "sub": "x", "role": "operator", "iat": now, "exp": now + 60,
              "jti": "j"}
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert refused(issuer, token) == "invalid_token"
    assert refused(issuer, jwt.encode(claims, None, algorithm="none")) == "invalid_token"


def test_unknown_role_and_missing_claims(issuer: TokenIssuer) -> None:
    now = int(time.time())
    claims = {"iss": "shopcall", "sub": "x", "role": "admin", "iat": now, "exp": now + 60,
              "jti": "j"}
    assert refused(issuer, jwt.encode(claims, SECRET, algorithm="HS256")) == "invalid_token"
    for missing in ("sub", "role", "iat", "exp", "jti", "iss"):
        partial = {**claims, "role": "staff"}
        del partial[missing]
        assert refused(issuer, jwt.encode(partial, SECRET, algorithm="HS256")) == "invalid_token"
    for bad in ({"exp": "tomorrow"}, {"sub": ""}, {"role": None}, {"iat": now + 3600}):
        token = jwt.encode({**claims, "role": "staff", **bad}, SECRET, algorithm="HS256")
        assert refused(issuer, token) == "invalid_token", bad


@pytest.mark.parametrize("garbage", [
    "", "x", "a.b.c", "....", "Bearer abc", "eyJ.eyJ.", "é.é.é", "\x00", "a" * 10_000,
    None, 42, b"bytes", ["a"], {"token": "x"}, object(),
])
def test_garbage(issuer: TokenIssuer, garbage: object) -> None:
    assert refused(issuer, garbage) == "invalid_token"


def test_mint_rejects_bad_arguments(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError):
        issuer.mint("admin", "x", 60)
    with pytest.raises(ValueError):
        issuer.mint(Role.STAFF, "", 60)
    with pytest.raises(ValueError):
        issuer.mint(Role.STAFF, "x", 0)
    with pytest.raises(ValueError):
        TokenIssuer("too short")


def test_helpers() -> None:
    a, b = new_shopper_id(), new_shopper_id()
    assert a.startswith("shp_") and a != b and len(a) >= 16
    assert bearer_token("Bearer abc.def") == "abc.def"
    assert bearer_token("bearer  abc ") == "abc"
    for header in (None, "", "Bearer", "Bearer ", "Basic abc", "abc", "Bearer a b"):
        assert bearer_token(header) is None
    s = load_settings()
    assert default_ttl(s, Role.SHOPPER) == 30 * 86400
    assert default_ttl(s, "operator") == 12 * 3600


def test_resolve_secret_configured(tmp_path: Path) -> None:
    s = load_settings(None, {"auth.secret": SECRET, "database.path": tmp_path / "db.sqlite"})
    assert resolve_secret(s) == SECRET
    assert not (tmp_path / "secret.key").exists()


def test_resolve_secret_generates_once(tmp_path: Path) -> None:
    s = load_settings(None, {"database.path": tmp_path / "var" / "shopcall.db"})
    secret = resolve_secret(s)
    path = tmp_path / "var" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(secret) >= 32 and path.read_text().strip() == secret
    assert resolve_secret(s) == secret  # reused, so tokens survive restarts
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temp file left
    token = TokenIssuer(secret).mint(Role.STAFF, "ana", 60)
    assert TokenIssuer(resolve_secret(s)).verify(token).subject == "ana"


def test_resolve_secret_rejects_truncated_file(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("short\n")
    s = load_settings(None, {"database.path": tmp_path / "shopcall.db"})
    with pytest.raises(ConfigError, match=r"secret\.key"):
        resolve_secret(s)
