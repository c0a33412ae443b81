"""The optional C fan-out is actually built wherever it can be.

`pip install -e .` compiles mediaserver/_fanout.c; the build is optional so a machine without
a compiler still installs. That must not hide a broken build on machines that have one: the
tests of the native path would only skip and the SFU would quietly run its slower path.
"""

from __future__ import annotations

import importlib.util
import shutil

import pytest

pytestmark = pytest.mark.integration


def test_extension_is_built_where_a_compiler_exists() -> None:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: the pure Python path is the expected one")
    assert importlib.util.find_spec("mediaserver._fanout") is not None, (
        "mediaserver._fanout was not built: reinstall with `pip install -e .` and read the "
        "compiler's warning")
    import mediaserver._fanout as native

    assert callable(native.fanout) and native.Target().valid is False
