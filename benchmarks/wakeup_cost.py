"""What a machine charges for waking processes, which sets the floor of the SFU's CPU figures.

Run: ``python -m benchmarks.wakeup_cost --json`` -> one JSON object.

Two measurements, each in fresh processes pinned like the fan-out benchmark (receiver or SFU
side on CPU 0, the other side on CPU 1):

* ``idle_receiver``: a uvloop UDP endpoint that does nothing per datagram, fed at a steady
  rate by another process. Its CPU per datagram is the cost of being woken for it (epoll,
  scheduler, and on a VM the hypervisor's halt/resume), which every packet of a lightly
  loaded SFU pays before any forwarding.
* ``fanout_copy``: the SFU's native fan-out (mediaserver/_fanout.c: rewrite, history,
  SRTP protect, sendto) of 1,100-byte packets to 16 loopback sockets, CPU per copy, with
  the sockets drained (a) by the sending process itself, nobody to wake, and (b) by a busy
  process on the other CPU. On loopback the kernel delivers each datagram inside the
  sender's ``sendto``, so the receiver's side lands on the sender's bill.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import selectors
import socket
import time
from typing import Any

SERVER_CPU, CLIENT_CPU = 0, 1


def _pin(cpu: int) -> None:
    if len(os.sched_getaffinity(0)) > 1 and cpu < os.cpu_count():  # type: ignore[operator]
        os.sched_setaffinity(0, {cpu})


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def idle_receiver(rate: int, seconds: float) -> dict[str, Any]:
    """CPU per datagram of a receiver that does nothing with them."""
    import uvloop

    received = 0

    class Counter(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            nonlocal received
            received += 1

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the sender: steady pace, its own CPU
        try:
            _pin(CLIENT_CPU)
            port = int(os.read(read_fd, 16))
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            payload = bytes(1100)
            start = time.monotonic()
            end = start + seconds + 1.5
            n = 0
            while time.monotonic() < end:
                sock.sendto(payload, ("127.0.0.1", port))
                n += 1
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        finally:
            os._exit(0)

    async def serve() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Counter,
                                                           local_addr=("127.0.0.1", 0))
        os.write(write_fd, str(transport.get_extra_info("sockname")[1]).encode())
        await asyncio.sleep(1.0)
        cpu0, n0 = _cpu_s(), received
        await asyncio.sleep(seconds)
        cpu, n = _cpu_s() - cpu0, received - n0
        transport.close()
        return {"rate": rate, "datagrams_per_s": round(n / seconds, 1),
                "cpu_percent": round(100 * cpu / seconds, 2),
                "cpu_us_per_datagram": round(cpu / max(n, 1) * 1e6, 1)}

    _pin(SERVER_CPU)
    try:
        return uvloop.run(serve())
    finally:
        os.waitpid(pid, 0)
        os.close(read_fd)
        os.close(write_fd)


def fanout_copy(receivers: int, packets: int, drained_by: str) -> dict[str, Any]:
    """CPU per forwarded copy of the native fan-out; `drained_by`: "self" or "other"."""
    from pylibsrtp import Policy, Session
    from pylibsrtp._binding import ffi, lib

    import mediaserver.consumer as consumer_module
    from mediaserver import _fanout
    from mediaserver.consumer import Consumer

    fanout = consumer_module.native_fanout
    if fanout is None:
        raise SystemExit("the native fan-out is not built (pip install -e .)")
    protect = int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_protect")))
    key = os.urandom(44)
    sockets, consumers, owners = [], [], []
    for i in range(receivers):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        rx.setblocking(False)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.bind(("127.0.0.1", 0))
        srtp = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                              srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM))
        target = _fanout.Target()
        target.set(os.dup(tx.fileno()), "127.0.0.1", rx.getsockname()[1], protect,
                   int(ffi.cast("uintptr_t", srtp._srtp[0])), srtp)

        class Owner:  # what Consumer looks for on its send callable: a native target
            native_target = target

            def send_rtp(self, packet: bytes) -> None:
                return None

        owner = Owner()
        consumer = Consumer("publisher", "video", 1000 + i, 96, 90000, owner.send_rtp)
        consumer.last_in_seq, consumer.seq_offset = 0, 0  # steady state: the native path
        sockets.append((rx, tx))
        consumers.append(consumer)
        owners.append(owner)

    def drain() -> None:
        for rx, _ in sockets:
            try:
                while True:
                    rx.recv(2048)
            except BlockingIOError:
                pass

    child = 0
    if drained_by == "other":
        child = os.fork()
        if child == 0:
            try:
                _pin(CLIENT_CPU)
                selector = selectors.EpollSelector()
                for rx, _ in sockets:
                    selector.register(rx, selectors.EVENT_READ)
                parent = os.getppid()
                while os.getppid() == parent:
                    for key_, _ in selector.select(0.2):
                        try:
                            while True:
                                key_.fileobj.recv(2048)  # type: ignore[union-attr]
                        except BlockingIOError:
                            pass
            finally:
                os._exit(0)
    _pin(SERVER_CPU)
    payload = b"\x90\x80\x80\x01" + os.urandom(1096)
    data = bytes(12) + payload
    spent = 0.0
    try:
        for batch in range(0, packets, 100):
            start = time.process_time()
            for seq in range(batch + 1, batch + 101):
                fanout(data, 0, seq, seq * 3000, 12, False, 1.0, consumers)
            spent += time.process_time() - start
            if drained_by == "self":
                drain()
    finally:
        if child:
            os.kill(child, 9)
            os.waitpid(child, 0)
        sent = sum(o.native_target.sent for o in owners)
        for rx, tx in sockets:
            rx.close()
            tx.close()
        for o in owners:
            o.native_target.clear()
    return {"receivers": receivers, "drained_by": drained_by, "copies": sent,
            "cpu_us_per_copy": round(spent / max(sent, 1) * 1e6, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="200,1000,5000",
                        help="datagrams per second for the idle receiver")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--packets", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {
        "idle_receiver": [idle_receiver(int(r), args.seconds) for r in args.rates.split(",")],
        "fanout_copy": [fanout_copy(16, args.packets, d) for d in ("self", "other")],
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
