"""A network namespace that owns the fake cluster's pod IPs.

Why: Kubernetes refuses loopback addresses in EndpointSlices, so pods that carry real traffic need
real, non-loopback IPs. We give them addresses inside a namespace *this stack created*, joined to
the host by a veth pair; the host side holds ``10.77.255.254/16`` so host processes (Prometheus,
the traffic generator, tests, the operator) reach ``10.77.x.y`` through the veth and nowhere else.
Every address operation refuses IPs outside the namespace's CIDR, and ``up`` refuses a CIDR that
already has a route on the host that is not ours.

A pod that runs a real server gets its own namespace (a sandbox, as a pod has): its IP on an ``eth0`` whose peer
sits in the shared namespace, which routes to it (a /32 route, proxy ARP, forwarding). So the pod's own loopback
is its own, and a hook that calls ``127.0.0.1:8000`` (the operator's version pin) reaches this pod's Triton.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_NETNS = "modelship-pods"
DEFAULT_CIDR = "10.77.0.0/16"


class NetnsError(RuntimeError):
    """An ``ip`` command failed or a request would touch addresses we do not own."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@dataclass(frozen=True)
class PodNetwork:
    """The namespace, its veth pair and its CIDR; all operations are idempotent."""

    name: str = DEFAULT_NETNS
    cidr: str = DEFAULT_CIDR

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    @property
    def host_addr(self) -> str:
        """Last usable address of the CIDR (10.77.255.254 for 10.77.0.0/16)."""
        return str(self.network.broadcast_address - 1)

    @property
    def host_if(self) -> str:
        return "msp-host" if self.name == DEFAULT_NETNS else f"msh{self._tag}"

    @property
    def ns_if(self) -> str:
        return "msp-pods" if self.name == DEFAULT_NETNS else f"msn{self._tag}"

    @property
    def _tag(self) -> str:
        return hashlib.sha1(self.name.encode()).hexdigest()[:8]

    def exists(self) -> bool:
        return self.name in _ip("netns", "list").stdout.split()

    def exec_prefix(self) -> list[str]:
        """Prefix that runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def _check_cidr_free(self) -> None:
        routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
        for route in routes:
            dst = route.get("dst", "")
            if dst in ("", "default") or route.get("dev") == self.host_if:
                continue
            with contextlib.suppress(ValueError):
                if ipaddress.IPv4Network(dst, strict=False).overlaps(self.network):
                    raise NetnsError(f"{self.cidr} overlaps host route {dst} dev {route.get('dev')}")

    def up(self) -> PodNetwork:
        """Create the namespace, the veth pair, the host address and the routes (no-op if present)."""
        if not self.exists():
            self._check_cidr_free()
            _ip("netns", "add", self.name)
        if _ip("link", "show", self.host_if, check=False).returncode != 0:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", self.name)
        prefix = self.network.prefixlen
        if self.host_addr not in _ip("-4", "-o", "addr", "show", "dev", self.host_if).stdout:
            _ip("addr", "add", f"{self.host_addr}/{prefix}", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        _ip("-n", self.name, "link", "set", self.ns_if, "up")
        _ip("-n", self.name, "route", "replace", self.cidr, "dev", self.ns_if)
        for key, value in (("net.ipv4.ip_forward", 1), ("net.ipv4.conf.all.rp_filter", 0),
                           ("net.ipv4.conf.default.rp_filter", 0), (f"net.ipv4.conf.{self.ns_if}.proxy_arp", 1)):
            _sysctl(self.name, key, value)  # the shared namespace routes between the host and pod sandboxes
        self._neighbour_room()
        return self

    # -- pod sandboxes -------------------------------------------------------------------------
    def sandbox_name(self, ip: str) -> str:
        return f"{self.name}-{self._sandbox_tag(self._own(ip))}"

    def _sandbox_tag(self, ip: str) -> str:
        return hashlib.sha1(f"{self.name}/{ip}".encode()).hexdigest()[:10]

    def add_sandbox(self, ip: str) -> str:
        """A namespace of its own for the pod at `ip` (idempotent); its name, to run the pod's processes in."""
        ip = self._own(ip)
        name, peer = self.sandbox_name(ip), f"vh{self._sandbox_tag(ip)}"
        if name not in _ip("netns", "list").stdout.split():
            _ip("netns", "add", name)
        if _ip("-n", self.name, "link", "show", peer, check=False).returncode != 0:
            _ip("-n", self.name, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("-n", name, "addr", "replace", f"{ip}/32", "dev", "eth0")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "set", "eth0", "up")
        _ip("-n", name, "route", "replace", "default", "dev", "eth0")
        _ip("-n", self.name, "link", "set", peer, "up")
        _ip("-n", self.name, "route", "replace", f"{ip}/32", "dev", peer)
        _sysctl(self.name, f"net.ipv4.conf.{peer}.proxy_arp", 1)
        return name

    def del_sandbox(self, ip: str) -> None:
        """Kill what still runs in the pod's namespace and delete it (its veth pair and route go with it)."""
        _delete_netns(self.sandbox_name(ip))

    def sandboxes(self) -> list[str]:
        prefix = f"{self.name}-"
        return [n for n in _ip("netns", "list").stdout.split() if n.startswith(prefix)]

    @staticmethod
    def _neighbour_room() -> None:
        """Every pod address is a neighbour on the veth: the kernel's default table (1,024 entries) overflows at
        ~1,000 pods ("neighbor table overflow"), and then pod addresses stop answering (bench.fleet at 1,000
        objects). Raise the limits if lower; never lower them."""
        for level, wanted in (("gc_thresh1", 4096), ("gc_thresh2", 8192), ("gc_thresh3", 16384)):
            path = Path("/proc/sys/net/ipv4/neigh/default") / level
            with contextlib.suppress(OSError, ValueError):
                if int(path.read_text().strip()) < wanted:
                    path.write_text(str(wanted))

    def down(self) -> None:
        """Kill what still runs inside (pod sandboxes too), delete the veth pair and the namespaces."""
        for sandbox in self.sandboxes():
            _delete_netns(sandbox)
        _ip("link", "del", self.host_if, check=False)
        if self.exists():
            _delete_netns(self.name)

    def _own(self, ip: str) -> str:
        addr = ipaddress.IPv4Address(ip)
        # the network address is allowed: kwok hands out the first address of a node's podCIDR
        # (10.77.0.0 for 10.77.0.0/24), and Linux routes it as unicast on the veth
        reserved = (self.host_addr, str(self.network.broadcast_address))
        if addr not in self.network or str(addr) in reserved:
            raise NetnsError(f"{ip} is not a pod address of {self.cidr}")
        return str(addr)

    def owns(self, ip: str) -> bool:
        """Whether ``ip`` is a pod address this namespace may hold."""
        try:
            self._own(ip)
        except (NetnsError, ValueError):
            return False
        return True

    def add_ip(self, ip: str) -> None:
        """Give a pod IP to the namespace (as /32 on its veth end)."""
        ip = self._own(ip)
        if ip not in self.ips():
            _ip("-n", self.name, "addr", "add", f"{ip}/32", "dev", self.ns_if)

    def del_ip(self, ip: str) -> None:
        ip = self._own(ip)
        if ip in self.ips():
            _ip("-n", self.name, "addr", "del", f"{ip}/32", "dev", self.ns_if)

    def ips(self) -> set[str]:
        """Pod IPs currently held by the namespace or routed to a pod sandbox."""
        if not self.exists():
            return set()
        data = json.loads(_ip("-n", self.name, "-j", "-4", "addr", "show", "dev", self.ns_if).stdout or "[]")
        routes = json.loads(_ip("-n", self.name, "-j", "-4", "route", "show").stdout or "[]")
        sandboxed = {r["dst"] for r in routes if str(r.get("dev", "")).startswith("vh") and "/" not in r["dst"]}
        return {a["local"] for iface in data for a in iface.get("addr_info", [])} | sandboxed


def _sysctl(netns: str, key: str, value: int) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", f"{key}={value}"], capture_output=True,
                   check=True)  # fmt: skip


def _delete_netns(name: str) -> None:
    for pid in _ip("netns", "pids", name, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", name, check=False)
