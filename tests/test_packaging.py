"""Packaging: one version everywhere, the demo's jobs inside the package, a wheel that works."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import reactor
from reactor.cli import main
from reactor.cli.demo_cmd import demo_jobs_dir

ROOT = Path(__file__).resolve().parent.parent


def test_version_has_one_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert reactor.__version__ == importlib.metadata.version("reactor-jobs")
    assert "__version__" in reactor.__all__
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"reactor {reactor.__version__}"


def test_demo_jobs_have_one_copy() -> None:
    # reactor_jobs/ is what the examples, the README and (in a checkout) `reactor demo` use; the
    # wheel build copies it into the package (test below), so no second copy lives in the tree.
    assert demo_jobs_dir() == ROOT / "reactor_jobs"
    assert (ROOT / "reactor_jobs" / "greetings.py").is_file()
    assert not (Path(reactor.__file__).parent / "demo_jobs").exists()


def test_license_is_shipped_and_matches_the_metadata() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    meta = importlib.metadata.metadata("reactor-jobs")
    assert meta["License-Expression"] == "MIT"
    # No placeholder home pages: the project's public home is not settled, so pyproject names none
    # until it is (a real one may be added then).
    urls = meta.get_all("Project-URL") or []
    assert not [url for url in urls if "github.com/reactor-jobs/reactor" in url], urls


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wheel_installs_into_a_fresh_venv_and_the_demo_runs_anywhere(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    wheels, venv, empty = tmp_path / "wheels", tmp_path / "venv", tmp_path / "empty"
    empty.mkdir()
    _run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(wheels)],
        tmp_path,
        env,
        300,
    )
    (wheel,) = wheels.glob("reactor_jobs-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = sorted(n for n in archive.namelist() if n.startswith("reactor/demo_jobs/"))
    assert shipped == sorted(
        f"reactor/demo_jobs/{p.name}" for p in (ROOT / "reactor_jobs").glob("*.py")
    )
    # A venv of its own (not the test venv, where the project is installed editable); pip
    # takes the dependencies from the configured index.
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env, 120)
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], tmp_path, env, 600)
    reactor_cmd = str(venv / "bin" / "reactor")
    assert _run([reactor_cmd, "--version"], empty, env, 60).strip() == (
        f"reactor {reactor.__version__}"
    )
    bench_help = _run([reactor_cmd, "bench", "--help"], empty, env, 60)  # issue 22: it exited 2
    assert "usage: reactor bench" in bench_help and "checkout" in bench_help
    out = _run([reactor_cmd, "--log-level", "WARNING", "demo"], empty, env, 120)
    assert "node connected" in out and "all done in" in out
    assert list(empty.iterdir()) == []  # the demo needed nothing from, and left nothing in, cwd
