"""The optional C extensions (mediaserver/_fanout.c, mediaserver/_srtp_gcm.c) in one place.

Whether they are used is decided once, here: either may be missing (no compiler or no
OpenSSL headers at install time), SHOPCALL_NATIVE_FANOUT=0 turns both off, and
SHOPCALL_SRTP_GCM=0 only the AES-GCM protect (to rule it out when a receiver cannot decrypt,
or to compare). Then every path they would take (fan-out, SRTP unprotect, AES-GCM protect)
runs in Python and pylibsrtp instead.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def load_extension(name: str = "_fanout") -> ModuleType | None:
    if os.environ.get("SHOPCALL_NATIVE_FANOUT", "1") == "0":
        return None
    if name == "_srtp_gcm" and os.environ.get("SHOPCALL_SRTP_GCM", "1") == "0":
        return None
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError:
        return None
