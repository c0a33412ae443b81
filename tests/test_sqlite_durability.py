"""An acknowledged write survives SIGKILL: a real process writes through SQLiteStorage, is
killed without any cleanup, and the message is in the database when it is opened again."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest

from signaling.sqlite_storage import SQLiteStorage

pytestmark = pytest.mark.integration

# Long enough for the subprocess to import and open, short enough to fail a hung run quickly.
SUBPROCESS_TIMEOUT = 20

WRITER_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from signaling.model import *
    from signaling.sqlite_storage import SQLiteStorage

    async def main() -> None:
        s = SQLiteStorage(sys.argv[1])
        await s.open()
        await s.create_conversation(Conversation(
            "c1", "sh1", ConversationContext(), ConversationState.ACCEPTED, 1.0), [])
        await s.add_message(ChatMessage("c1", 0, SenderRole.SHOPPER, "sh1", MessageKind.TEXT,
                                        "survive this", None, 2.0, "m1"))
        print("acked", flush=True)
        await asyncio.sleep(60)  # never closes: the test kills us first

    asyncio.run(main())
""")


async def test_acked_message_survives_sigkill(tmp_path: Path) -> None:
    db_path = tmp_path / "shopcall.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER_SCRIPT, str(db_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), SUBPROCESS_TIMEOUT)
    finally:
        proc.kill()  # SIGKILL: no close(), no checkpoint, no atexit
        await proc.wait()
    assert line == b"acked\n", (await proc.stderr.read()).decode()
    assert proc.returncode == -9

    async with SQLiteStorage(db_path) as s:
        [stored] = await s.list_messages("c1")
    assert (stored.seq, stored.text, stored.client_id) == (1, "survive this", "m1")
