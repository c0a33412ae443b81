"""The server under test: one the tool starts (``shopcall serve`` with a temporary
configuration and SQLite database, pinned to one CPU) or a running deployment by URL; the
bench stores and staff are set up through the operator HTTP API in both cases; and a
monitor that samples the server's own /metrics once a second.

Server CPU and RSS come from the Prometheus process metrics (``process_cpu_seconds_total``,
``process_resident_memory_bytes``) when the server exports them. When it does not (the
signalling server registers its own registry without prometheus_client's process
collector), a server this tool started is read from /proc/<pid> instead, and a remote one
is reported without CPU; the report says which source was used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from signaling.auth import TokenIssuer
from signaling.model import Role

from .plan import Options, StaffSpec

ROOT = Path(__file__).resolve().parent.parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

CONFIG = """
[server]
host = "127.0.0.1"

[auth]
secret = "{secret}"
shopper_tokens_per_minute = 1000000

[limits]
messages_per_second = 500
message_burst = 1000

[routing]
offer_timeout_s = 30
missed_after_s = 600
heartbeat_interval_s = 5
heartbeat_timeout_s = 60
staff_reconnect_grace_s = 30

[media]
backend = "sfu"
announced_addresses = ["127.0.0.1"]
"""

# Appended when some consultations switch try-on on: the server decodes, draws and
# re-encodes those shoppers' video, the one feature that costs server CPU per frame.
TRYON_CONFIG = """
[tryon]
enabled = true
"""


@dataclass
class Target:
    base_url: str
    operator_token: str
    secret: str | None
    pid: int | None = None  # a local server's process, for /proc fallbacks
    started: bool = False
    log: Path | None = None

    @property
    def ws_url(self) -> str:
        return re.sub(r"^http", "ws", self.base_url) + "/ws"

    def staff_token(self, staff_id: str) -> str:
        if self.secret is None:
            raise RuntimeError("staff tokens need the deployment's auth secret (--auth-secret)")
        return TokenIssuer(self.secret).mint(Role.STAFF, staff_id, 12 * 3600)


class LocalServer:
    """``shopcall serve`` in a child process on a free loopback port."""

    def __init__(self, cpu: int | None, tryon: bool = False) -> None:
        self.cpu = cpu
        self.tryon = tryon
        self.dir = Path(tempfile.mkdtemp(prefix="shopcall-bench-"))
        self.secret = secrets.token_urlsafe(32)
        self.proc: subprocess.Popen[str] | None = None
        self.log = self.dir / "server.log"

    def start(self, timeout: float = 30.0) -> Target:
        config = self.dir / "shopcall.toml"
        config.write_text(CONFIG.format(secret=self.secret)
                          + (TRYON_CONFIG if self.tryon else ""))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("SHOPCALL_AUTH__SECRET", None)
        stderr = self.log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "signaling", "serve", "--port", "0",
             "--db", str(self.dir / "shopcall.db"), "--config", str(config)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        stderr.close()
        if self.cpu is not None:
            pin(self.proc.pid, {self.cpu})
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                operator = TokenIssuer(self.secret).mint(Role.OPERATOR, "bench", 24 * 3600)
                return Target(match.group(1), operator, self.secret, self.proc.pid, True,
                              self.log)
        self.stop()
        raise RuntimeError(f"the server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


def pin(pid: int, cpus: set[int]) -> bool:
    """Pin a process to these CPUs; False when the machine or its cgroup refuses."""
    try:
        os.sched_setaffinity(pid, cpus)
    except OSError:
        return False
    return True


def cpu_split(server_cpu: int | None) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, generator CPUs): the server on one CPU, the generators on the rest;
    (None, None) on a one-CPU machine or when pinning is switched off."""
    allowed = sorted(os.sched_getaffinity(0))
    if server_cpu is None or len(allowed) < 2:
        return None, None
    server = allowed[server_cpu % len(allowed)]
    return {server}, {c for c in allowed if c != server}


async def setup_deployment(http: aiohttp.ClientSession, target: Target, options: Options,
                           stores: list[str], roster: list[StaffSpec]) -> None:
    """Create the bench stores (no overflow: a conversation stays in its store, so its
    shopper and staff are simulated by the same worker) and staff, as an operator would."""
    headers = {"Authorization": f"Bearer {target.operator_token}"}

    async def put(path: str, body: dict[str, Any]) -> None:
        async with http.put(target.base_url + path, json=body, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"PUT {path}: {response.status} {await response.text()}")

    for store in stores:
        await put(f"/api/stores/{store}", {"name": f"Bench {store}", "overflow": False})
    semaphore = asyncio.Semaphore(8)

    async def put_staff(spec: StaffSpec) -> None:
        async with semaphore:
            await put(f"/api/staff/{spec.id}", {
                "name": spec.id, "store": spec.store, "skills": list(spec.skills),
                "languages": [options.language], "max_conversations": 1,
                "channels": ["chat", "audio", "video"]})

    await asyncio.gather(*(put_staff(s) for s in roster))


# Monitoring -----------------------------------------------------------------------------
def parse_metrics(text: str) -> dict[str, float]:
    """Sum of each sample name over its labels (what the report needs)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name] = out.get(s.name, 0.0) + float(s.value)
    return out


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def udp_counters() -> dict[str, int]:
    """The kernel's UDP counters (this network namespace), from /proc/net/snmp."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
                 if line.startswith("Udp:")]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:], strict=False)}


def core_times() -> list[tuple[float, float]]:
    """(busy, total) jiffies of each CPU of this machine, from /proc/stat."""
    out = []
    with open("/proc/stat") as f:
        for line in f:
            if re.match(r"cpu\d+ ", line):
                values = [int(v) for v in line.split()[1:]]
                idle = values[3] + (values[4] if len(values) > 4 else 0)
                out.append((float(sum(values) - idle), float(sum(values))))
    return out


@dataclass
class Sample:
    t: float  # wall time (time.time()), to line up with the workers' state changes
    cpu_s: float | None
    rss_bytes: float | None
    forwarded_packets: float
    media_sessions: float
    participants: float
    cores_busy: list[float] = field(default_factory=list)  # per CPU, 0..1, this machine
    generator_cpu_s: float | None = None  # the generator processes (workers and parent)


class Monitor:
    """Samples the server once a second; ``cpu_source`` says where CPU figures come from."""

    def __init__(self, http: aiohttp.ClientSession, target: Target,
                 interval_s: float = 1.0) -> None:
        self.http = http
        self.target = target
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self.cpu_source = "none"
        self.errors = 0
        self.t0 = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._cores = core_times()
        self.generator_pids: list[int] = []

    def generator_cpu(self) -> float | None:
        if not self.generator_pids:
            return None
        total = 0.0
        for pid in [os.getpid(), *self.generator_pids]:
            with contextlib.suppress(OSError, ValueError):
                total += proc_cpu_seconds(pid)
        return total

    async def scrape(self) -> Sample | None:
        try:
            async with self.http.get(
                    self.target.base_url + "/metrics",
                    headers={"Authorization": f"Bearer {self.target.operator_token}"},
            ) as response:
                text = await response.text()
        except (aiohttp.ClientError, OSError, TimeoutError):
            self.errors += 1
            return None
        m = parse_metrics(text)
        cpu = m.get("process_cpu_seconds_total")
        rss = m.get("process_resident_memory_bytes")
        source = "metrics" if cpu is not None else "none"
        if self.target.pid is not None:
            with contextlib.suppress(OSError):
                if cpu is None:
                    cpu, source = proc_cpu_seconds(self.target.pid), "proc"
                if rss is None:
                    rss = float(proc_rss_bytes(self.target.pid))
        self.cpu_source = source
        cores = core_times()
        busy = [max(0.0, min(1.0, (b1 - b0) / (t1 - t0))) if t1 > t0 else 0.0
                for (b0, t0), (b1, t1) in zip(self._cores, cores, strict=False)]
        self._cores = cores
        sample = Sample(time.time(), cpu, rss,
                        m.get("shopcall_sfu_forwarded_packets_total", 0.0),
                        m.get("shopcall_sfu_media_sessions", 0.0),
                        m.get("shopcall_sfu_participants", 0.0), busy, self.generator_cpu())
        return sample

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            sample = await self.scrape()
            if sample is not None:
                self.samples.append(sample)
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        sample = await self.scrape()
        if sample is not None:
            self.samples.append(sample)
