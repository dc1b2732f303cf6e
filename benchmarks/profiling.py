"""``--profile DIR``: sample the node process and the application with py-spy during a drain, and
summarise where the time goes (self and inclusive % of samples, per thread)."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")
_PREFIXES = ("site-packages/", "lib/python3.11/", "/work/main/")


def py_spy() -> str | None:
    """The py-spy executable (next to this interpreter, or on PATH), or None."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


class Profiler:
    """py-spy ``record`` on several processes at once, in raw (collapsed stack) format.

    Args:
        out_dir: where ``<name>.raw`` files go.
        targets: a name for each process id to sample.
        rate: samples per second.
    """

    def __init__(self, out_dir: Path, targets: dict[str, int], rate: int = 250) -> None:
        self.out_dir = out_dir
        self.targets = targets
        self.rate = rate
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        """Start sampling (non-blocking: the targets are never paused)."""
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.targets.items():
            cmd = [exe, "record", "--pid", str(pid), "--format", "raw", "--nonblocking"]
            cmd += ["--threads", "--rate", str(self.rate), "-o", str(self.raw(name))]
            self._procs[name] = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

    def raw(self, name: str) -> Path:
        """The raw output file for target ``name``."""
        return self.out_dir / f"{name}.raw"

    def stop(self) -> None:
        """Stop sampling; py-spy writes its file on SIGINT."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self._procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)

    def report(self, top: int = 15) -> str:
        """Per target and thread: the functions with the most self and inclusive samples."""
        parts = []
        for name in self.targets:
            path = self.raw(name)
            if path.exists():
                parts.append(summarise(name, path, top))
        return "\n\n".join(parts)


def _frame(text: str) -> str:
    text = _LINE.sub(")", text.strip())
    for prefix in _PREFIXES:
        at = text.find(prefix)
        if at >= 0:
            text = text[: text.rfind("(", 0, at) + 1] + text[at + len(prefix) :]
    return text


def summarise(name: str, path: Path, top: int = 15) -> str:
    """A text summary of one py-spy raw file."""
    per_thread: dict[str, tuple[Counter[str], Counter[str], list[int]]] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else "all"
        frames = [_frame(f) for f in frames[1:]] if thread != "all" else [_frame(f) for f in frames]
        if not frames:
            continue
        selfs, incl, total = per_thread.setdefault(thread, (Counter(), Counter(), [0]))
        total[0] += count
        selfs[frames[-1]] += count
        for frame in set(frames):
            incl[frame] += count
    grand = sum(t[2][0] for t in per_thread.values()) or 1
    out = [f"== {name}: {grand} samples"]
    for thread, (selfs, incl, total) in sorted(per_thread.items(), key=lambda kv: -kv[1][2][0]):
        if total[0] < grand * 0.02:
            continue
        share = 100.0 * total[0] / grand
        out.append(f"-- {thread}: {total[0]} samples ({share:.0f}% of this process's)")
        out.append("   self%  function")
        for frame, count in selfs.most_common(top):
            out.append(f"   {100.0 * count / total[0]:5.1f}  {frame}")
        out.append("   incl%  function")
        for frame, count in incl.most_common(top):
            out.append(f"   {100.0 * count / total[0]:5.1f}  {frame}")
    return "\n".join(out)
