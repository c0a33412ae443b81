"""Feed the SFU's C extensions malformed and extreme input; under sanitizers with `make fuzz`.

Why: mediaserver/_fanout.c and mediaserver/_srtp_gcm.c run inside the server process on
numbers and bytes that come, one way or another, from the network (publishers' sequence
numbers, timestamps and payloads, per-receiver offsets derived from them, SRTP packets).
An out-of-bounds access or undefined behaviour there is a crash or silent corruption, not an
exception, and the unit tests only walk the paths a call takes. `make fuzz` compiles both
files with AddressSanitizer and UndefinedBehaviorSanitizer into build/fuzz/ (the normal
build in mediaserver/ is left alone) and runs this driver with ``--ext-dir build/fuzz`` in
its own process with the ASan runtime preloaded: the first report aborts the process, so
the exit status is non-zero and make fails. Without ``--ext-dir`` it drives the normally
built extensions, without sanitizers, which is what tests/test_fuzz_native_target.py does
for a few seconds to keep this driver from rotting.

How: a seeded random driver, not coverage-guided fuzzing (atheris). The inputs are structured
(Python ints at 64-bit edges, attribute values, class shapes, packet layouts) and the C code
is short with few branches, so aiming at the edges directly with lists of boundary values
reaches them sooner than mutating bytes would; and atheris would only see Python coverage
here: coverage of the C code needs clang's -fsanitize=fuzzer instrumentation, while the
project builds with gcc. Every target draws its inputs from its own generator seeded from
``--seed`` and the targets share the budget equally by time (their cases cost from
microseconds to milliseconds), so case N of a target gets the same inputs whatever the
budget. Run alone it also starts from the same shared state (SRTP sessions, the global
generator Consumer.__init__ draws from), so ``--targets NAME --iterations N`` replays the
first N cases exactly; a finding names its target and case number, and under a sanitizer
faulthandler prints the Python stack of the case that aborted.

Oracles besides the sanitizers (a violation is a "finding": reported, exit status 1):
- a SystemError (C code returning NULL without an exception, or a result with one set);
- the native fan-out not doing what Consumer.forward does in Python for the same consumer
  state and packet (counters, and the RTP header on the wire: SRTP leaves it in clear);
- a failed ``configure()`` changing how the configured Consumer class is forwarded;
- AES-GCM protect not giving libsrtp's bytes for a valid packet (or accepting an invalid
  one), the Unprotector not returning a genuine packet's plaintext (or accepting a forgery);
- a Target closing a descriptor it was not given or keeping one it was told to drop, and
  references to the keepalive objects or the fanned-out data that are not given back.
Any other exception is the expected refusal of bad input and only counted ("refused").

Sends go only to a loopback socket pair on 127.0.0.1. Targets made with fuzzed arguments
never send (they hold fake SRTP pointers and are never given to a consumer), and an address
of theirs that would parse and is not loopback is replaced by 127.0.0.1 before connect().

Run: ``python -m benchmarks.fuzz_native [--seconds 60] [--iterations N] [--seed 1]
[--ext-dir build/fuzz] [--targets a,b] [--json]``; ``make fuzz`` (see README, "Fuzzing").
"""

from __future__ import annotations

import argparse
import array
import faulthandler
import importlib.util
import json
import math
import os
import random
import select
import socket
import sys
import sysconfig
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

LL_MIN, LL_MAX = -(1 << 63), (1 << 63) - 1
MAX_PLAIN = 1500 - 144  # what _fanout.c sends natively (pylibsrtp's limit), header included
KEY = bytes(range(30))  # AES-CM master key + salt for the libsrtp sessions
RECEIVER = "127.0.0.1"
BATCH = 20  # cases per target between two looks at the clock

# Values at the edges of 16, 32 and 64-bit arithmetic, where wrap-arounds and signed
# overflow live; cases add small deltas and flip signs.
EDGES = (0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0xBB8, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x10000,
         0x10001, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, 1 << 47, 1 << 48, 1 << 62,
         LL_MAX - 0xFFFF, LL_MAX - 3000, LL_MAX - 1, LL_MAX)
SSRCS = (0, 1, 0xCAFE, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)  # bounds libsrtp streams


def edge(rng: random.Random, *, clip: bool = True) -> int:
    """A 64-bit value near an edge; beyond the C long long range too when not clipped."""
    kind = rng.random()
    if kind < 0.7:
        value = rng.choice(EDGES) + rng.choice((0, 0, 0, 1, -1, 2, -2, rng.randrange(-5000, 5000)))
        value = -value if rng.random() < 0.35 else value
    elif kind < 0.9:
        value = rng.getrandbits(64) - (1 << 63)
    else:
        value = rng.randrange(-70000, 70000)
    if not clip and rng.random() < 0.08:
        value = rng.choice((LL_MAX + 1, LL_MIN - 1, 1 << 64, -(1 << 64), 1 << 100))
    return max(LL_MIN, min(LL_MAX, value)) if clip else value


def wild_float(rng: random.Random) -> float:
    return rng.choice((0.0, -0.0, 1e-300, 100.0, -1.0, 1e18, 1e308, math.inf, -math.inf,
                       math.nan, rng.uniform(-1e9, 1e9)))


def same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


# ---------------------------------------------------------------------------- loading


def load_from(ext_dir: Path) -> None:
    """Make `mediaserver._fanout` and `mediaserver._srtp_gcm` the builds in `ext_dir`.

    They are registered in sys.modules before anything imports the package's own copies, so
    mediaserver.native.load_extension (hence Consumer's base class and the configured fan-out)
    picks these: the fuzz then runs through the real Consumer, on the sanitized code.
    """
    import mediaserver

    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for name in ("_fanout", "_srtp_gcm"):
        full = f"mediaserver.{name}"
        path = ext_dir / f"{name}{suffix}"
        if not path.exists():
            raise SystemExit(f"fuzz_native: {path} is missing (build it with `make fuzz`)")
        if full in sys.modules or "mediaserver.consumer_state" in sys.modules:
            raise SystemExit(f"fuzz_native: {full} was imported before --ext-dir applied")
        spec = importlib.util.spec_from_file_location(full, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
        setattr(mediaserver, name, module)


def sanitizers_loaded() -> bool:
    """Whether an ASan runtime is mapped into this process (LD_PRELOAD worked)."""
    try:
        with open("/proc/self/maps") as maps:
            return "libasan" in maps.read()
    except OSError:
        return False


def libsrtp_pointers(session: Any, function: str) -> tuple[int, int]:
    """(libsrtp function, srtp_t) of a pylibsrtp Session, as aiortc_adapter hands them over."""
    from pylibsrtp._binding import ffi, lib

    return (int(ffi.cast("uintptr_t", ffi.addressof(lib, function))),
            int(ffi.cast("uintptr_t", session._srtp[0])))


def libsrtp_session(outbound: bool, key: bytes = KEY, profile: int | None = None,
                    gcm_sender: bool = False) -> Any:
    from pylibsrtp import Policy, Session

    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND if outbound
                    else Policy.SSRC_ANY_INBOUND,
                    srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80 if profile is None
                    else profile)
    if gcm_sender:  # aiortc's sending policy, which _srtp_gcm.c reproduces
        policy.allow_repeat_tx = True
        policy.window_size = 1024
    return Session(policy)


class Link:
    """A native Target sending to a loopback receiver, protected by libsrtp or _srtp_gcm."""

    def __init__(self, fanout_ext: ModuleType, gcm_ext: ModuleType | None) -> None:
        self.receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receiver.bind((RECEIVER, 0))
        self.receiver.setblocking(False)
        self.receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sender.bind((RECEIVER, 0))
        self.address = self.receiver.getsockname()
        self.session: Any
        if gcm_ext is None:
            self.session = libsrtp_session(outbound=True)
            self.pointers = libsrtp_pointers(self.session, "srtp_protect")
            self.tag = 10
        else:
            self.session = gcm_ext.Protector(bytes(range(16)), bytes(range(12)))
            self.pointers = self.session.pointers
            self.tag = 16
        self.target = fanout_ext.Target()
        self.target.set(os.dup(self.sender.fileno()), *self.address, *self.pointers,
                        self.session)
        self.twins: tuple[Any, list[bytes], Any, list[bytes]] | None = None  # fanout_extremes

    def counters(self) -> tuple[int, int, int]:
        t = self.target
        return t.sent, t.errors, t.dropped

    def recv(self) -> bytes | None:
        """The datagram just sent (loopback delivers inside the sender's send())."""
        for wait in (0.0, 1.0):
            if wait:
                select.select([self.receiver], [], [], wait)
            try:
                return self.receiver.recv(4096)
            except BlockingIOError:
                continue
        return None

    def drain(self) -> None:
        while True:
            try:
                self.receiver.recv(4096)
            except BlockingIOError:
                return

    def close(self) -> None:
        self.target.clear()
        self.receiver.close()
        self.sender.close()


# ---------------------------------------------------------------------------- bookkeeping


@dataclass
class Stats:
    cases: int = 0
    refused: int = 0  # Python exceptions: bad input turned away, as it should be
    native: int = 0   # packets the C code protected/sent/unprotected (it was reached)
    checked: int = 0  # oracle comparisons made
    seconds: float = 0.0


@dataclass
class Fuzz:
    seed: int
    findings: list[str] = field(default_factory=list)
    case: str = ""  # "target #n", for findings
    error: str = ""  # the last exception attempt() caught, for findings

    def finding(self, message: str) -> None:
        self.findings.append(f"{self.case}: {message}")
        if len(self.findings) <= 20:
            print(f"FINDING {self.case}: {message}", file=sys.stderr, flush=True)

    def attempt(self, stats: Stats, function: Callable[..., Any], *args: Any,
                **kwargs: Any) -> tuple[Any, type | None]:
        """function(*args, **kwargs) -> (result, None) or (None, exception type); a
        SystemError is a finding."""
        try:
            return function(*args, **kwargs), None
        except SystemError as exc:
            self.finding(f"SystemError: {exc}")
            return None, SystemError
        except Exception as exc:
            stats.refused += 1
            self.error = f"{type(exc).__name__}: {exc}"
            return None, type(exc)


class Lab:
    """The extensions under test, the real Consumer class built on them, and loopback links."""

    def __init__(self, ext_dir: Path | None) -> None:
        if ext_dir is not None:
            load_from(ext_dir)
        import mediaserver.consumer as consumer_module
        from mediaserver.native import load_extension

        self.F = load_extension("_fanout")
        self.G = load_extension("_srtp_gcm")
        if self.F is None or consumer_module.native_fanout is None:
            raise SystemExit("fuzz_native: mediaserver._fanout is not built or is disabled "
                             "(SHOPCALL_NATIVE_FANOUT=0): nothing to fuzz")
        if ext_dir is not None and (self.G is None or Path(self.F.__file__).resolve().parent
                                    != ext_dir.resolve()):
            raise SystemExit("fuzz_native: the --ext-dir builds are not the ones in use "
                             "(SHOPCALL_SRTP_GCM=0?)")
        self.consumer_module = consumer_module
        self.Consumer = consumer_module.Consumer
        self.fanout = consumer_module.native_fanout
        assert issubclass(self.Consumer, self.F.ConsumerState)
        from mediaserver.vp8 import TemporalLayerFilter

        self.TemporalLayerFilter = TemporalLayerFilter
        self.links = [Link(self.F, None)]
        if self.G is not None:
            self.links.append(Link(self.F, self.G))
        # Per-target state that outlives a case (sessions, classes: too dear to remake).
        self.unprotect_state: dict[str, Any] | None = None
        self.gcm_state: dict[str, Any] | None = None
        self.spy_act: Callable[[Any], None] = lambda spy: None
        Consumer, lab = self.Consumer, self

        class Spy(Consumer):  # type: ignore[misc,valid-type]
            """Not exactly Consumer: the C loop always calls its forward()."""

            __slots__ = ("action",)

            def forward(self, *args: Any) -> None:
                if self.action >= 0:
                    lab.spy_act(self)
                Consumer.forward(self, *args)

        class Big:
            """Slots at offsets far past a ConsumerState's end, to lend to configure()."""

            __slots__ = tuple(f"s{i:03d}" for i in range(64))

        self.spy_class: type = Spy
        self.big_class: type = Big

    def consumer(self, send: Callable[[bytes], Any], link: Link | None = None) -> Any:
        c = self.Consumer("fuzz", "video", 0xCAFE, 96, 90000, send, 0xBEEF, 97)
        c.native = link.target if link is not None else None
        return c

    def close(self) -> None:
        self.F.configure(self.Consumer)
        for link in self.links:
            link.close()


def sink(packet: bytes) -> None:
    """A Python-path consumer's send: the bytes go nowhere."""


def steady(c: Any, rng: random.Random, seq_ext: int) -> None:
    """Put a consumer in the state the native path forwards from (re-based, not paused)."""
    c.paused = False
    c.layers = None
    c.last_in_seq = max(0, seq_ext - rng.randrange(0, 4))
    c.base_in_seq = min(seq_ext, max(LL_MIN, seq_ext - rng.randrange(0, 100)))
    c.seq_offset = rng.randrange(-70000, 70000)
    c.ts_offset = rng.randrange(-(1 << 33), 1 << 33)
    c.ssrc = rng.choice(SSRCS)
    c.payload_type = rng.randrange(128)


def payload_len(rng: random.Random) -> int:
    return rng.choice((0, 1, 11, 12, 13, rng.randrange(0, 200), rng.randrange(0, 1400),
                       MAX_PLAIN - 13, MAX_PLAIN - 12, MAX_PLAIN - 11, MAX_PLAIN,
                       rng.randrange(1400, 2100)))


# ---------------------------------------------------------------------------- targets


def fanout_extremes(fz: Fuzz, lab: Lab, rng: random.Random, st: Stats) -> None:
    """One consumer in a drawn state (offsets, SSRC, payload type, counters at 64-bit edges)
    against a Python twin in the same state: the C path must end where Consumer.forward
    ends. seq_ext + seq_offset and friends overflow a long long here: no UB allowed."""
    link = rng.choice(lab.links)
    if link.twins is None:  # made once per link: a Consumer costs more than a case
        native_sent: list[bytes] = []
        twin_sent: list[bytes] = []
        link.twins = (lab.consumer(native_sent.append, link), native_sent,
                      lab.consumer(twin_sent.append), twin_sent)
    native, native_sent, twin, twin_sent = link.twins
    native_sent.clear()
    twin_sent.clear()
    # Mostly a state the C path takes (re-based, in range), so its arithmetic is what runs.
    eligible = rng.random() < 0.75
    if eligible:
        seq_ext = edge(rng) & LL_MAX
        last_in = seq_ext - rng.choice((0, 1, 2, 2999, 3000, rng.randrange(-5, 3100)))
        last_in, base = max(0, min(LL_MAX, last_in)), max(LL_MIN, seq_ext - rng.randrange(50))
    else:
        seq_ext = edge(rng, clip=rng.random() < 0.8)
        last_in, base = edge(rng), rng.choice((0, LL_MIN, LL_MAX, edge(rng)))
    state = {
        "last_in_seq": last_in, "base_in_seq": base,
        "seq_offset": edge(rng), "ts_offset": edge(rng),
        "ssrc": rng.choice(SSRCS) if eligible else rng.choice((*SSRCS, -1, 1 << 32, edge(rng))),
        "payload_type": rng.randrange(128) if eligible else rng.choice(
            (-1, 128, 255, 0x7FFFFFFF, -(1 << 31), rng.randrange(-(1 << 40), 1 << 40))),
        "last_out_seq": edge(rng), "last_out_ts": edge(rng), "last_out_at": wild_float(rng),
        "packets": edge(rng), "octets": edge(rng),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # payload_type truncated to a C int
        for name, value in state.items():
            setattr(native, name, value)
            setattr(twin, name, getattr(native, name))
    native.paused = twin.paused = False
    native.layers = twin.layers = None
    size = payload_len(rng) if eligible else rng.choice((payload_len(rng), 60000))
    offset = rng.choice((12, 12, 0, 20))
    data = bytes((0x80, 96)) + rng.randbytes(offset - 2 + size) if offset >= 2 \
        else rng.randbytes(size)
    timestamp = edge(rng, clip=rng.random() < 0.95)
    now = rng.choice((100.0 + rng.random(), wild_float(rng))) if rng.random() < 0.97 else 100
    args = (data, rng.randrange(2), seq_ext, timestamp, offset, rng.random() < 0.2, now)

    link.drain()
    before = link.counters()
    _, native_exc = fz.attempt(st, lab.fanout, *args, [native])
    after = link.counters()
    _, twin_exc = fz.attempt(st, twin.forward, *args)
    names = (*state, "paused")
    st.checked += 1
    if after == before:
        # Consumer.forward handled both: same outcome, same bytes, same state.
        diff = [n for n in names if not same(getattr(native, n), getattr(twin, n))]
        if native_exc is not twin_exc or native_sent != twin_sent or diff:
            fz.finding(f"Python path differs from its twin: {native_exc} vs {twin_exc}, "
                       f"{diff}, state {state}, args {args[1:]}")
        return
    st.native += 1
    if native_exc is not None:
        fz.finding(f"native path raised {native_exc.__name__}: state {state}, args {args[1:]}")
        return
    if twin_exc is OverflowError:
        return  # packets/octets at LL_MAX: Python cannot store the sum, C wraps it
    if twin_exc is not None or len(twin_sent) != 1:
        fz.finding(f"C forwarded what Python refuses ({twin_exc}): state {state}, "
                   f"args {args[1:]}")
        return
    diff = [n for n in names if not same(getattr(native, n), getattr(twin, n))]
    if diff:
        fz.finding(f"state after C != Python for {diff}: from {state}, args {args[1:]}: "
                   f"{[(getattr(native, n), getattr(twin, n)) for n in diff]}")
    if after[0] > before[0]:  # sent: the header goes in clear
        wire = link.recv()
        expected = twin_sent[0]
        if wire is None or wire[:12] != expected[:12] or len(wire) != len(expected) + link.tag:
            fz.finding(f"wire header {wire[:12].hex() if wire else None} != "
                       f"{expected[:12].hex()} (state {state}, args {args[1:]})")


def fanout_garbage(fz: Fuzz, lab: Lab, rng: random.Random, st: Stats) -> None:
    """fanout() with wrong argument counts and types, garbage, truncated and oversized data,
    offsets outside the packet, markers that raise, and lists of everything that is not a
    steady Consumer (paused, thinned, fresh, half-built, bare ConsumerState, not one at all).
    Neither the data nor any consumer may lose or gain a reference."""
    link = rng.choice(lab.links)
    seq_ext = rng.choice((rng.randrange(0, 1 << 20), edge(rng)))
    consumers: list[Any] = []
    for _ in range(rng.randrange(0, 6)):
        kind = rng.randrange(11)
        if kind < 5:
            c = lab.consumer(sink, link)
            steady(c, rng, max(0, seq_ext) if isinstance(seq_ext, int) else 0)
            if kind == 1:
                c.paused = True
            elif kind == 2:
                c.layers = lab.TemporalLayerFilter(rng.randrange(3))
                c.producer = SimpleNamespace(descriptor=None)
            elif kind == 3:
                c.last_in_seq = -1
        elif kind == 5:
            c = lab.Consumer.__new__(lab.Consumer)  # no __init__: slots unset, fields 0
            if rng.random() < 0.5:
                c.native, c.layers = link.target, None
        elif kind == 6:
            c = lab.F.ConsumerState()
        elif kind == 7:
            c = lab.consumer(sink, None)  # no native target
            steady(c, rng, 5)
        else:
            c = rng.choice((None, 0, "consumer", b"", object(), link.target, 1.5))
        consumers.append(c)
    size = rng.choice((payload_len(rng), 0, 1, 65536, 1 << 20 if rng.random() < 0.02 else 5))
    raw = rng.randbytes(size)

    class Falsy:
        def __bool__(self) -> bool:
            raise RuntimeError("no truth")

    # A few arguments spoiled per case, the others well-formed: the C code is reached with
    # each kind of damage rather than stopped at the first check by the sum of them.
    spoil = set(rng.sample(("data", "marker", "offset", "seq", "timestamp", "now", "list",
                            "count"), rng.choice((0, 1, 1, 1, 2, 3))))
    data: Any = raw if "data" not in spoil else rng.choice(
        (bytearray(raw), memoryview(raw), "text", None, 7, type("B", (bytes,), {})(raw)))
    marker = rng.randrange(2) if "marker" not in spoil else rng.choice(
        (2, -1, True, None, 1 << 70, Falsy()))
    offset = rng.choice((12, 0, size, rng.randrange(0, size + 1))) if "offset" not in spoil \
        else rng.choice((size + 1, -1, edge(rng), edge(rng, clip=False), 12.0, None))
    if "seq" in spoil:
        seq_ext = rng.choice((edge(rng, clip=False), "1", 1.5, None))
    timestamp = rng.choice((rng.getrandbits(32), edge(rng))) if "timestamp" not in spoil \
        else rng.choice((edge(rng, clip=False), "ts", None))
    now = rng.choice((100.0, 100.0, wild_float(rng))) if "now" not in spoil \
        else rng.choice((100, None, "now"))
    keyframe = rng.choice((False, True, None, 0, Falsy()))
    holder: Any = consumers if "list" not in spoil else rng.choice(
        (tuple(consumers), None, {}, iter(consumers)))
    args: list[Any] = [data, marker, seq_ext, timestamp, offset, keyframe, now, holder]
    if "count" in spoil:
        args = args[:rng.randrange(0, 8)] if rng.random() < 0.7 else [*args, None, None]
    # Fresh objects only: singletons (None, small ints, b"") change count with anything.
    watched = [o for o in (data, *consumers) if isinstance(o, lab.F.ConsumerState)
               or (isinstance(o, bytes | bytearray | memoryview) and len(raw) > 1)]
    if rng.random() < 0.05:
        link.drain()  # otherwise the receiver fills up: both send outcomes get exercised
    before = sum(link.counters())
    counts = [sys.getrefcount(o) for o in watched]
    fz.attempt(st, lab.fanout, *args)
    after = [sys.getrefcount(o) for o in watched]
    st.native += sum(link.counters()) - before
    st.checked += 1
    if after != counts:
        fz.finding(f"reference counts changed: {counts} -> {after} "
                   f"({[type(o).__name__ for o in watched]})")


def fanout_reentry(fz: Fuzz, lab: Lab, rng: random.Random, st: Stats) -> None:
    """Consumer subclasses whose forward() (called from the C loop) changes the list being
    fanned out, the state or target of consumers after it, raises, or fans out again."""
    link = rng.choice(lab.links)
    spare = lab.F.Target()  # a target that can be cleared under the loop
    spare.set(os.dup(link.sender.fileno()), *link.address, *link.pointers, link.session)
    seq_ext = rng.randrange(10, 1 << 20)
    consumers: list[Any] = []
    spy_class = lab.spy_class
    for _ in range(rng.randrange(1, 8)):
        if rng.random() < 0.4:
            c = spy_class("spy", "video", 1, 96, 90000, sink)
            c.action = rng.randrange(12)
        else:
            c = lab.consumer(sink, rng.choice((link, None)))
            if c.native is not None and rng.random() < 0.5:
                c.native = spare
        steady(c, rng, seq_ext)
        consumers.append(c)

    def act(spy: Any) -> None:
        action, spy.action = spy.action, -1  # once each: an append per call never ends
        others = [c for c in consumers if c is not spy]
        other = rng.choice(others) if others else spy
        if action == 0:
            consumers.clear()
        elif action == 1:
            consumers.extend(rng.sample(others, min(2, len(others))))
        elif action == 2 and consumers:
            consumers.pop(rng.randrange(len(consumers)))
        elif action == 3:
            spare.clear()
        elif action == 4:
            other.native = None
        elif action == 5:
            other.layers = lab.TemporalLayerFilter(1)
            other.producer = SimpleNamespace(descriptor=None)
        elif action == 6:
            other.paused = True
        elif action == 7:
            other.last_in_seq = -1
        elif action == 8:
            raise RuntimeError("forward failed")
        elif action == 9:
            lab.fanout(*packet, consumers)  # nested, same list
        elif action == 10:
            lab.F.configure(lab.Consumer)
        elif action == 11:
            consumers.insert(0, lab.F.ConsumerState())

    lab.spy_act = act
    data = bytes((0x80, 96)) + rng.randbytes(10 + payload_len(rng))
    packet = (data, 1, seq_ext, rng.getrandbits(32), 12, False, 100.0)
    before = sum(link.counters())
    fz.attempt(st, lab.fanout, *packet, consumers)
    st.native += sum(link.counters()) - before + spare.sent + spare.errors
    st.checked += 1
    spare.clear()


def configure(fz: Fuzz, lab: Lab, rng: random.Random, st: Stats) -> None:
    """configure() with malformed classes: missing or misplaced slots, properties, member
    descriptors of other classes or of other types, non-types. A failed configure must leave
    Consumer forwarded natively; a successful one must forward its own class correctly."""
    F = lab.F
    shape = rng.randrange(8)
    names = ["layers", "native", *(f"{p}{i:02d}" for p in "az" for i in range(32))]
    namespace: dict[str, Any] = {"forward": lambda self, *args: None}
    base: Any = F.ConsumerState
    if shape == 0:
        cls: Any = rng.choice((int, object, type, F.ConsumerState, F.Target, None, "Consumer",
                               lab.Consumer))
    else:
        slots = rng.sample(names, rng.randrange(0, 40))
        if shape in (1, 2):  # one of the two, with others sorting before and after it
            slots = [n for n in slots if n not in ("layers", "native")]
            slots.append(rng.choice(("layers", "native")))
        elif shape == 3:
            slots = [n for n in slots if n not in ("layers", "native")]
            namespace[rng.choice(("layers", "native"))] = property(lambda self: None)
            slots.append("native" if "layers" in namespace else "layers")
        elif shape == 4:  # a member descriptor borrowed from another class
            slots = [n for n in slots if n not in ("layers", "native")]
            lender = rng.choice((lab.big_class, lab.Consumer, F.ConsumerState))
            member = rng.choice([m for m in vars(lender).values()
                                 if type(m).__name__ == "member_descriptor"])
            namespace[rng.choice(("layers", "native"))] = member
            slots.append("native" if "layers" in namespace else "layers")
        elif shape == 5:  # derives from Consumer: may inherit or repeat
            base = lab.Consumer
            slots = [n for n in slots if n not in ("layers", "native")]
            if rng.random() < 0.5:
                namespace["layers"] = vars(lab.Consumer)["layers"]
                namespace["native"] = vars(lab.Consumer)["native"]
        else:
            for n in ("layers", "native"):
                if n not in slots:
                    slots.append(n)
        rng.shuffle(slots)
        namespace["__slots__"] = tuple(slots)
        try:
            cls = type("Shape", (base,), namespace)
        except (TypeError, ValueError):
            cls = None
    link = lab.links[0]
    steady_consumer = lab.consumer(sink, link)
    steady(steady_consumer, rng, 1000)
    _, exc = fz.attempt(st, F.configure, cls)
    try:
        packet = (bytes((0x80, 96)) + rng.randbytes(10 + rng.randrange(0, 300)), 0, 1000,
                  rng.getrandbits(32), 12, False, 100.0)
        instances = []
        if exc is None and isinstance(cls, type) and cls is not lab.Consumer:
            for _ in range(rng.randrange(1, 3)):
                instance = cls.__new__(cls)
                if rng.random() < 0.8:
                    try:  # a property or another class's descriptor refuses
                        steady(instance, rng, 1000)
                        instance.native = link.target
                    except (AttributeError, TypeError):
                        pass
                instances.append(instance)
        before = sum(link.counters())  # sent, or refused by libsrtp (a repeated index)
        fz.attempt(st, lab.fanout, *packet, [steady_consumer, *instances])
        natively = sum(link.counters()) - before
        st.native += natively
        st.checked += 1
        if exc is not None and natively != 1:
            fz.finding(f"a refused configure({getattr(cls, '__slots__', cls)!r}) changed "
                       f"how Consumer is forwarded ({exc.__name__})")
    finally:
        F.configure(lab.Consumer)


def consumer_attributes(fz: Fuzz, lab: Lab, rng: random.Random, st: Stats) -> None:
    """ConsumerState's C fields set from Python with every kind of value: what is accepted
    must read back as C stores it, what does not fit must be refused; then a fan-out."""
    F = lab.F
    c = lab.consumer(sink, rng.choice(lab.links)) if rng.random() < 0.6 else F.ConsumerState()

    class Index:
        def __index__(self) -> int:
            return 7

    class Int(int):
        pass

    ll = ("last_in_seq", "seq_offset", "ts_offset", "ssrc", "last_out_seq", "last_out_ts",
          "packets", "octets", "base_in_seq")
    for _ in range(rng.randrange(1, 12)):
        name = rng.choice((*ll, "payload_type", "last_out_at", "paused"))
        value = rng.choice((edge(rng), edge(rng, clip=False), True, False, wild_float(rng),
                            None, "1", Int(5), Index(), 1 << 31, -(1 << 31) - 1))
        op = rng.random()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _, exc = fz.attempt(st, delattr, c, name) if op < 0.03 \
                else fz.attempt(st, setattr, c, name, value)
        if op < 0.03 or exc is not None:
            continue
        got = getattr(c, name)
        st.checked += 1
        if name in ll:
            expected: Any = int(value) if not isinstance(value, Index) else 7
        elif name == "payload_type":
            v = int(value) if not isinstance(value, Index) else 7
            expected = (v + (1 << 31)) % (1 << 32) - (1 << 31)  # truncated to a C int
        elif name == "last_out_at":
            expected = float(value)
        else:
            expected = value
        if not same(got, expected) or type(got) is not type(expected):
            fz.finding(f"{name} = {value!r} reads back as {got!r}, expected {expected!r}")
    if isinstance(c, lab.Consumer) and rng.random() < 0.7:
        c.layers = None
        seq = c.last_in_seq + rng.randrange(-3, 3)
        before = c.native.sent + c.native.errors
        fz.attempt(st, lab.fanout, bytes(40), 1, seq, 5, 12, True, 100.0, [c])
        st.native += c.native.sent + c.native.errors - before


def target(fz: Fuzz, lab: Lab, rng: random.Random, st: Stats) -> None:
    """Target() / Target.__new__ / set / clear with bad arguments: descriptors are owned
    exactly when set() succeeds, keepalives are released, and nothing is ever sent through a
    target made here unless it points at the loopback receiver with a real SRTP session."""
    F = lab.F
    link = rng.choice(lab.links)
    t = F.Target.__new__(F.Target) if rng.random() < 0.5 else F.Target()
    if t.fd != -1 or t.valid or t.sent or t.connected:
        fz.finding(f"new Target not empty: fd {t.fd}, valid {t.valid}")
    if rng.random() < 0.1:
        fz.attempt(st, F.Target.__init__, t, *([1] * rng.randrange(1, 3)))
        fz.attempt(st, F.Target, x=1)
    owned: list[int] = []
    held: Any = None  # the keepalive the target holds
    for _ in range(rng.randrange(1, 5)):
        # the descriptor: a fresh dup of a socket or pipe (ours to give), or not one at all
        scratch: list[Any] = []
        fresh = rng.random() < 0.7
        if fresh:
            if rng.random() < 0.8:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((RECEIVER, 0))
                scratch.append(s)
                fd: Any = os.dup(s.fileno())
            else:
                r, w = os.pipe()
                os.close(r)
                fd = w
        else:
            fd = rng.choice((-1, -(1 << 31), 1 << 31, LL_MAX, None, "3", 3.0, 1 << 24))
            if fd == 1 << 24:
                try:
                    os.fstat(fd)
                    fd = -1  # open after all: not ours to give away
                except OSError:
                    pass
        real = rng.random() < 0.3
        host: Any = RECEIVER if real else rng.choice((
            RECEIVER, "::1", "", "::", "127.0.0.1.1", "256.0.0.1", "1:2:3:4:5:6:7:8:9",
            "127.0.0.1\x00x", "x" * rng.randrange(0, 300), rng.randbytes(8).decode("latin-1"),
            None, b"127.0.0.1", 127, "[::1]", "fe80::1%lo"))
        if isinstance(host, str) and "\x00" not in host:
            try:  # parses like inet_pton would: loopback only
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                packed = socket.inet_pton(family, host)
                if packed not in (socket.inet_pton(socket.AF_INET, RECEIVER),
                                  socket.inet_pton(socket.AF_INET6, "::1")):
                    host = RECEIVER
            except OSError:
                pass
        port: Any = link.address[1] if real else rng.choice((
            0, 1, 65535, 65536, -1, 1 << 31, edge(rng, clip=False), "80", None))
        if real:
            protect, session = link.pointers
            keepalive: Any = link.session
        else:
            protect, session = rng.choice(((0, 0), (1, 0), (0, 1), (1, 1), (-1, 1 << 64),
                                           (1 << 64, 5), (1 << 70, 1), (None, 1), (1.0, 2)))
            keepalive = object()
        base = sys.getrefcount(keepalive)
        args: list[Any] = [fd, host, port, protect, session, keepalive]
        if rng.random() < 0.05:
            args = args[:rng.randrange(6)]
        previous = t.fd
        _, exc = fz.attempt(st, t.set, *args)
        del args
        st.checked += 1
        if exc is None:
            if t.fd != fd or not t.valid:
                fz.finding(f"set({fd}) succeeded but the target holds fd {t.fd}")
            if previous >= 0 and previous != fd:
                owned.remove(previous)
                if fd_open(previous):
                    fz.finding(f"set() replaced fd {previous} without closing it")
            if sys.getrefcount(keepalive) != base + (keepalive is not held):
                fz.finding("set() did not keep exactly one reference to keepalive")
            held = keepalive
            owned.append(fd)
            if real and host == RECEIVER and port == link.address[1] and fresh:
                c = lab.consumer(sink, None)
                c.native = t
                steady(c, rng, 50)
                before = t.sent
                link.drain()
                fz.attempt(st, lab.fanout, bytes(12) + b"payload", 0, 50, 9, 12, False,
                           100.0, [c])
                if t.sent == before + 1:
                    st.native += 1
                    if link.recv() is None:
                        fz.finding("a sent packet did not arrive")
                c.native = None  # the target's life is this function's
                del c
        else:
            if t.fd != previous:
                fz.finding(f"a failed set() changed the target's fd {previous} -> {t.fd}")
            if sys.getrefcount(keepalive) != base:
                fz.finding("a failed set() kept a reference to keepalive")
            if fresh:
                if not fd_open(fd):
                    fz.finding(f"a failed set() closed fd {fd} it was not given")
                os.close(fd)
        for s in scratch:
            s.close()
    kept = t.fd
    if rng.random() < 0.5:
        t.clear()
        t.clear()
        held = None
        if t.valid or t.fd != -1 or t.connected:
            fz.finding("clear() left the target valid")
    del t
    for fd in owned:  # clear() or dealloc closed what the target owned
        if fd < (1 << 24) and fd_open(fd):
            fz.finding(f"fd {fd} (target had {kept}) still open after clear/dealloc")


def fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def unprotect(fz: Fuzz, lab: Lab, rng: random.Random, st: Stats) -> None:
    """Unprotector on genuine, replayed, tampered, truncated and random packets, and made
    with bad arguments or without __init__: plaintext for genuine packets only."""
    F = lab.F
    state = lab.unprotect_state
    if state is None or state["count"] > 3000:  # fresh sessions now and then
        tx, rx = libsrtp_session(True), libsrtp_session(False)
        fn, ctx = libsrtp_pointers(rx, "srtp_unprotect")
        state = lab.unprotect_state = {
            "tx": tx, "rx": rx, "u": F.Unprotector(fn, ctx, rx), "seq": {}, "sent": [],
            "known": set(), "count": 0, "pointers": (fn, ctx)}
    u = state["u"]
    for _ in range(rng.randrange(1, 6)):
        state["count"] += 1
        kind = rng.randrange(10)
        ssrc = rng.choice(SSRCS)
        if kind <= 4:  # genuine: a new packet of its stream, then maybe mangled
            seq = state["seq"][ssrc] = (state["seq"].get(ssrc, rng.randrange(1 << 16))
                                        + rng.choice((1, 1, 2, 100))) & 0xFFFF
            plain = bytes((0x80, rng.randrange(128))) + seq.to_bytes(2, "big") \
                + rng.getrandbits(32).to_bytes(4, "big") + ssrc.to_bytes(4, "big") \
                + rng.randbytes(rng.choice((0, 1, 100, rng.randrange(0, MAX_PLAIN - 12))))
            wire = state["tx"].protect(plain)
            # A stream's first packet goes through intact: a receiver that first hears a
            # stream after its sequence numbers wrapped assumes rollover counter 0
            # (RFC 3711 3.3.1) and could never authenticate it.
            packet = mangle(rng, wire) if kind >= 3 and ssrc in state["known"] else wire
            failed = u.failed
            out, exc = fz.attempt(st, u.unprotect, packet)
            st.checked += 1
            if packet == wire:
                if out != plain:
                    fz.finding(f"genuine packet not unprotected ({fz.error}), {len(wire)} bytes, "
                               f"ssrc {ssrc:#x} seq {seq}")
                else:
                    st.native += 1
                    state["sent"] = [*state["sent"][-50:], wire]  # delivered: replays now
                    state["known"].add(ssrc)
            elif exc is not ValueError or u.failed != failed + 1:
                fz.finding(f"tampered packet accepted or not counted ({exc}), "
                           f"{len(packet)} bytes")
                # the stream's replay window may now be ahead: start over
                state["count"] = 1 << 30
        elif kind == 5 and state["sent"]:  # replay
            packet = rng.choice(state["sent"])
            _, exc = fz.attempt(st, u.unprotect, packet)
            st.checked += 1
            if exc is not ValueError:
                fz.finding("a replayed packet was accepted")
        elif kind == 6:  # garbage of any length, and not bytes at all
            n = rng.choice((0, 1, 11, 12, 13, 22, 1499, 1500, 1501, 5000, rng.randrange(1600)))
            raw = rng.randbytes(n)
            value: Any = rng.choice((raw, raw, bytearray(raw), memoryview(raw), "x", None,
                                     type("B", (bytes,), {})(raw)))
            _, exc = fz.attempt(st, u.unprotect, value)
            st.checked += 1
            if exc is None:
                fz.finding(f"garbage ({type(value).__name__}, {n} bytes) was unprotected")
        elif kind == 7:  # made without __init__: no session
            bare = F.Unprotector.__new__(F.Unprotector)
            _, exc = fz.attempt(st, bare.unprotect, b"\x80" * 40)
            if exc is not ValueError:
                fz.finding(f"Unprotector without __init__ gave {exc}")
        elif kind == 8:  # bad arguments, also to re-initialise the live one (must not stick)
            args = rng.choice(((), (0, 0, None), (1,), ("1", 2, 3), (None, None, None),
                               (1 << 64, 1 << 64, None), (0, 5, None), (5, 0, None),
                               (1.5, 2, None)))
            # (none of these can succeed: a fake pointer in `u` would be called)
            fz.attempt(st, F.Unprotector, *args)
            fz.attempt(st, u.__init__, *args)
        else:  # re-initialise with the same session: keepalive swapped, still works
            keep = state["rx"]
            base = sys.getrefcount(keep)
            u.__init__(*state["pointers"], keep)
            st.checked += 1
            if sys.getrefcount(keep) != base:
                fz.finding("re-initialising an Unprotector leaked or dropped a reference")


def mangle(rng: random.Random, packet: bytes) -> bytes:
    data = bytearray(packet)
    kind = rng.randrange(5)
    if kind == 0:
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del data[rng.randrange(len(data)):]
    elif kind == 2:
        data += rng.randbytes(rng.randrange(1, 40))
    elif kind == 3:
        data[0] = rng.randrange(256)
        data[1] ^= 0x80
    else:
        data[-rng.randrange(1, 11)] ^= 0xFF  # the tag
    return bytes(data)


def gcm_valid(p: bytes) -> bool:
    """What _srtp_gcm.c may protect: version 2, and CSRCs plus extension inside the packet."""
    if len(p) < 12 or len(p) > 0xFFFF - 16 or p[0] >> 6 != 2:
        return False
    header = 12 + 4 * (p[0] & 0x0F)
    if p[0] & 0x10:
        if len(p) < header + 4:
            return False
        header += 4 + 4 * int.from_bytes(p[header + 2:header + 4], "big")
    return len(p) >= header


def srtp_gcm(fz: Fuzz, lab: Lab, rng: random.Random, st: Stats) -> None:
    """_srtp_gcm.Protector.protect on every RTP header shape (version, CSRC count, extension
    lengths that lie), lengths from 0 to past 64 KiB, sequence numbers that jump across the
    rollover, and many SSRCs; valid packets give libsrtp's bytes, invalid ones are refused."""
    from pylibsrtp import Policy

    G = lab.G
    if G is None:
        return
    state = lab.gcm_state
    if state is None or state["count"] > 4000:  # fresh keys now and then: streams bounded
        key_len = rng.choice((16, 32))
        key, salt = rng.randbytes(key_len), rng.randbytes(12)
        profile = (Policy.SRTP_PROFILE_AEAD_AES_128_GCM if key_len == 16
                   else Policy.SRTP_PROFILE_AEAD_AES_256_GCM)
        state = lab.gcm_state = {
            "ours": G.Protector(key, salt),
            "reference": libsrtp_session(True, key + salt, profile, gcm_sender=True),
            "big": G.Protector(master_key=key, master_salt=salt), "seq": {}, "count": 0}
    ours, reference = state["ours"], state["reference"]
    kind = rng.randrange(12)
    if kind == 0:  # bad construction and use before __init__
        bare = G.Protector.__new__(G.Protector)
        _, exc1 = fz.attempt(st, bare.protect, bytes(40))
        _, exc2 = fz.attempt(st, getattr, bare, "pointers")
        if exc1 is not RuntimeError or exc2 is not RuntimeError:
            fz.finding(f"Protector without __init__: {exc1}, {exc2}")
        args = rng.choice(((bytes(24), bytes(12)), (bytes(16), bytes(14)), (bytes(16),),
                           ("k" * 16, bytes(12)), (bytes(0), bytes(0)), (None, None),
                           (bytes(32), bytearray(12))))
        fz.attempt(st, G.Protector, *args)
        fz.attempt(st, ours.__init__, bytes(16), bytes(12))  # twice: refused
        return
    burst = rng.random() < 0.05  # many SSRCs at once
    for _ in range(rng.randrange(200, 600) if burst else rng.randrange(1, 8)):
        state["count"] += 1
        ssrc = rng.getrandbits(32) if burst or rng.random() < 0.2 else rng.choice(SSRCS)
        last = state["seq"].get(ssrc, rng.randrange(1 << 16))
        seq = (last + rng.choice((1, 1, 1, 2, -1, 0, 1023, -1023, -1024, -1025, 0x7FFF,
                                  0x8000, 0x8001, -0x8000, rng.randrange(1 << 16)))) & 0xFFFF
        state["seq"][ssrc] = seq
        first = 0x80
        if rng.random() < 0.3:
            first = rng.choice((rng.randrange(256), 0x80 | rng.randrange(16),
                                0x90 | rng.randrange(16), 0xA0, 0xB0))
        csrcs = (first & 0x0F) if rng.random() < 0.8 else rng.randrange(16)
        head = bytes((first, rng.randrange(256))) + seq.to_bytes(2, "big") \
            + rng.getrandbits(32).to_bytes(4, "big") + ssrc.to_bytes(4, "big") \
            + rng.randbytes(4 * csrcs)
        if first & 0x10:
            words = rng.choice((0, 1, 2, rng.randrange(8), 0xFFFF, rng.randrange(1 << 16)))
            head += b"\xbe\xde" + words.to_bytes(2, "big") \
                + rng.randbytes(4 * min(words, rng.choice((words, words, rng.randrange(4)))))
        room = max(1, 0xFFFF - 16 - len(head) + 5)  # up to just past the 64 KiB limit
        size = rng.choice((0, 1, 16, rng.randrange(0, 1300),
                           rng.randrange(0, room) if rng.random() < 0.05 else 3))
        packet = head + rng.randbytes(size)
        if rng.random() < 0.08:
            packet = packet[:rng.randrange(len(packet) + 1)]
        valid = gcm_valid(packet)
        st.checked += 1
        if len(packet) > MAX_PLAIN or not valid:
            big = state["big"]
            value: Any = rng.choice((packet, bytearray(packet), memoryview(packet)))
            out, exc = fz.attempt(st, big.protect, value)
            if valid and exc is None:
                st.native += 1
                if len(out) != len(packet) + 16 or out[:12] != packet[:12]:
                    fz.finding(f"protect output shape wrong for {len(packet)} bytes")
            elif valid and exc is not ValueError:
                fz.finding(f"valid {len(packet)}-byte packet refused with {exc}")
            elif not valid and exc is None:
                fz.finding(f"invalid packet protected: {packet[:16].hex()}.. "
                           f"({len(packet)} bytes)")
            continue
        # Both see the same valid packets, so their rollover and replay states stay equal.
        out, exc = fz.attempt(st, ours.protect, packet)
        ref, ref_exc = fz.attempt(st, reference.protect, packet)
        why = fz.error if exc or ref_exc else ""
        if exc is None and ref_exc is None:
            st.native += 1
            if out != ref:
                fz.finding(f"AES-GCM bytes differ from libsrtp: seq {seq} ssrc {ssrc:#x}, "
                           f"{len(packet)} bytes")
        elif (exc is None) != (ref_exc is None):
            fz.finding(f"protect outcome differs from libsrtp ({why}): seq {seq} "
                       f"ssrc {ssrc:#x} after {last}, {len(packet)} bytes {packet[:16].hex()}")
    if rng.random() < 0.05:  # other buffer kinds (not to `ours`: an array can be valid RTP)
        weird: Any = rng.choice((memoryview(bytes(64))[::2], "text", None, array.array("I",
                                 [0x80] * rng.randrange(20))))
        fz.attempt(st, state["big"].protect, weird)


TARGETS: dict[str, Callable[[Fuzz, Lab, random.Random, Stats], None]] = {
    "fanout_extremes": fanout_extremes,
    "fanout_garbage": fanout_garbage,
    "fanout_reentry": fanout_reentry,
    "configure": configure,
    "consumer_attributes": consumer_attributes,
    "target": target,
    "unprotect": unprotect,
    "srtp_gcm": srtp_gcm,
}


# ---------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> int:
    faulthandler.enable()  # a sanitizer abort (SIGABRT) also prints the Python stack
    random.seed(args.seed)  # Consumer.__init__ draws from the global generator
    names = list(TARGETS) if not args.targets else args.targets.split(",")
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise SystemExit(f"fuzz_native: unknown targets {unknown}; known: {list(TARGETS)}")
    lab = Lab(Path(args.ext_dir) if args.ext_dir else None)
    if lab.G is None and "srtp_gcm" in names:
        names.remove("srtp_gcm")
        print("fuzz_native: mediaserver._srtp_gcm not built: srtp_gcm skipped", file=sys.stderr)
    sanitized = sanitizers_loaded()
    print(f"fuzz_native: seed {args.seed}, budget {args.seconds:g} s"
          + (f" / {args.iterations} cases per target" if args.iterations else "")
          + f", extensions {Path(lab.F.__file__).parent}"
          + (" (ASan+UBSan)" if sanitized else " (no sanitizers)"),
          file=sys.stderr if args.json else sys.stdout, flush=True)  # --json: stdout is JSON
    if args.require_sanitizers and not sanitized:
        print("fuzz_native: no ASan runtime in this process (LD_PRELOAD?)", file=sys.stderr)
        return 2
    fz = Fuzz(args.seed)
    stats = {n: Stats() for n in names}
    rngs = {n: random.Random(f"{args.seed}/{n}") for n in names}
    active = list(names)
    start = time.monotonic()
    while active and time.monotonic() - start < args.seconds:
        # Equal time for each target: their cases cost from microseconds to milliseconds.
        name = min(active, key=lambda n: stats[n].seconds)
        st, rng, fn = stats[name], rngs[name], TARGETS[name]
        t0 = time.perf_counter()
        for _ in range(BATCH):
            if args.iterations and st.cases >= args.iterations:
                active.remove(name)
                break
            fz.case = f"{name} #{st.cases} (seed {args.seed})"
            if args.verbose:
                print(fz.case, file=sys.stderr, flush=True)
            fn(fz, lab, rng, st)
            st.cases += 1
        st.seconds += time.perf_counter() - t0
    elapsed = time.monotonic() - start
    lab.close()
    total = sum(s.cases for s in stats.values())
    if args.json:
        print(json.dumps({"seed": args.seed, "seconds": round(elapsed, 2),
                          "sanitizers": sanitized, "findings": fz.findings,
                          "targets": {n: vars(s) | {"seconds": round(s.seconds, 2)}
                                      for n, s in stats.items()}}))
    else:
        print(f"{'target':<20} {'cases':>9} {'refused':>9} {'native':>9} {'checked':>9} "
              f"{'seconds':>8}")
        for name, s in stats.items():
            print(f"{name:<20} {s.cases:>9} {s.refused:>9} {s.native:>9} {s.checked:>9} "
                  f"{s.seconds:>8.1f}")
        print(f"fuzz_native: {total} cases in {elapsed:.1f} s, {len(fz.findings)} findings"
              + (", no sanitizer report" if sanitized else ""))
    for line in fz.findings[20:]:
        print(f"FINDING {line}", file=sys.stderr)
    return 1 if fz.findings else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="wall-clock budget for all targets together (default 60)")
    parser.add_argument("--iterations", type=int, default=0,
                        help="stop each target after this many cases (default: time only)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ext-dir", help="load _fanout/_srtp_gcm from here (make fuzz: "
                        "build/fuzz, the sanitized builds) instead of the installed ones")
    parser.add_argument("--targets", help=f"comma-separated subset of {', '.join(TARGETS)}")
    parser.add_argument("--require-sanitizers", action="store_true",
                        help="fail unless the ASan runtime is loaded (make fuzz sets it)")
    parser.add_argument("--json", action="store_true", help="summary as one JSON object")
    parser.add_argument("--verbose", action="store_true", help="name every case on stderr")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
