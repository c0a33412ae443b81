"""A generator process: simulates the staff of its stores and runs their consultations.

Started with multiprocessing (spawn) by runner.py. It reports each consultation's state
changes on a queue (the parent's progress bar and "sessions over time" plot), waits for the
common start time, and returns every figure it measured plus its own CPU time, so a reader
can tell whether the generator rather than the server was the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import time
from typing import Any

import aiohttp

from .plan import Options, SessionPlan, StaffSpec

# Messages to the parent: ("ready", worker), ("state", worker, index, state, wall time),
# ("result", worker, payload), ("error", worker, text).


def worker_main(worker: int, options: Options, plans: list[SessionPlan],
                roster: list[StaffSpec], base_url: str, ws_url: str, secret: str | None,
                cpus: set[int] | None, queue: Any, go: Any, start_at: Any) -> None:
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)
    logging.basicConfig(level=logging.ERROR)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    try:
        payload = runner(_run(worker, options, plans, roster, base_url, ws_url, secret,
                              queue, go, start_at))
        queue.put(("result", worker, payload))
    except Exception as e:
        queue.put(("error", worker, f"{type(e).__name__}: {e}"))


async def _run(worker: int, options: Options, plans: list[SessionPlan],
               roster: list[StaffSpec], base_url: str, ws_url: str, secret: str | None,
               queue: Any, go: Any, start_at: Any) -> dict[str, Any]:
    from mediaserver.aiortc_adapter import use_host_addresses

    from .media_source import load_loop
    from .raw_peer import MediaClock, load_packet_loop
    from .scenario import Consultation, Shared, StaffAgent
    from .server import Target

    loop = asyncio.get_running_loop()

    def on_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # aiortc closes failed connections from its own tasks; racing our close they may hit
        # an already-resolved future. Harmless, and not worth a traceback per session.
        if not isinstance(context.get("exception"), asyncio.InvalidStateError | ConnectionError):
            loop.default_exception_handler(context)

    loop.set_exception_handler(on_error)
    if options.client_address:
        use_host_addresses([options.client_address])
    media = load_loop(options.cache_dir) if options.cache_dir else load_loop()
    target = Target(base_url, "", secret)
    cpu0 = _cpu_seconds()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:
        def progress(index: int, state: str) -> None:
            queue.put(("state", worker, index, state, time.time()))

        shared = Shared(options, http, base_url, ws_url, media, target.staff_token, progress)
        if options.media_path == "raw":
            shared.packets = (load_packet_loop(options.cache_dir) if options.cache_dir
                              else load_packet_loop())
            shared.clock = MediaClock()
        agents = [StaffAgent(spec, shared) for spec in roster] if options.staff else []
        staff_failures: dict[str, int] = {}
        semaphore = asyncio.Semaphore(16)

        async def start_agent(agent: StaffAgent) -> None:
            async with semaphore:
                try:
                    await agent.start()
                    shared.agents[agent.spec.id] = agent
                except Exception as e:
                    cause = getattr(e, "cause", type(e).__name__)
                    staff_failures[cause] = staff_failures.get(cause, 0) + 1

        await asyncio.gather(*(start_agent(a) for a in agents))
        queue.put(("ready", worker))
        if not await loop.run_in_executor(None, go.wait, 600.0):
            raise RuntimeError("no start signal from the parent")
        start_mono = time.monotonic() + (start_at.value - time.time())
        cpu_start = _cpu_seconds()

        async def one(plan: SessionPlan) -> dict[str, Any]:
            delay = start_mono + plan.start_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            result = await Consultation(plan, shared).run()
            result["start_s"] = round(time.monotonic() - start_mono, 3)
            return result

        results = await asyncio.gather(*(one(p) for p in plans))
        cpu_end = _cpu_seconds()
        if shared.clock is not None:
            await shared.clock.stop()
        wall = time.monotonic() - start_mono
        for agent in agents:
            await agent.close()
    return {
        "worker": worker, "sessions": results, "staff_online": len(shared.agents),
        "staff_failures": staff_failures, "rtt": shared.rtt.to_json(),
        "latency": {k: h.to_json() for k, h in shared.latency.items()},
        "cpu_s": round(cpu_end - cpu_start, 3), "cpu_total_s": round(cpu_end - cpu0, 3),
        "wall_s": round(wall, 3), "cpus": sorted(os.sched_getaffinity(0)),
        "media_path": options.media_path,
        "media_clock_errors": shared.clock.errors if shared.clock is not None else 0,
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
