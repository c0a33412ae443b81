"""SQLite implementation of the Storage protocol.

The server runs on a single event loop, so no SQLite call may run on it. Writes go to one
dedicated writer thread that commits everything queued since its last commit in a single
transaction (group commit): with synchronous=FULL each commit costs an fsync, and sharing that
fsync between all messages that arrived meanwhile is what keeps latency flat under load. Reads
use their own read-only connection on another thread; WAL lets them run while a write commits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import importlib.resources
import json
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .media import CallQuality
from .model import (
    AsyncMessage,
    Call,
    CallKind,
    Channel,
    ChatMessage,
    Conversation,
    ConversationContext,
    ConversationEvent,
    ConversationState,
    EventKind,
    MessageKind,
    Outcome,
    Presence,
    Rating,
    SenderRole,
    StaffMember,
    Store,
)
from .storage import StorageError

__all__ = ["SQLiteStorage", "migrate"]

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], T]

_SYNCHRONOUS_MODES = frozenset({"off", "normal", "full", "extra"})
_MIGRATION_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")
# Long enough to ride out a `shopcall migrate` or a backup holding the lock, short enough that
# a stuck lock surfaces as an error rather than a hung server.
_BUSY_TIMEOUT_MS = 10_000
# Columns of call_quality named after CallQuality's fields (migration 0002).
_QUALITY_FIELDS = tuple(f.name for f in dataclasses.fields(CallQuality))


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Read the packaged migrations; importlib.resources keeps this working from a wheel."""
    found: dict[int, Migration] = {}
    for entry in importlib.resources.files("signaling").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise StorageError(f"two migrations share version {version}: {entry.name}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def _statements(script: str) -> Iterator[str]:
    """Split a script so it can run statement by statement inside our own transaction.

    sqlite3's executescript() would commit the transaction we opened first, which would let a
    second process apply the same migration concurrently.
    """
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):  # false while the ';' sits inside a literal
            yield buffer
            buffer = ""


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """Apply pending migrations, one transaction each, and return the resulting version.

    The applied set is re-read after taking the write lock so that two processes starting at
    once (server and CLI) cannot both apply the same file.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version INTEGER PRIMARY KEY, name TEXT, applied_at REAL)"
    )
    known = max((m.version for m in migrations), default=0)
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            applied = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            ).fetchone()
            if applied is None:
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StorageError(
                    f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                ) from exc
            raise
    version = _current_version(conn)
    if version > known:
        # Older code writing to a newer schema could break invariants it does not know about.
        raise StorageError(f"database schema version {version} is newer than this code ({known})")
    return version


def _current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def _batch_error(label: str, exc: Exception) -> StorageError:
    error = StorageError(f"{label} failed: the transaction could not commit: {exc}")
    error.__cause__ = exc
    return error


def _storage_error(label: str, exc: sqlite3.Error) -> StorageError:
    error = StorageError(f"{label} failed: {exc}")
    error.__cause__ = exc
    return error


_Settled = tuple[asyncio.Future[Any], Any, BaseException | None]


def _resolve(outcomes: list[_Settled]) -> None:
    for future, result, error in outcomes:
        # The caller may have been cancelled while its write was committing; the write still
        # happened, there is just nobody left to tell.
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


_CLOSE = object()  # sentinel telling the writer thread to finish the queue and exit


class _Writer(threading.Thread):
    """Owns the only write connection and commits queued operations in batches."""

    def __init__(self, path: Path, synchronous: str) -> None:
        super().__init__(name="shopcall-sqlite-writer", daemon=True)
        self._path = path
        self._synchronous = synchronous
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self.done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.commits = 0  # read by tests to check that batching happens

    def run(self) -> None:
        try:
            try:
                conn = self._connect()
            except BaseException as exc:
                self.ready.set_exception(exc)
                return
            try:
                self._serve(conn)
            finally:
                try:
                    # Fold the WAL back into the database so a closed DB is a single file.
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    conn.close()
        finally:
            self.done.set_result(None)

    def _connect(self) -> sqlite3.Connection:
        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            restrict_file_modes(self._path)
        except OSError as exc:
            raise StorageError(f"cannot create {self._path}: {exc}") from exc
        try:
            conn = sqlite3.connect(self._path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self._path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            # First, so that switching to WAL waits for another process instead of failing.
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StorageError(f"{self._path}: cannot enable WAL (journal_mode is {mode})")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            version = apply_migrations(conn, load_migrations())
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"cannot open {self._path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self.ready.set_result(version)
        return conn

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            batch = [self.queue.get()]
            while True:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            ops = [item for item in batch if item is not _CLOSE]
            if ops:
                self._commit(conn, ops)
            if len(ops) < len(batch):
                return

    def _commit(
        self, conn: sqlite3.Connection, ops: list[tuple[str, Op[Any], asyncio.Future[Any]]]
    ) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for label, op, _ in ops:
                # A savepoint per operation: one failing write must not take its batch down.
                conn.execute("SAVEPOINT op")
                try:
                    result = op(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    if isinstance(exc, sqlite3.Error):
                        exc = _storage_error(label, exc)
                    outcomes.append((None, exc))
                else:
                    conn.execute("RELEASE op")
                    outcomes.append((result, None))
            conn.execute("COMMIT")
            self.commits += 1
        except Exception as exc:
            # BEGIN, COMMIT or a rollback failed (disk full, I/O error, lock timeout): nothing in
            # this batch is durable, so nobody may be told otherwise.
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            # A fresh exception per caller: one instance raised in many tasks mixes tracebacks.
            outcomes = [(None, _batch_error(label, exc)) for label, _, _ in ops]
        # One wake-up of the event loop per batch, not per future.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
        for (_, _, future), (result, error) in zip(ops, outcomes, strict=True):
            by_loop.setdefault(future.get_loop(), []).append((future, result, error))
        for loop, resolved in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, resolved)
            except RuntimeError:  # the loop is already closed
                pass


class SQLiteStorage:
    """Storage in one SQLite file; every write returns only after its COMMIT.

    `synchronous` is SQLite's PRAGMA: FULL (the default) keeps acknowledged writes through
    power loss, NORMAL only through a process crash, at a lower commit cost.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "full") -> None:
        if synchronous.lower() not in _SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {sorted(_SYNCHRONOUS_MODES)}")
        self._path = Path(path)
        self._synchronous = synchronous.upper()
        self._state = "new"
        self._writer: _Writer | None = None
        self._reader: concurrent.futures.ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._closing: asyncio.Future[None] | None = None

    async def __aenter__(self) -> SQLiteStorage:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        if self._state == "open":
            return
        if self._state != "new":
            raise StorageError("storage is closed")
        writer = _Writer(self._path, self._synchronous)
        writer.start()
        await asyncio.wrap_future(writer.ready)  # migrations run in the writer thread
        reader = concurrent.futures.ThreadPoolExecutor(1, "shopcall-sqlite-reader")
        try:
            await asyncio.get_running_loop().run_in_executor(reader, self._open_reader)
        except BaseException:
            reader.shutdown(wait=False)
            writer.queue.put(_CLOSE)
            await asyncio.wrap_future(writer.done)
            self._state = "closed"
            raise
        self._writer, self._reader, self._state = writer, reader, "open"

    def _open_reader(self) -> None:
        # mode=ro turns any accidental write on the read path into an error.
        uri = self._path.resolve().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self._path} for reading: {exc}") from exc
        self._read_conn = conn

    async def close(self) -> None:
        if self._state == "new":
            self._state = "closed"
        if self._closing is None and self._state == "open":
            self._state = "closed"  # from here on nothing new reaches the queues
            self._closing = asyncio.ensure_future(self._shutdown())
        if self._closing is not None:
            await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        assert self._writer is not None and self._reader is not None
        loop = asyncio.get_running_loop()
        # Queued reads and writes run before the connections close, so callers that got in
        # before close() still get their answer.
        await loop.run_in_executor(self._reader, self._close_reader)
        self._reader.shutdown(wait=False)
        self._writer.queue.put(_CLOSE)
        await asyncio.wrap_future(self._writer.done)

    def _close_reader(self) -> None:
        if self._read_conn is not None:
            self._read_conn.close()
            self._read_conn = None

    def _check_open(self) -> None:
        if self._state != "open":
            raise StorageError("storage is closed" if self._state == "closed" else
                               "storage is not open")

    async def _write(self, label: str, op: Op[T]) -> T:
        self._check_open()
        assert self._writer is not None
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._writer.queue.put((label, op, future))
        return await future

    async def _read(self, label: str, op: Op[T]) -> T:
        self._check_open()
        return await asyncio.get_running_loop().run_in_executor(
            self._reader, self._run_read, label, op
        )

    def _run_read(self, label: str, op: Op[T]) -> T:
        assert self._read_conn is not None
        try:
            return op(self._read_conn)
        except sqlite3.Error as exc:
            raise _storage_error(label, exc) from exc

    async def schema_version(self) -> int:
        return await self._read("schema_version", _current_version)

    # Stores and staff -------------------------------------------------------------------

    async def upsert_store(self, store: Store) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO stores (id, name, overflow, uplink_kbps, downlink_kbps,"
                " staff_cost_per_hour) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
                " overflow = excluded.overflow, uplink_kbps = excluded.uplink_kbps,"
                " downlink_kbps = excluded.downlink_kbps,"
                " staff_cost_per_hour = excluded.staff_cost_per_hour",
                (store.id, store.name, store.overflow, store.uplink_kbps, store.downlink_kbps,
                 store.staff_cost_per_hour),
            )

        await self._write("upsert_store", op)

    async def get_store(self, store_id: str) -> Store | None:
        rows = await self._read("get_store", _query("SELECT * FROM stores WHERE id = ?",
                                                    (store_id,)))
        return _store(rows[0]) if rows else None

    async def list_stores(self) -> list[Store]:
        rows = await self._read("list_stores", _query("SELECT * FROM stores ORDER BY id"))
        return [_store(row) for row in rows]

    async def upsert_staff(self, staff: StaffMember) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO staff (id, name, store_id, skills, languages, max_conversations,"
                " channels) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
                " store_id = excluded.store_id, skills = excluded.skills,"
                " languages = excluded.languages,"
                " max_conversations = excluded.max_conversations, channels = excluded.channels",
                (staff.id, staff.name, staff.store_id, _json_set(staff.skills),
                 _json_set(staff.languages), staff.max_conversations,
                 _json_set(staff.channels)),
            )

        await self._write("upsert_staff", op)

    async def get_staff(self, staff_id: str) -> StaffMember | None:
        rows = await self._read("get_staff", _query("SELECT * FROM staff WHERE id = ?",
                                                    (staff_id,)))
        return _staff(rows[0]) if rows else None

    async def list_staff(self) -> list[StaffMember]:
        rows = await self._read("list_staff", _query("SELECT * FROM staff ORDER BY id"))
        return [_staff(row) for row in rows]

    async def record_presence(self, staff_id: str, presence: Presence, at: float) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO presence_log (staff_id, presence, at) VALUES (?, ?, ?)",
                (staff_id, str(presence), at),
            )

        await self._write("record_presence", op)

    # Conversations ----------------------------------------------------------------------

    async def create_conversation(
        self, conversation: Conversation, events: Sequence[ConversationEvent]
    ) -> None:
        c, ctx = conversation, conversation.context
        events = tuple(events)  # the caller may mutate its list while we wait

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO conversations (id, shopper_id, store_id, page_url, sku, skill,"
                " language, channel, state, staff_id, opened_at, queued_at, closed_at,"
                " declined_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (c.id, c.shopper_id, ctx.store_id, ctx.page_url, ctx.sku, ctx.skill,
                 ctx.language, str(ctx.channel), str(c.state), c.staff_id, c.opened_at,
                 c.queued_at, c.closed_at, _json_set(c.declined_by)),
            )
            _insert_events(conn, events)

        await self._write("create_conversation", op)

    async def update_conversation(
        self, conversation: Conversation, events: Sequence[ConversationEvent]
    ) -> None:
        c = conversation
        # The skill is part of the update: a transfer to a skill changes it.
        values = (str(c.state), c.staff_id, c.queued_at, c.closed_at, _json_set(c.declined_by),
                  c.context.skill, c.id)
        events = tuple(events)

        def op(conn: sqlite3.Connection) -> None:
            updated = conn.execute(
                "UPDATE conversations SET state = ?, staff_id = ?, queued_at = ?,"
                " closed_at = ?, declined_by = ?, skill = ? WHERE id = ?",
                values,
            ).rowcount
            if updated == 0:
                # Silently updating nothing would drop a state change the caller relies on.
                raise StorageError(f"update_conversation failed: no conversation {c.id!r}")
            _insert_events(conn, events)

        await self._write("update_conversation", op)

    async def add_events(self, events: Sequence[ConversationEvent]) -> None:
        events = tuple(events)
        await self._write("add_events", lambda conn: _insert_events(conn, events))

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        rows = await self._read("get_conversation", _query(
            "SELECT * FROM conversations WHERE id = ?", (conversation_id,)))
        return _conversation(rows[0]) if rows else None

    async def list_conversations(
        self,
        *,
        shopper_id: str | None = None,
        staff_id: str | None = None,
        store_id: str | None = None,
        states: Sequence[ConversationState] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Conversation]:
        where, params = _filters(shopper_id=shopper_id, staff_id=staff_id, store_id=store_id)
        if states is not None:
            if not states:
                return []
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(str(s) for s in states)
        sql = (f"SELECT * FROM conversations {_where(where)}"
               " ORDER BY opened_at DESC, id DESC LIMIT ? OFFSET ?")
        rows = await self._read("list_conversations", _query(sql, (*params, limit, offset)))
        return [_conversation(row) for row in rows]

    async def list_events(self, conversation_id: str) -> list[ConversationEvent]:
        rows = await self._read("list_events", _query(
            "SELECT * FROM conversation_events WHERE conversation_id = ? ORDER BY at, id",
            (conversation_id,)))
        return [_event(row) for row in rows]

    # Messages ---------------------------------------------------------------------------

    async def add_message(self, message: ChatMessage) -> ChatMessage:
        """The seq passed in is ignored: it is assigned here, inside the write transaction,
        because only the single writer can hand out gap-free numbers without a race."""
        m = message

        def op(conn: sqlite3.Connection) -> ChatMessage:
            if m.client_id is not None:
                # IS rather than = so a resend without a sender id is recognised too.
                row = conn.execute(
                    "SELECT * FROM messages WHERE conversation_id = ? AND sender_id IS ?"
                    " AND client_id = ?",
                    (m.conversation_id, m.sender_id, m.client_id),
                ).fetchone()
                if row is not None:
                    return _message(row)
            seq = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?",
                (m.conversation_id,),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO messages (conversation_id, seq, sender_role, sender_id, kind,"
                " text, card, at, client_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (m.conversation_id, seq, str(m.sender_role), m.sender_id, str(m.kind), m.text,
                 _json(m.card), m.at, m.client_id),
            )
            return dataclasses.replace(m, seq=seq)

        return await self._write("add_message", op)

    async def list_messages(self, conversation_id: str, after_seq: int = 0) -> list[ChatMessage]:
        rows = await self._read("list_messages", _query(
            "SELECT * FROM messages WHERE conversation_id = ? AND seq > ? ORDER BY seq",
            (conversation_id, after_seq)))
        return [_message(row) for row in rows]

    async def last_seq(self, conversation_id: str) -> int:
        rows = await self._read("last_seq", _query(
            "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?",
            (conversation_id,)))
        return int(rows[0][0])

    # Calls ------------------------------------------------------------------------------

    async def upsert_call(self, call: Call, events: Sequence[ConversationEvent] = ()) -> None:
        c = call
        events = tuple(events)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO calls (id, conversation_id, kind, proposed_by, proposed_at,"
                " started_at, ended_at, media_session_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET conversation_id = excluded.conversation_id,"
                " kind = excluded.kind, proposed_by = excluded.proposed_by,"
                " proposed_at = excluded.proposed_at, started_at = excluded.started_at,"
                " ended_at = excluded.ended_at, media_session_id = excluded.media_session_id",
                (c.id, c.conversation_id, str(c.kind), c.proposed_by, c.proposed_at,
                 c.started_at, c.ended_at, c.media_session_id),
            )
            _insert_events(conn, events)

        await self._write("upsert_call", op)

    async def list_open_calls(self) -> list[Call]:
        rows = await self._read("list_open_calls", _query(
            "SELECT * FROM calls WHERE ended_at IS NULL ORDER BY proposed_at, rowid"))
        return [_call(row) for row in rows]

    async def list_calls(self, conversation_id: str) -> list[Call]:
        rows = await self._read("list_calls", _query(
            "SELECT * FROM calls WHERE conversation_id = ? ORDER BY proposed_at, rowid",
            (conversation_id,)))
        return [_call(row) for row in rows]

    async def record_call_quality(self, call_id: str, quality: CallQuality, at: float) -> None:
        q = quality
        columns = ("call_id", *_QUALITY_FIELDS, "recorded_at")
        values = (call_id, *(getattr(q, f) for f in _QUALITY_FIELDS), at)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT OR REPLACE INTO call_quality ({', '.join(columns)})"
                f" VALUES ({', '.join('?' * len(columns))})", values)

        await self._write("record_call_quality", op)

    # Ratings and outcomes ---------------------------------------------------------------

    async def add_rating(self, rating: Rating, events: Sequence[ConversationEvent] = ()) -> None:
        r = rating
        events = tuple(events)

        def op(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO ratings (conversation_id, satisfaction, recommendation,"
                    " comment, at) VALUES (?, ?, ?, ?, ?)",
                    (r.conversation_id, r.satisfaction, r.recommendation, r.comment, r.at),
                )
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" in str(exc):
                    raise StorageError(
                        f"add_rating failed: conversation {r.conversation_id!r} is already rated"
                    ) from exc
                raise
            _insert_events(conn, events)

        await self._write("add_rating", op)

    async def get_rating(self, conversation_id: str) -> Rating | None:
        rows = await self._read("get_rating", _query(
            "SELECT * FROM ratings WHERE conversation_id = ?", (conversation_id,)))
        if not rows:
            return None
        row = rows[0]
        return Rating(row["conversation_id"], row["satisfaction"], row["recommendation"],
                      row["comment"], row["at"])

    async def set_outcome(self, outcome: Outcome, events: Sequence[ConversationEvent] = ()) -> None:
        o = outcome
        events = tuple(events)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO outcomes (conversation_id, order_placed, order_value, currency,"
                " reported_by, at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (conversation_id) DO UPDATE SET"
                " order_placed = excluded.order_placed, order_value = excluded.order_value,"
                " currency = excluded.currency, reported_by = excluded.reported_by,"
                " at = excluded.at",
                (o.conversation_id, o.order_placed, o.order_value, o.currency, o.reported_by,
                 o.at),
            )
            _insert_events(conn, events)

        await self._write("set_outcome", op)

    async def get_outcome(self, conversation_id: str) -> Outcome | None:
        rows = await self._read("get_outcome", _query(
            "SELECT * FROM outcomes WHERE conversation_id = ?", (conversation_id,)))
        if not rows:
            return None
        row = rows[0]
        return Outcome(row["conversation_id"], bool(row["order_placed"]), row["order_value"],
                       row["currency"], row["reported_by"], row["at"])

    # Asynchronous messages --------------------------------------------------------------

    async def add_async_message(
        self, message: AsyncMessage, events: Sequence[ConversationEvent] = ()
    ) -> AsyncMessage:
        m = message
        events = tuple(events)

        def op(conn: sqlite3.Connection) -> AsyncMessage:
            cursor = conn.execute(
                "INSERT INTO async_messages (conversation_id, shopper_id, store_id, skill,"
                " text, contact, created_at, answer, answered_by, answered_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (m.conversation_id, m.shopper_id, m.store_id, m.skill, m.text, m.contact,
                 m.created_at, m.answer, m.answered_by, m.answered_at),
            )
            _insert_events(conn, events)
            return dataclasses.replace(m, id=cursor.lastrowid)

        return await self._write("add_async_message", op)

    async def answer_async_message(
        self,
        message_id: int,
        answer: str,
        staff_id: str,
        at: float,
        events: Sequence[ConversationEvent] = (),
    ) -> AsyncMessage | None:
        events = tuple(events)

        def op(conn: sqlite3.Connection) -> AsyncMessage | None:
            updated = conn.execute(
                "UPDATE async_messages SET answer = ?, answered_by = ?, answered_at = ?"
                " WHERE id = ?",
                (answer, staff_id, at, message_id),
            ).rowcount
            if updated == 0:
                return None  # and no events: they would describe something that did not happen
            _insert_events(conn, events)
            row = conn.execute("SELECT * FROM async_messages WHERE id = ?", (message_id,))
            return _async_message(row.fetchone())

        return await self._write("answer_async_message", op)

    async def get_async_message(self, message_id: int) -> AsyncMessage | None:
        rows = await self._read("get_async_message", _query(
            "SELECT * FROM async_messages WHERE id = ?", (message_id,)))
        return _async_message(rows[0]) if rows else None

    async def list_async_messages(
        self,
        *,
        answered: bool | None = None,
        store_id: str | None = None,
        conversation_id: str | None = None,
        shopper_id: str | None = None,
        limit: int = 100,
    ) -> list[AsyncMessage]:
        where, params = _filters(store_id=store_id, conversation_id=conversation_id,
                                 shopper_id=shopper_id)
        if answered is not None:
            where.append(f"answered_at IS {'NOT ' if answered else ''}NULL")
        sql = f"SELECT * FROM async_messages {_where(where)} ORDER BY created_at, id LIMIT ?"
        rows = await self._read("list_async_messages", _query(sql, (*params, limit)))
        return [_async_message(row) for row in rows]


async def migrate(path: str | os.PathLike[str]) -> int:
    """Bring the database at `path` up to date and return its schema version (CLI entry)."""
    async with SQLiteStorage(path) as storage:
        return await storage.schema_version()


# Row mapping ----------------------------------------------------------------------------


def restrict_file_modes(path: Path) -> None:
    """The database holds chats and shoppers' contact details: owner-only (0600).

    Created here with that mode rather than by sqlite3.connect under the process umask
    (0644 by default); SQLite gives its -wal and -shm files the database file's mode.
    Files left readable by an older version are tightened.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.chmod(0o600)


def _query(sql: str, params: Sequence[Any] = ()) -> Op[list[sqlite3.Row]]:
    # fetchall() so no cursor keeps a read transaction (and the WAL) pinned between calls.
    return lambda conn: conn.execute(sql, params).fetchall()


def _filters(**columns: str | None) -> tuple[list[str], list[Any]]:
    given = {column: value for column, value in columns.items() if value is not None}
    return [f"{column} = ?" for column in given], list(given.values())


def _where(conditions: list[str]) -> str:
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _json_set(values: frozenset[str] | set[str]) -> str:
    return json.dumps(sorted(str(v) for v in values))  # sorted: same set, same bytes


def _insert_events(conn: sqlite3.Connection, events: Sequence[ConversationEvent]) -> None:
    conn.executemany(
        "INSERT INTO conversation_events (conversation_id, kind, at, actor, data)"
        " VALUES (?, ?, ?, ?, ?)",
        [(e.conversation_id, str(e.kind), e.at, e.actor, _json(e.data)) for e in events],
    )


def _store(row: sqlite3.Row) -> Store:
    return Store(row["id"], row["name"], bool(row["overflow"]), row["uplink_kbps"],
                 row["downlink_kbps"], row["staff_cost_per_hour"])


def _staff(row: sqlite3.Row) -> StaffMember:
    return StaffMember(
        id=row["id"],
        name=row["name"],
        store_id=row["store_id"],
        skills=frozenset(json.loads(row["skills"])),
        languages=frozenset(json.loads(row["languages"])),
        max_conversations=row["max_conversations"],
        channels=frozenset(Channel(c) for c in json.loads(row["channels"])),
    )


def _conversation(row: sqlite3.Row) -> Conversation:
    context = ConversationContext(row["store_id"], row["page_url"], row["sku"], row["skill"],
                                  row["language"], Channel(row["channel"]))
    return Conversation(
        id=row["id"],
        shopper_id=row["shopper_id"],
        context=context,
        state=ConversationState(row["state"]),
        opened_at=row["opened_at"],
        staff_id=row["staff_id"],
        queued_at=row["queued_at"],
        declined_by=set(json.loads(row["declined_by"])),
        closed_at=row["closed_at"],
    )


def _event(row: sqlite3.Row) -> ConversationEvent:
    data = row["data"]
    return ConversationEvent(row["conversation_id"], EventKind(row["kind"]), row["at"],
                             row["actor"], None if data is None else json.loads(data))


def _message(row: sqlite3.Row) -> ChatMessage:
    card = row["card"]
    return ChatMessage(
        conversation_id=row["conversation_id"],
        seq=row["seq"],
        sender_role=SenderRole(row["sender_role"]),
        sender_id=row["sender_id"],
        kind=MessageKind(row["kind"]),
        text=row["text"],
        card=None if card is None else json.loads(card),
        at=row["at"],
        client_id=row["client_id"],
    )


def _call(row: sqlite3.Row) -> Call:
    return Call(row["id"], row["conversation_id"], CallKind(row["kind"]), row["proposed_by"],
                row["proposed_at"], row["started_at"], row["ended_at"], row["media_session_id"])


def _async_message(row: sqlite3.Row) -> AsyncMessage:
    return AsyncMessage(
        id=row["id"],
        conversation_id=row["conversation_id"],
        shopper_id=row["shopper_id"],
        store_id=row["store_id"],
        skill=row["skill"],
        text=row["text"],
        contact=row["contact"],
        created_at=row["created_at"],
        answer=row["answer"],
        answered_by=row["answered_by"],
        answered_at=row["answered_at"],
    )
