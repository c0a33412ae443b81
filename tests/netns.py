"""Hosts on one machine: named network namespaces joined to a hub by veth pairs, with `tc` on
the hub's side of each link, for tests that put a browser or a peer behind a real limited
link (field notes, section 5).

Everything is created under a prefix unique to the test process and deleted by `close()`,
processes started in a namespace first. Needs root (CI runs as root) and iproute2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field


def available() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "needs ip and tc (iproute2)"
    if os.geteuid() != 0:
        return "needs root to create named network namespaces"
    return None


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result


@dataclass
class Link:
    """A veth pair: `hub_dev` (address `hub_ip`) in the hub, `leaf_dev` in the leaf."""

    leaf: str
    hub_dev: str
    leaf_dev: str
    hub_ip: str
    leaf_ip: str


@dataclass
class Hosts:
    prefix: str = field(default_factory=lambda: f"sc{os.getpid() % 100000}")
    names: list[str] = field(default_factory=list)
    links: dict[str, Link] = field(default_factory=dict)

    @property
    def hub(self) -> str:
        return f"{self.prefix}-hub"

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def create(self, leaves: list[str]) -> None:
        """The hub and one namespace per leaf, each joined to the hub on 10.77.<i>.0/24."""
        for name in [self.hub, *(self.ns(leaf) for leaf in leaves)]:
            run("ip", "netns", "add", name)
            self.names.append(name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        for i, leaf in enumerate(leaves, start=1):
            link = Link(self.ns(leaf), f"{self.prefix[-6:]}h{i}", f"{self.prefix[-6:]}l{i}",
                        f"10.77.{i}.1", f"10.77.{i}.2")
            run("ip", "link", "add", link.hub_dev, "netns", self.hub, "type", "veth",
                "peer", "name", link.leaf_dev, "netns", link.leaf)
            run("ip", "-n", self.hub, "addr", "add", f"{link.hub_ip}/24", "dev", link.hub_dev)
            run("ip", "-n", link.leaf, "addr", "add", f"{link.leaf_ip}/24", "dev",
                link.leaf_dev)
            run("ip", "-n", self.hub, "link", "set", link.hub_dev, "up")
            run("ip", "-n", link.leaf, "link", "set", link.leaf_dev, "up")
            self.links[leaf] = link

    def attach(self, leaves: list[str]) -> None:
        """Know the hosts `create` made (in the process that runs inside them)."""
        for i, leaf in enumerate(leaves, start=1):
            self.links[leaf] = Link(self.ns(leaf), f"{self.prefix[-6:]}h{i}",
                                    f"{self.prefix[-6:]}l{i}", f"10.77.{i}.1", f"10.77.{i}.2")

    def shape(self, leaf: str, spec: list[str] | None) -> None:
        """What the hub sends `leaf` goes through this qdisc (e.g. ["tbf", "rate", "300kbit",
        "burst", "16kb", "latency", "300ms"], or ["netem", "loss", "5%", "delay",
        "100ms"]); None removes it."""
        link = self.links[leaf]
        if spec is None:
            run("ip", "netns", "exec", self.hub, "tc", "qdisc", "del", "dev", link.hub_dev,
                "root", check=False)
            return
        run("ip", "netns", "exec", self.hub, "tc", "qdisc", "replace", "dev", link.hub_dev,
            "root", *spec)

    def random_loss(self, leaf: str, percent: int | None) -> None:
        """Drop `percent`% of the UDP the hub sends `leaf`, at random (None: stop). With
        nftables: the kernels here have no netem qdisc (`tc qdisc ... netem`: "Specified
        qdisc kind is unknown"), so loss comes from a firewall rule and delay is not
        emulated."""
        link = self.links[leaf]
        nft = ["ip", "netns", "exec", self.hub, "nft"]
        table = f"loss_{leaf}"
        run(*nft, "delete", "table", "inet", table, check=False)
        if percent is None:
            return
        run(*nft, "add", "table", "inet", table)
        run(*nft, "add", "chain", "inet", table, "out",
            "{ type filter hook output priority 0; }")
        run(*nft, "add", "rule", "inet", table, "out", "oifname", link.hub_dev, "meta",
            "l4proto", "udp", "numgen", "random", "mod", "100", "<", str(percent), "drop")

    def shape_uplink(self, leaf: str, spec: list[str] | None) -> None:
        """The same on the leaf's side: what `leaf` sends the hub (a publisher's uplink)."""
        link = self.links[leaf]
        args = ["ip", "netns", "exec", link.leaf, "tc", "qdisc"]
        if spec is None:
            run(*args, "del", "dev", link.leaf_dev, "root", check=False)
        else:
            run(*args, "replace", "dev", link.leaf_dev, "root", *spec)

    def wrapper(self, leaf: str, program: str, folder: str) -> str:
        """An executable that runs `program` with its arguments inside `leaf`'s namespace
        (what Playwright launches as the browser: its pipes pass through `ip netns exec`)."""
        path = os.path.join(folder, f"in-{leaf}")
        with open(path, "w") as out:
            out.write(f'#!/bin/sh\nexec ip netns exec {self.ns(leaf)} {program} "$@"\n')
        os.chmod(path, 0o755)
        return path

    def close(self) -> None:
        for name in reversed(self.names):
            pids = run("ip", "netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (OSError, ValueError):
                    pass
            run("ip", "netns", "del", name, check=False)
        self.names.clear()
