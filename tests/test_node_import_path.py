"""``reactor node`` (the console script) imports the user's own code from job files: the working
directory is on sys.path as with ``python -m``, ``--path DIR`` adds more, and an import error
names the job file and the missing module."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor import Distributor

from .conftest import wait_for_node

REACTOR = Path(sys.executable).parent / "reactor"

JOB_FILE = """
from reactor import job

import myapp


@job("greet")
def greet(args):
    args["greeting"] = myapp.greeting(args["name"])
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project root holding ``myapp.py`` and a job directory whose job imports it."""
    (tmp_path / "myapp.py").write_text("def greeting(name):\n    return f'Hello, {name}!'\n")
    (tmp_path / "reactor_jobs").mkdir()
    (tmp_path / "reactor_jobs" / "greet.py").write_text(textwrap.dedent(JOB_FILE))
    return tmp_path


@pytest.fixture
def nodes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def console_node(
    nodes: list[subprocess.Popen[str]], cwd: Path, address: str, *extra: str
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [str(REACTOR), "node", "--name", "p1", "--distributor", address, *extra],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    nodes.append(proc)
    return proc


async def test_a_job_file_imports_a_module_from_the_working_directory(
    distributor: Distributor, project: Path, nodes: list[subprocess.Popen[str]]
) -> None:
    proc = console_node(nodes, project, distributor.address)
    await wait_for_node(distributor, "p1")
    result = await asyncio.wait_for(distributor.enqueue("greet", {"name": "cwd"}), 15)
    assert result["greeting"] == "Hello, cwd!"
    assert proc.poll() is None


async def test_path_puts_another_directory_on_the_import_path(
    distributor: Distributor, project: Path, nodes: list[subprocess.Popen[str]]
) -> None:
    elsewhere = project / "run_here"
    elsewhere.mkdir()
    jobs = str(project / "reactor_jobs")
    console_node(nodes, elsewhere, distributor.address, "--jobs", jobs, "--path", str(project))
    await wait_for_node(distributor, "p1")
    result = await asyncio.wait_for(distributor.enqueue("greet", {"name": "path"}), 15)
    assert result["greeting"] == "Hello, path!"


def test_a_missing_module_is_named_with_the_job_file(
    project: Path, nodes: list[subprocess.Popen[str]]
) -> None:
    elsewhere = project / "run_here"
    elsewhere.mkdir()
    jobs = str(project / "reactor_jobs")
    proc = console_node(nodes, elsewhere, "127.0.0.1:1", "--jobs", jobs)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2, stderr
    assert "greet.py" in stderr and "'myapp'" in stderr and "--path" in stderr, stderr
