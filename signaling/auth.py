"""Bearer tokens for shoppers, staff and operators: HS256 JWTs signed with one server secret.

Tokens are stateless so any worker can check them without a database round trip; the price is
that they cannot be revoked before they expire, hence the short staff/operator lifetimes.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jwt

from .config import ConfigError
from .model import Role

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key must be at least as long as the hash
SECRET_FILE_NAME = "secret.key"
_REQUIRED_CLAIMS = ("iss", "sub", "role", "iat", "exp", "jti")


class TokenError(Exception):
    """Why a token was refused; `code` is what clients see, the message is for logs."""

    def __init__(self, code: Literal["invalid_token", "expired_token"], message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Principal:
    role: Role
    subject: str  # shopper id, staff id or operator name, depending on role
    expires_at: float


class TokenIssuer:
    def __init__(self, secret: str, *, issuer: str = "shopcall") -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"token secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self.issuer = issuer

    def mint(self, role: Role | str, subject: str, ttl_s: float,
             now: float | None = None) -> str:
        role = Role(role)
        if not subject or not isinstance(subject, str):
            raise ValueError("token subject must be a non-empty string")
        if ttl_s <= 0:
            raise ValueError("token ttl_s must be positive")
        iat = int(time.time() if now is None else now)
        claims = {"iss": self.issuer, "sub": subject, "role": role.value, "iat": iat,
                  "exp": iat + max(1, round(ttl_s)), "jti": secrets.token_urlsafe(12)}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: Any, now: float | None = None) -> Principal:
        """Check a token; raise TokenError (never anything else) whatever the input is.

        `now` exists for tests and for callers that already read the clock.
        """
        if not isinstance(token, str) or not token:
            raise TokenError("invalid_token", "token must be a non-empty string")
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], issuer=self.issuer,
                # Expiry is checked below against `now`; PyJWT only knows the wall clock.
                options={"require": list(_REQUIRED_CLAIMS), "verify_exp": False},
            )
        except jwt.ImmatureSignatureError as e:
            raise TokenError("invalid_token", f"token not valid yet: {e}") from None
        except jwt.PyJWTError as e:
            raise TokenError("invalid_token", f"invalid token: {e}") from None
        except Exception as e:  # malformed input PyJWT did not anticipate
            raise TokenError("invalid_token", f"invalid token: {type(e).__name__}") from None
        exp, sub, role = claims["exp"], claims["sub"], claims["role"]
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise TokenError("invalid_token", "invalid token: exp is not a number")
        if not isinstance(sub, str) or not sub:
            raise TokenError("invalid_token", "invalid token: empty subject")
        try:
            role = Role(role)
        except (ValueError, TypeError):
            raise TokenError("invalid_token", f"invalid token: unknown role {role!r}") from None
        if exp <= (time.time() if now is None else now):
            raise TokenError("expired_token", "token has expired")
        return Principal(role=role, subject=sub, expires_at=float(exp))


def default_ttl(settings: Settings, role: Role | str) -> float:
    """The configured lifetime for a role, so every minting site agrees."""
    auth = settings.auth
    return {Role.SHOPPER: auth.shopper_token_ttl_s, Role.STAFF: auth.staff_token_ttl_s,
            Role.OPERATOR: auth.operator_token_ttl_s}[Role(role)]


def new_shopper_id() -> str:
    return "shp_" + secrets.token_urlsafe(12)


def bearer_token(header_value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None if absent/malformed."""
    if not header_value:
        return None
    scheme, _, token = header_value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def secret_file(settings: Settings) -> Path:
    return settings.database.path.parent / SECRET_FILE_NAME


def resolve_secret(settings: Settings) -> str:
    """The configured secret, or one generated once and kept next to the database.

    Persisting it means a restart does not log every shopper and staff member out; keeping it
    beside the database means backing up one directory keeps tokens and data consistent.
    """
    if settings.auth.secret:
        return settings.auth.secret
    path = secret_file(settings)
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # Write a private temp file then link it into place: link fails if another process won
    # the race, and nobody can ever read a half-written secret.
    tmp = path.with_name(f".{SECRET_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        _write_private(tmp, secret)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # no hard links (some network filesystems): exclusive create instead
            _write_private(path, secret)
    except FileExistsError:
        return _read_secret(path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("generated a new token secret in %s", path)
    return secret


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_secret(path: Path) -> str:
    secret = path.read_text().strip()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"{path} holds a secret shorter than {MIN_SECRET_BYTES} bytes; delete "
                          "it to generate a new one (this logs everybody out)")
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users; run: chmod 600 %s", path, path)
    return secret
