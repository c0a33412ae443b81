"""SQLiteStorage against real database files: no mocks, since what matters is what SQLite does."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling.model import (
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
from signaling.sqlite_storage import (
    Migration,
    SQLiteStorage,
    apply_migrations,
    load_migrations,
    migrate,
)
from signaling.storage import StorageError

pytestmark = pytest.mark.unit

# Long enough for the subprocess to import and open, short enough to fail a hung run quickly.
SUBPROCESS_TIMEOUT = 20


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "shopcall.db"  # open() must create the parents


@pytest.fixture
async def storage(db_path: Path) -> AsyncIterator[SQLiteStorage]:
    s = SQLiteStorage(db_path)
    await s.open()
    yield s
    await s.close()


def conversation(cid: str = "c1", *, shopper: str = "shopper-1", store: str | None = "s1",
                 opened_at: float = 1000.0, state: ConversationState = ConversationState.QUEUED,
                 staff: str | None = None) -> Conversation:
    return Conversation(
        id=cid,
        shopper_id=shopper,
        context=ConversationContext(store_id=store, page_url="https://shop/p/1", sku="SKU-1",
                                    skill="bikes", language="fr", channel=Channel.VIDEO),
        state=state,
        opened_at=opened_at,
        staff_id=staff,
        queued_at=opened_at + 1,
    )


def event(cid: str, kind: EventKind, at: float, data: dict | None = None) -> ConversationEvent:
    return ConversationEvent(cid, kind, at, actor="system", data=data)


def message(cid: str = "c1", *, client_id: str | None = None, sender: str | None = "shopper-1",
            text: str = "hello", at: float = 1001.0) -> ChatMessage:
    return ChatMessage(cid, 0, SenderRole.SHOPPER, sender, MessageKind.TEXT, text, None, at,
                       client_id)


def raw_rows(path: Path, sql: str) -> list[tuple]:
    """Look at the file with a connection of our own, bypassing the code under test."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# Lifecycle and migrations ---------------------------------------------------------------


async def test_open_sets_wal_and_durable_synchronous(storage: SQLiteStorage, db_path: Path) -> None:
    # A missing file would report "delete" here: this also proves the parents were created.
    assert raw_rows(db_path, "PRAGMA journal_mode") == [("wal",)]
    probe = await storage._write("probe", lambda c: c.execute("PRAGMA synchronous").fetchone())
    assert probe[0] == 2  # FULL
    foreign_keys = await storage._write("probe", lambda c: c.execute("PRAGMA foreign_keys"
                                                                     ).fetchone())
    assert foreign_keys[0] == 1


async def test_synchronous_is_configurable(tmp_path: Path) -> None:
    async with SQLiteStorage(tmp_path / "x.db", synchronous="normal") as s:
        probe = await s._write("probe", lambda c: c.execute("PRAGMA synchronous").fetchone())
        assert probe[0] == 1
    with pytest.raises(ValueError):
        SQLiteStorage(tmp_path / "y.db", synchronous="sometimes")


async def test_migrations_applied_once(db_path: Path) -> None:
    latest = load_migrations()[-1].version
    assert await migrate(db_path) == latest
    first = raw_rows(db_path, "SELECT version, name, applied_at FROM schema_migrations")
    assert [row[:2] for row in first] == [(m.version, m.name) for m in load_migrations()]
    assert first[0][:2] == (1, "initial")

    async with SQLiteStorage(db_path) as s:
        assert await s.schema_version() == latest
    assert raw_rows(db_path, "SELECT version, name, applied_at FROM schema_migrations") == first


def test_failed_migration_rolls_back_alone() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    good = Migration(1, "good", "CREATE TABLE a (x TEXT); INSERT INTO a VALUES ('semi;colon');")
    bad = Migration(2, "bad", "CREATE TABLE b (x); INSERT INTO missing VALUES (1);")
    with pytest.raises(StorageError, match="0002_bad"):
        apply_migrations(conn, [good, bad])
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "a" in tables and "b" not in tables
    assert conn.execute("SELECT x FROM a").fetchall() == [("semi;colon",)]
    fixed = Migration(2, "fixed", "CREATE TABLE b (x);")
    assert apply_migrations(conn, [good, fixed]) == 2
    assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [(1,), (2,)]


async def test_refuses_database_newer_than_code(db_path: Path) -> None:
    await migrate(db_path)
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("INSERT INTO schema_migrations VALUES (9999, 'future', 0)")
    conn.close()
    with pytest.raises(StorageError, match="newer"):
        await SQLiteStorage(db_path).open()


async def test_closed_storage_refuses_calls(db_path: Path) -> None:
    s = SQLiteStorage(db_path)
    with pytest.raises(StorageError, match="not open"):
        await s.list_stores()
    await s.open()
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(StorageError, match="storage is closed"):
        await s.list_stores()
    with pytest.raises(StorageError, match="storage is closed"):
        await s.upsert_store(Store("s1", "Lyon"))
    with pytest.raises(StorageError, match="storage is closed"):
        await s.open()


async def test_close_finishes_queued_work(db_path: Path) -> None:
    s = SQLiteStorage(db_path)
    await s.open()
    writes = [asyncio.ensure_future(s.upsert_store(Store(f"s{i}", "x"))) for i in range(20)]
    await asyncio.sleep(0)  # let them reach the queue
    await s.close()
    await asyncio.gather(*writes)
    assert raw_rows(db_path, "SELECT COUNT(*) FROM stores") == [(20,)]


# Stores, staff, presence ----------------------------------------------------------------


async def test_stores_round_trip(storage: SQLiteStorage) -> None:
    lyon = Store("s2", "Lyon", overflow=False, uplink_kbps=800, downlink_kbps=4000,
                 staff_cost_per_hour=31.5)
    await storage.upsert_store(lyon)
    await storage.upsert_store(Store("s1", "Paris"))
    assert await storage.get_store("s2") == lyon
    assert await storage.get_store("nope") is None
    await storage.upsert_store(dataclasses.replace(lyon, name="Lyon Part-Dieu", overflow=True))
    assert [(s.id, s.name, s.overflow) for s in await storage.list_stores()] == [
        ("s1", "Paris", True), ("s2", "Lyon Part-Dieu", True)]


async def test_staff_round_trip_keeps_types(storage: SQLiteStorage) -> None:
    anna = StaffMember("st1", "Anna", "s1", skills=frozenset({"bikes", "helmets"}),
                       languages=frozenset({"fr", "en"}), max_conversations=3,
                       channels=frozenset({Channel.CHAT, Channel.AUDIO}))
    await storage.upsert_staff(anna)
    await storage.upsert_staff(StaffMember("st0", "Bob", "s2"))
    got = await storage.get_staff("st1")
    assert got == anna
    assert isinstance(got.skills, frozenset) and isinstance(got.channels, frozenset)
    assert all(type(c) is Channel for c in got.channels)
    assert await storage.get_staff("nope") is None
    bob = (await storage.list_staff())[0]
    assert bob.id == "st0" and bob.channels == frozenset(Channel) and bob.skills == frozenset()
    await storage.upsert_staff(dataclasses.replace(anna, max_conversations=1))
    assert (await storage.get_staff("st1")).max_conversations == 1


async def test_presence_log_appends(storage: SQLiteStorage, db_path: Path) -> None:
    await storage.record_presence("st1", Presence.ONLINE, 10.0)
    await storage.record_presence("st1", Presence.BUSY_IN_STORE, 20.5)
    assert raw_rows(db_path, "SELECT staff_id, presence, at FROM presence_log ORDER BY id") == [
        ("st1", "online", 10.0), ("st1", "busy_in_store", 20.5)]


# Conversations and events ---------------------------------------------------------------


async def test_conversation_round_trip_with_events(storage: SQLiteStorage) -> None:
    c = conversation()
    await storage.create_conversation(c, [event("c1", EventKind.OPENED, 1000.0),
                                          event("c1", EventKind.QUEUED, 1001.0, {"pos": 1})])
    got = await storage.get_conversation("c1")
    assert got == c
    assert type(got.state) is ConversationState and type(got.context.channel) is Channel

    c.state, c.staff_id, c.declined_by = ConversationState.ACCEPTED, "st1", {"st2", "st3"}
    c.closed_at = 1500.0
    await storage.update_conversation(c, [event("c1", EventKind.ACCEPTED, 1002.0)])
    got = await storage.get_conversation("c1")
    assert got == c and isinstance(got.declined_by, set)

    events = await storage.list_events("c1")
    assert [e.kind for e in events] == [EventKind.OPENED, EventKind.QUEUED, EventKind.ACCEPTED]
    assert events[1] == event("c1", EventKind.QUEUED, 1001.0, {"pos": 1})
    await storage.add_events([event("c1", EventKind.CLOSED, 1003.0)])
    assert (await storage.list_events("c1"))[-1].kind is EventKind.CLOSED
    assert await storage.get_conversation("nope") is None
    assert await storage.list_events("nope") == []


async def test_conversation_and_events_are_atomic(storage: SQLiteStorage) -> None:
    # The second event points at a conversation that does not exist: nothing may be stored.
    with pytest.raises(StorageError, match="create_conversation"):
        await storage.create_conversation(conversation(), [event("c1", EventKind.OPENED, 1.0),
                                                           event("ghost", EventKind.OPENED, 1.0)])
    assert await storage.get_conversation("c1") is None
    assert await storage.list_events("c1") == []


async def test_update_or_duplicate_conversation_fails(storage: SQLiteStorage) -> None:
    with pytest.raises(StorageError, match="no conversation"):
        await storage.update_conversation(conversation("ghost"), [])
    await storage.create_conversation(conversation(), [])
    with pytest.raises(StorageError, match="UNIQUE"):
        await storage.create_conversation(conversation(), [])


async def test_list_conversations_filters(storage: SQLiteStorage) -> None:
    rows = [
        conversation("a", shopper="sh1", store="s1", opened_at=1.0),
        conversation("b", shopper="sh1", store="s2", opened_at=3.0,
                     state=ConversationState.ACCEPTED, staff="st1"),
        conversation("c", shopper="sh2", store="s1", opened_at=2.0,
                     state=ConversationState.CLOSED, staff="st1"),
        conversation("d", shopper="sh3", store=None, opened_at=4.0),
    ]
    for c in rows:
        await storage.create_conversation(c, [])

    async def ids(**filters: object) -> list[str]:
        return [c.id for c in await storage.list_conversations(**filters)]

    assert await ids() == ["d", "b", "c", "a"]
    assert await ids(shopper_id="sh1") == ["b", "a"]
    assert await ids(staff_id="st1") == ["b", "c"]
    assert await ids(store_id="s1") == ["c", "a"]
    assert await ids(store_id="s1", states=[ConversationState.QUEUED]) == ["a"]
    assert await ids(states=[ConversationState.QUEUED, ConversationState.ACCEPTED]) == [
        "d", "b", "a"]
    assert await ids(states=[]) == []
    assert await ids(limit=2, offset=1) == ["b", "c"]


# Messages -------------------------------------------------------------------------------


async def test_messages_seq_and_idempotent_resend(storage: SQLiteStorage) -> None:
    await storage.create_conversation(conversation(), [])
    assert await storage.last_seq("c1") == 0
    first = await storage.add_message(message(client_id="m1", text="first"))
    assert first.seq == 1 and first.text == "first"

    resent = await storage.add_message(message(client_id="m1", text="first", at=2000.0))
    assert resent == first  # the original, with its seq and timestamp

    # Same client id from someone else, and messages without a client id, are all new.
    other = await storage.add_message(message(client_id="m1", sender="st1"))
    loose = [await storage.add_message(message()) for _ in range(2)]
    assert [other.seq, *(m.seq for m in loose)] == [2, 3, 4]

    card = {"sku": "SKU-1", "title": "Bike", "price": 499.9, "currency": "EUR"}
    product = await storage.add_message(ChatMessage("c1", 0, SenderRole.STAFF, "st1",
                                                    MessageKind.PRODUCT_CARD, None, card, 3000.0))
    assert product.seq == 5
    stored = await storage.list_messages("c1")
    assert [m.seq for m in stored] == [1, 2, 3, 4, 5]
    assert stored[0] == first and stored[-1] == product
    assert type(stored[-1].kind) is MessageKind and type(stored[-1].sender_role) is SenderRole
    assert [m.seq for m in await storage.list_messages("c1", after_seq=3)] == [4, 5]
    assert await storage.last_seq("c1") == 5
    assert await storage.list_messages("nope") == []


async def test_message_needs_a_conversation(storage: SQLiteStorage) -> None:
    with pytest.raises(StorageError, match="FOREIGN KEY"):
        await storage.add_message(message("ghost"))


# Calls, ratings, outcomes ---------------------------------------------------------------


async def test_calls_round_trip(storage: SQLiteStorage) -> None:
    await storage.create_conversation(conversation(), [])
    call = Call("k1", "c1", CallKind.VIDEO, "staff:st1", 10.0)
    await storage.upsert_call(call, [event("c1", EventKind.ESCALATED, 10.0)])
    call.started_at, call.media_session_id = 12.0, "ms-1"
    await storage.upsert_call(call, [event("c1", EventKind.CALL_STARTED, 12.0)])
    await storage.upsert_call(Call("k2", "c1", CallKind.AUDIO, "shopper:sh1", 20.0))
    calls = await storage.list_calls("c1")
    assert calls == [call, Call("k2", "c1", CallKind.AUDIO, "shopper:sh1", 20.0)]
    assert type(calls[0].kind) is CallKind
    assert [e.kind for e in await storage.list_events("c1")] == [EventKind.ESCALATED,
                                                                  EventKind.CALL_STARTED]


async def test_one_rating_per_conversation(storage: SQLiteStorage) -> None:
    await storage.create_conversation(conversation(), [])
    rating = Rating("c1", 5, 9, "great", 50.0)
    await storage.add_rating(rating, [event("c1", EventKind.RATED, 50.0)])
    assert await storage.get_rating("c1") == rating
    with pytest.raises(StorageError, match="already rated"):
        await storage.add_rating(Rating("c1", 1, 0, None, 51.0),
                                 [event("c1", EventKind.RATED, 51.0)])
    assert await storage.get_rating("c1") == rating
    assert len(await storage.list_events("c1")) == 1  # the failed rating's event rolled back
    assert await storage.get_rating("nope") is None


async def test_rating_out_of_range_is_refused(storage: SQLiteStorage) -> None:
    await storage.create_conversation(conversation(), [])
    with pytest.raises(StorageError, match="CHECK"):
        await storage.add_rating(Rating("c1", 6, 9, None, 1.0))


async def test_outcome_is_replaced(storage: SQLiteStorage) -> None:
    await storage.create_conversation(conversation(), [])
    await storage.set_outcome(Outcome("c1", False, None, None, "backend", 60.0))
    corrected = Outcome("c1", True, 129.5, "EUR", "backend", 61.0)
    await storage.set_outcome(corrected, [event("c1", EventKind.OUTCOME, 61.0)])
    got = await storage.get_outcome("c1")
    assert got == corrected and got.order_placed is True
    assert await storage.get_outcome("nope") is None


# Asynchronous messages ------------------------------------------------------------------


async def test_async_messages(storage: SQLiteStorage) -> None:
    await storage.create_conversation(conversation("c1"), [])
    await storage.create_conversation(conversation("c2", shopper="sh2", store="s2"), [])

    def left(cid: str, shopper: str, store: str | None, at: float) -> AsyncMessage:
        return AsyncMessage(-1, cid, shopper, store, "bikes", "call me", "me@example.org", at)

    a = await storage.add_async_message(left("c1", "shopper-1", "s1", 1.0),
                                        [event("c1", EventKind.ASYNC_LEFT, 1.0)])
    b = await storage.add_async_message(left("c2", "sh2", "s2", 2.0))
    assert a.id > 0 and b.id > a.id
    assert await storage.get_async_message(a.id) == a

    answered = await storage.answer_async_message(a.id, "done", "st1", 5.0,
                                                  [event("c1", EventKind.ASYNC_ANSWERED, 5.0)])
    assert answered == dataclasses.replace(a, answer="done", answered_by="st1", answered_at=5.0)
    again = await storage.answer_async_message(a.id, "better", "st2", 6.0)
    assert (again.answer, again.answered_by) == ("better", "st2")
    assert await storage.get_async_message(a.id) == again

    assert await storage.answer_async_message(9999, "x", "st1", 7.0,
                                              [event("c1", EventKind.ASYNC_ANSWERED, 7.0)]) is None
    assert [e.kind for e in await storage.list_events("c1")] == [EventKind.ASYNC_LEFT,
                                                                  EventKind.ASYNC_ANSWERED]
    assert await storage.get_async_message(9999) is None

    async def ids(**filters: object) -> list[int]:
        return [m.id for m in await storage.list_async_messages(**filters)]

    assert await ids() == [a.id, b.id]
    assert await ids(answered=True) == [a.id]
    assert await ids(answered=False) == [b.id]
    assert await ids(store_id="s2") == [b.id]
    assert await ids(conversation_id="c1") == [a.id]
    assert await ids(shopper_id="sh2", answered=False) == [b.id]
    assert await ids(limit=1) == [a.id]


# Group commit ---------------------------------------------------------------------------


async def test_concurrent_messages_share_commits(storage: SQLiteStorage, db_path: Path) -> None:
    await storage.create_conversation(conversation(), [])
    commits_before = storage._writer.commits
    results = await asyncio.gather(*(storage.add_message(message(client_id=f"m{i}"))
                                     for i in range(500)))
    assert sorted(m.seq for m in results) == list(range(1, 501))
    assert raw_rows(db_path, "SELECT COUNT(*), COUNT(DISTINCT client_id) FROM messages") == [
        (500, 500)]
    assert storage._writer.commits - commits_before < 500  # batching actually happened


async def test_failing_op_fails_alone_in_its_batch(storage: SQLiteStorage, db_path: Path) -> None:
    await storage.create_conversation(conversation(), [])
    entered, gate = threading.Event(), threading.Event()

    def hold(_: sqlite3.Connection) -> bool:
        entered.set()
        return gate.wait(5)

    # Hold the writer so everything below is queued together and lands in a single batch.
    blocker = asyncio.ensure_future(storage._write("gate", hold))
    assert await asyncio.to_thread(entered.wait, 5)
    commits_before = storage._writer.commits
    ops = [
        storage.add_message(message(client_id="before")),
        storage.add_rating(Rating("c1", 4, 8, None, 1.0), [event("c1", EventKind.RATED, 1.0)]),
        storage.add_rating(Rating("c1", 1, 1, None, 2.0), [event("c1", EventKind.RATED, 2.0)]),
        storage.add_message(message(client_id="after")),
    ]
    pending = asyncio.gather(*ops, return_exceptions=True)
    await asyncio.sleep(0.05)
    gate.set()
    assert await blocker is True
    first, rated, duplicate, last = await pending
    assert storage._writer.commits - commits_before == 2  # the gate's batch, then ours
    assert (first.seq, last.seq) == (1, 2)
    assert rated is None
    assert isinstance(duplicate, StorageError) and "already rated" in str(duplicate)
    assert await storage.get_rating("c1") == Rating("c1", 4, 8, None, 1.0)
    assert [e.at for e in await storage.list_events("c1")] == [1.0]
    assert raw_rows(db_path, "SELECT COUNT(*) FROM messages") == [(2,)]


async def test_cancelled_write_still_commits(storage: SQLiteStorage) -> None:
    """Cancelling the waiter cannot take back a queued write; it must not wedge the writer."""
    await storage.create_conversation(conversation(), [])
    gate = threading.Event()
    blocker = asyncio.ensure_future(storage._write("gate", lambda _: gate.wait(5)))
    write = asyncio.ensure_future(storage.add_message(message(client_id="m1")))
    await asyncio.sleep(0.01)
    write.cancel()
    gate.set()
    await blocker
    later = await storage.add_message(message(client_id="m2"))
    assert write.cancelled() and later.seq == 2
    assert [m.client_id for m in await storage.list_messages("c1")] == ["m1", "m2"]


# Durability -----------------------------------------------------------------------------
