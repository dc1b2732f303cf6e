"""Network namespaces joined to the root namespace by veth pairs, for partition tests.

Each :class:`NetNs` is one namespace ``rfx<pid>n<i>`` with a veth pair to the root namespace on a
private /30, ``10.213.<N>.0/30``: ``10.213.<N>.1`` on the root side (``host_ip``), ``10.213.<N>.2``
inside (``ns_ip``), and a default route inside via the root side, so a process in any namespace of a
:class:`NetLab` reaches an address bound on any root-side veth. ``N`` is picked among the /30s no
interface uses yet, starting from a value derived from the PID so parallel runs do not clash.

Everything is deleted by :meth:`NetLab.close` (the fixture's finalizer): processes started in a
namespace are killed by PID, then the namespaces go (which deletes their veth ends, and so the
pairs).
Only root may do this: :func:`require_netns` skips the test with the reason otherwise, or fails it
under ``CI=true``, where these tests must run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import pytest

_PREFIX = "10.213"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def netns_unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network-namespace tests need root (ip netns add), and this run is not root"
    probe = f"rfx{os.getpid()}probe"
    try:
        made = _ip("netns", "add", probe, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the ip command is not usable: {exc}"
    if made.returncode != 0:
        return f"ip netns add is not permitted here: {made.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return None


def require_netns() -> None:
    """Skip when namespaces are not usable; under ``CI=true`` fail instead (CI must run these)."""
    reason = netns_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires the network-namespace fault tests to run")
    pytest.skip(reason)


def _used_subnets() -> set[int]:
    out = _ip("-4", "-o", "addr", "show", check=False).stdout
    used: set[int] = set()
    for word in out.split():
        if word.startswith(f"{_PREFIX}."):
            with contextlib.suppress(ValueError, IndexError):
                used.add(int(word.split(".")[2]))
    return used


class NsProcess:
    """A command run inside a namespace with ``ip netns exec`` (which execs, so the PID is the
    command's own); killed by PID at teardown."""

    def __init__(self, ns: str, cmd: Sequence[str], log_path: Path) -> None:
        self.cmd = ["ip", "netns", "exec", ns, *cmd]
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in kill()/wait()
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=self._log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def kill(self) -> int:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        return self.wait(30)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class NetNs:
    """One namespace with a veth pair to the root namespace; see the module docstring."""

    def __init__(self, name: str, subnet: int, host_if: str, ns_if: str) -> None:
        self.name = name
        self.subnet = subnet
        self.host_if = host_if
        self.ns_if = ns_if
        self.host_ip = f"{_PREFIX}.{subnet}.1"
        self.ns_ip = f"{_PREFIX}.{subnet}.2"
        self.processes: list[NsProcess] = []

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        self.exec_ip("addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        self.exec_ip("link", "set", self.ns_if, "up")
        self.exec_ip("link", "set", "lo", "up")
        self.exec_ip("route", "add", "default", "via", self.host_ip)

    def exec_ip(self, *args: str) -> None:
        _ip("netns", "exec", self.name, "ip", *args)

    def link_down(self) -> None:
        """Take the root side of the veth down: nothing passes between the namespace and us."""
        _ip("link", "set", self.host_if, "down")

    def link_up(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def run(self, cmd: Sequence[str], log_path: Path) -> NsProcess:
        """Start ``cmd`` inside the namespace, output to ``log_path``."""
        proc = NsProcess(self.name, cmd, log_path)
        self.processes.append(proc)
        return proc

    def delete(self) -> None:
        """Kill this namespace's processes, then delete it (and so its veth pair). Never raises."""
        for proc in self.processes:
            with contextlib.suppress(Exception):
                proc.kill()
        _ip("netns", "delete", self.name, check=False)
        _ip("link", "delete", self.host_if, check=False)  # if the namespace never got its end


class NetLab:
    """The namespaces of one test; :meth:`close` deletes all of them."""

    def __init__(self) -> None:
        self.namespaces: list[NetNs] = []

    def add(self) -> NetNs:
        """Create one more namespace on a free /30."""
        i = len(self.namespaces)
        used = _used_subnets() | {ns.subnet for ns in self.namespaces}
        start = 16 + (os.getpid() * 7 + i) % 224
        subnet = next((s for s in [*range(start, 240), *range(16, start)] if s not in used), None)
        if subnet is None:
            raise RuntimeError(f"no free /30 left in {_PREFIX}.16-239.0")
        tag = f"{os.getpid() % 100000}{i}"
        ns = NetNs(f"rfx{tag}", subnet, f"rfx{tag}h", f"rfx{tag}n")
        self.namespaces.append(ns)
        try:
            ns.create()
        except Exception:
            ns.delete()
            raise
        return ns

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            ns.delete()
        self.namespaces.clear()
