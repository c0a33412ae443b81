"""The ICE servers each participant of a call is given: the configured STUN/TURN entries and,
with `[media.turn]`, TURN credentials minted for that participant alone.

The credentials follow the TURN REST API scheme (draft-uberti-behave-turn-rest) that coturn
checks with `use-auth-secret` / `static-auth-secret`: the username is "<expiry>:<user>"
(expiry in Unix seconds), the password base64(HMAC-SHA1(secret, username)). coturn needs no
call to shopcall to check them, a leaked pair stops working at its expiry, and the shared
secret never leaves the two servers. Pure code: the clock is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Any


def turn_credential(secret: str, username: str) -> str:
    """The password coturn expects for a TURN REST username."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def turn_username(user: str, expires_at: float) -> str:
    """"<expiry>:<user>": coturn reads the expiry up to the first ':' and refuses the
    credentials after it (the rest is only a label, shown in its logs)."""
    return f"{int(expires_at)}:{user}"


class IceServerIssuer:
    """What goes into `join.ice_servers` for one participant."""

    def __init__(self, static: Sequence[dict[str, Any]] = (), *, turn_urls: Sequence[str] = (),
                 turn_secret: str | None = None, lifetime_s: float = 6 * 3600,
                 clock: Callable[[], float]) -> None:
        if turn_urls and not turn_secret:
            raise ValueError("TURN URLs need the shared secret")
        self._static = [dict(s) for s in static]
        self._turn_urls = list(turn_urls)
        self._secret = turn_secret
        self._lifetime_s = lifetime_s
        self._clock = clock

    @property
    def relays(self) -> bool:
        """Whether participants get a TURN relay with minted credentials."""
        return bool(self._turn_urls)

    def for_participant(self, participant_id: str) -> list[dict[str, Any]]:
        servers = [dict(s) for s in self._static]
        if self._turn_urls and self._secret:
            username = turn_username(participant_id, self._clock() + self._lifetime_s)
            servers.append({"urls": list(self._turn_urls), "username": username,
                            "credential": turn_credential(self._secret, username)})
        return servers
