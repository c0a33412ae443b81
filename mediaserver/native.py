"""The optional C extension (mediaserver/_fanout.c) in one place.

Whether it is used is decided once, here: it may be missing (no compiler at install time)
or turned off with SHOPCALL_NATIVE_FANOUT=0, and then every path it would take (fan-out,
SRTP unprotect) runs in Python instead.
"""

from __future__ import annotations

import os
from types import ModuleType


def load_extension() -> ModuleType | None:
    if os.environ.get("SHOPCALL_NATIVE_FANOUT", "1") == "0":
        return None
    try:
        from . import _fanout
    except ImportError:
        return None
    return _fanout
