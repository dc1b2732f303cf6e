"""The README's Quick start, run verbatim: its files and its command are read from README.md.

The Quick start binds the fixed port 5000, so each run happens in a network namespace of its own
(``unshare --net``, a private loopback): other processes on this machine cannot collide with it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.netns import require_netns

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent


def quick_start() -> tuple[dict[str, str], list[str]]:
    """The Quick start's files (named by the backticked ``*.py`` in the paragraph before each
    Python block) and its shell commands."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    files: dict[str, str] = {}
    commands: list[str] = []
    for block in re.finditer(r"```(\w+)\n(.*?)```", section, re.S):
        lang, code = block.group(1), block.group(2)
        if lang == "sh":
            commands.append(code.strip())
            continue
        paragraph = section[: block.start()].rstrip().rsplit("\n\n", 1)[-1]
        names = re.findall(r"`([\w/]+\.py)`", paragraph)
        assert names, f"no file name before the Quick start block:\n{code[:200]}"
        files[names[-1]] = code
    return files, commands


def test_the_readme_quick_start_names_its_files() -> None:
    files, commands = quick_start()
    assert set(files) == {"application.py", "reactor_jobs/my_jobs.py", "worker.py"}
    assert len(commands) == 1 and commands[0].startswith("reactor node ")


@pytest.mark.parametrize("worker", ["command", "worker.py"])
def test_the_readme_quick_start_runs_verbatim(tmp_path: Path, worker: str) -> None:
    require_netns()
    files, commands = quick_start()
    for name, code in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(code)
    start_worker = commands[0] if worker == "command" else "python worker.py"
    # The application first, the worker a moment later: start order must not matter.
    script = (
        "ip link set lo up\n"
        "python application.py > app.out 2> app.err &\n"
        "app=$!\n"
        f"{start_worker} 2> worker.err &\n"
        "node=$!\n"
        "wait $app; code=$?\n"
        "kill -TERM $node; wait $node\n"
        "exit $code\n"
    )
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("REACTOR_DRAIN_TIMEOUT", None)  # the defaults, as a reader has them
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = (tmp_path / "app.out").read_text()
    logs = (tmp_path / "app.err").read_text() + (tmp_path / "worker.err").read_text()
    assert done.returncode == 0, f"{done.stderr}\n{out}\n{logs[-3000:]}"
    assert "feedback: Hello, reactor!" in out, logs[-3000:]
    assert "'shouted': 'HELLO, REACTOR!'" in out
    assert "Traceback" not in logs, logs[-3000:]
