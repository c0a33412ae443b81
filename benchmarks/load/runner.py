"""Running the tool: the server under test, the generator processes, the monitor, the
progress line, and the report files (JSON, Markdown, PNG)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import os
import queue as queue_module
import resource
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from .capacity import Limits, conclusion, judge, next_sessions
from .plan import Options, plan_sessions, split_by_worker, staff_roster, store_ids
from .progress import Progress
from .report import aggregate, markdown
from .server import (
    LocalServer,
    Monitor,
    Target,
    cpu_split,
    setup_deployment,
    udp_counters,
)
from .worker import worker_main

READY_TIMEOUT_S = 120.0


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_step(options: Options, target: Target, http: aiohttp.ClientSession,
                   generator_cpus: set[int] | None, server_info: dict[str, Any],
                   label: str = "") -> dict[str, Any]:
    """One run of ``options.sessions`` consultations; returns the aggregated report."""
    plans = plan_sessions(options)
    groups = split_by_worker(options, plans)
    roster = staff_roster(options, plans)
    progress = Progress(len(plans), label, options.quiet)
    progress.note(f"{label}setting up {len(store_ids(options))} stores and "
                  f"{len(roster) if options.staff else 0} staff members; starting "
                  f"{options.workers} generator process(es)")
    ramp_s = (options.sessions - 1) / options.ramp_per_s if options.ramp_per_s > 0 else 0.0
    if ramp_s >= options.call_s:
        progress.note(f"{label}note: starting {options.sessions} consultations takes "
                      f"{ramp_s:.0f} s, longer than a call ({options.call_s:g} s): they will "
                      "not all be in call at once (raise --call-seconds or --ramp)")
    await setup_deployment(http, target, options, store_ids(options),
                           roster if options.staff else [])
    monitor = Monitor(http, target)
    # Idle baseline: the server's CPU with nothing going on, subtracted per consultation.
    first = await monitor.scrape()
    await asyncio.sleep(1.0)
    second = await monitor.scrape()
    idle = None
    if first and second and first.cpu_s is not None and second.cpu_s is not None:
        idle = round(100 * (second.cpu_s - first.cpu_s) / (second.t - first.t), 2)
    forwarded0 = second.forwarded_packets if second else None

    ctx = multiprocessing.get_context("spawn")
    events_q = ctx.Queue()
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0)
    processes = []
    for worker, group in enumerate(groups):
        stores = {p.store for p in group} | {
            s for i, s in enumerate(store_ids(options)) if i % options.workers == worker}
        staff = [s for s in roster if s.store in stores]
        proc = ctx.Process(target=worker_main, name=f"bench-worker-{worker}", args=(
            worker, options, group, staff, target.base_url, target.ws_url, target.secret,
            generator_cpus, events_q, go, start_at), daemon=True)
        proc.start()
        processes.append(proc)
    results: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    events: list[tuple[float, int, int, str]] = []
    cpu0 = _cpu_self()
    udp0 = udp_counters()
    try:
        ready: set[int] = set()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(ready) + len(errors) < len(processes):
            if time.monotonic() > deadline:
                raise RuntimeError("generator processes did not get ready in time")
            msg = await _get(events_q)
            if msg is None:
                if not all(p.is_alive() for p in processes):
                    dead = [p.name for p in processes if not p.is_alive()]
                    raise RuntimeError(f"generator process(es) {dead} died while starting")
                continue
            if msg[0] == "ready":
                ready.add(msg[1])
            elif msg[0] == "error":
                errors.append(f"worker {msg[1]}: {msg[2]}")
        if errors:
            raise RuntimeError("; ".join(errors))
        monitor.generator_pids = [p.pid for p in processes if p.pid is not None]
        monitor.start()
        run_t0 = time.time() + 0.2
        start_at.value = run_t0
        go.set()
        while len(results) + len(errors) < len(processes):
            msg = await _get(events_q)
            if msg is None:
                if any(not p.is_alive() and i not in results
                       for i, p in enumerate(processes)):
                    await asyncio.sleep(0.5)  # its last message may still be in the pipe
                    while (msg := await _get(events_q, 0.0)) is not None:
                        _handle(msg, events, progress, results, errors)
                    lost = [i for i, p in enumerate(processes)
                            if not p.is_alive() and i not in results]
                    if lost:
                        errors += [f"worker {i} exited with code {processes[i].exitcode}"
                                   for i in lost if not any(e.startswith(f"worker {i}:")
                                                            for e in errors)]
                        break
            else:
                _handle(msg, events, progress, results, errors)
            if monitor.samples:
                last = monitor.samples[-2:]
                if len(last) == 2 and last[0].cpu_s is not None and last[1].cpu_s is not None:
                    progress.server_cpu = (last[1].cpu_s - last[0].cpu_s) / max(
                        last[1].t - last[0].t, 1e-9)
                if last[-1].rss_bytes:
                    progress.server_rss_mb = last[-1].rss_bytes / 2**20
            progress.draw()
        run_t1 = time.time()
    finally:
        for proc in processes:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        await monitor.stop()
        progress.finish()
    parent_cpu = _cpu_self() - cpu0
    udp1 = udp_counters()
    udp_drops = {k: udp1[k] - udp0[k] for k in ("RcvbufErrors", "InErrors", "InDatagrams")
                 if k in udp0 and k in udp1}
    forwarded1 = monitor.samples[-1].forwarded_packets if monitor.samples else None
    forwarded = (forwarded1 - forwarded0) if forwarded0 is not None and forwarded1 is not None \
        else None
    samples = ([second] if second else []) + monitor.samples
    return aggregate(
        options=options.to_json(), workers=[results[i] for i in sorted(results)],
        events=events, samples=samples, run_t0=run_t0, run_t1=run_t1,
        idle_cpu_percent=idle, cpu_source=monitor.cpu_source, forwarded_delta=forwarded,
        server=server_info, parent_cpu_s=parent_cpu, worker_errors=errors,
        udp_drops=udp_drops or None)


def _handle(msg: tuple[Any, ...], events: list[tuple[float, int, int, str]],
            progress: Progress, results: dict[int, dict[str, Any]], errors: list[str]) -> None:
    if msg[0] == "state":
        _, worker, index, state, at = msg
        events.append((at, worker, index, state))
        progress.on_state((worker, index), state)
    elif msg[0] == "result":
        results[msg[1]] = msg[2]
    elif msg[0] == "error":
        errors.append(f"worker {msg[1]}: {msg[2]}")


async def _get(q: Any, wait_s: float = 0.2) -> Any:
    """A message from the workers' queue without blocking the event loop (None: none)."""
    try:
        return q.get_nowait()
    except queue_module.Empty:
        pass
    if wait_s:
        await asyncio.sleep(wait_s)
    try:
        return q.get_nowait()
    except queue_module.Empty:
        return None


async def run(options: Options, command: str, *, find_capacity: bool = False,
              start_sessions: int = 2, max_sessions: int = 256, resolution: int = 1,
              limits: Limits | None = None) -> dict[str, Any]:
    """The whole tool: returns the final report (also written to ``options.out_dir``)."""
    server_cpus, generator_cpus = cpu_split(options.server_cpu)
    if generator_cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, generator_cpus)
    local: LocalServer | None = None
    if options.url is None:
        local = LocalServer(min(server_cpus) if server_cpus else None,
                            tryon=options.tryon_share > 0)
        target = local.start()
        server_info = {"kind": "started by the tool", "url": target.base_url,
                       "cpus": sorted(os.sched_getaffinity(target.pid)) if target.pid
                       else None, "log": str(local.log)}
    else:
        if not options.operator_token:
            raise SystemExit("--url needs --operator-token (or SHOPCALL_OPERATOR_TOKEN)")
        target = Target(options.url.rstrip("/"), options.operator_token, options.auth_secret)
        server_info = {"kind": "deployment", "url": target.base_url, "cpus": None}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            if not find_capacity:
                report = await run_step(options, target, http, generator_cpus, server_info)
            else:
                limits = limits or Limits()
                steps: list[dict[str, Any]] = []
                reports: dict[int, dict[str, Any]] = {}
                while (n := next_sessions(steps, start=start_sessions, maximum=max_sessions,
                                          resolution=resolution)) is not None:
                    step_options = dataclasses.replace(
                        options, sessions=n, store_prefix=f"{options.store_prefix}{len(steps)}x")
                    report = await run_step(step_options, target, http, generator_cpus,
                                            server_info, label=f"N={n} ")
                    verdict = judge(report, limits)
                    if not verdict["held"]:
                        # On a shared machine a neighbour's burst can break one step: a
                        # limit counts as broken only when it breaks twice in a row.
                        if not options.quiet:
                            print(f"N={n}: broke ({'; '.join(verdict['broken'])}), "
                                  "running it again to confirm", file=sys.stderr, flush=True)
                        step_options = dataclasses.replace(
                            step_options, store_prefix=step_options.store_prefix + "r")
                        report = await run_step(step_options, target, http, generator_cpus,
                                                server_info, label=f"N={n} (again) ")
                        first = verdict["broken"]
                        verdict = judge(report, limits)
                        verdict["first_try_broken"] = first
                    options.out_dir.mkdir(parents=True, exist_ok=True)
                    (options.out_dir / f"step-{n}.json").write_text(
                        json.dumps(report, indent=1, default=str))
                    steps.append(verdict)
                    reports[n] = report
                    held = "held" if verdict["held"] else "broke: " + "; ".join(
                        verdict["broken"])
                    if not options.quiet:
                        print(f"N={n}: {held}", file=sys.stderr, flush=True)
                result = conclusion(steps, max_sessions)
                best = result["largest_ok"]
                report = reports.get(best) or reports[steps[-1]["sessions"]]
                report["capacity"] = {**result, "limits": dataclasses.asdict(limits)}
    finally:
        if local is not None:
            local.stop()
    write_reports(report, options.out_dir, command)
    return report


def write_reports(report: dict[str, Any], out_dir: Path, command: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        from .plots import write_plots

        report["plots"] = write_plots(report, out_dir)
    except ImportError:
        report["plots"] = []
        print("matplotlib is not installed (pip install 'shopcall[bench]'): no plots",
              file=sys.stderr)
    report["command"] = command
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "summary.md").write_text(markdown(report, command))
