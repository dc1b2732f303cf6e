"""reactor.logs: text and JSON lines with structured fields, and the CLI's use of it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reactor import Distributor, JobFailed
from reactor.ops import logs
from reactor.testing import async_wait_until

from .conftest import NodeFactory, wait_for_node


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_the_structured_fields(restore_root: None) -> None:
    stream = io.StringIO()
    logs.configure("DEBUG", "json", stream)
    log = logging.getLogger("reactor.node")
    fields = {"job_id": "j1", "job_name": "mail", "node": "w1", "attempt": 2,
              "distributor": "127.0.0.1:5000"}  # fmt: skip
    log.info("job %s done", "j1", extra=fields)
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("job failed", extra={"job_id": "j2"})
    log.debug("plain")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "job j1 done" and first["level"] == "INFO"
    assert first["logger"] == "reactor.node" and first["ts"].endswith("Z")
    assert {k: first[k] for k in logs.FIELDS} == {
        "job_id": "j1", "job_name": "mail", "node": "w1", "attempt": 2,
        "distributor": "127.0.0.1:5000",
    }  # fmt: skip
    assert second["level"] == "ERROR" and second["job_id"] == "j2"
    assert "ValueError: bad" in second["exc"] and "Traceback" in second["exc"]
    assert set(third) == {"ts", "level", "logger", "message"}


def test_text_shows_fields_compactly(restore_root: None) -> None:
    stream = io.StringIO()
    logs.configure("INFO", "text", stream)
    log = logging.getLogger("reactor.node")
    log.info("started", extra={"node": "w1", "job_id": "j1", "job_name": "my job"})
    log.info("no fields")
    log.debug("hidden")
    with_fields, without = stream.getvalue().splitlines()
    assert with_fields.endswith("INFO reactor.node: started [job=j1 name='my job' node=w1]")
    assert without.endswith("INFO reactor.node: no fields")


def test_configure_replaces_its_own_handler_only(restore_root: None) -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    try:
        logs.configure("INFO", "text", io.StringIO())
        logs.configure("INFO", "json", io.StringIO())
        ours = [h for h in logging.getLogger().handlers if isinstance(h, logs._Handler)]
        assert len(ours) == 1 and other in logging.getLogger().handlers
    finally:
        logging.getLogger().removeHandler(other)
    with pytest.raises(ValueError, match="unknown log format"):
        logs.configure("INFO", "xml")
    with pytest.raises(ValueError, match="unknown log level"):
        logs.configure("LOUD", "text")


def _reactor(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "reactor", *argv],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("before", [True, False])
def test_cli_json_logs_go_to_stderr_line_by_line(tmp_path: Path, before: bool) -> None:
    options = ["--log-level", "INFO", "--log-format", "json"]
    argv = [*options, "keys", "generate"] if before else ["keys", "generate", *options]
    done = _reactor(*argv, str(tmp_path), "--name", "w1")
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["message"] for e in entries] == ["wrote CURVE key pair 'w1'"]
    assert entries[0]["logger"] == "reactor.cli" and entries[0]["public"].endswith("w1.key")
    assert "public key:" in done.stdout  # the command's own output stays on stdout
    failed = _reactor(*argv, str(tmp_path), "--name", "w1")  # exists: an error on stderr
    assert failed.returncode == 2 and failed.stdout == "" and "reactor keys:" in failed.stderr


def test_cli_default_is_quiet(tmp_path: Path) -> None:
    done = _reactor("keys", "generate", str(tmp_path))
    assert done.returncode == 0 and done.stderr == ""


@pytest.mark.parametrize("fmt", ["json", "text"])
async def test_a_node_logs_each_job_start_success_and_failure_with_its_fields(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path, fmt: str
) -> None:
    """Issue 22: job lines carry job_id, job_name, node and attempt (JSON fields, or the text
    suffix), and log_job_processing logs starts and successes, not only failures."""
    node = start_node(
        "w1",
        [distributor.address],
        settings={"log_job_processing": True},
        extra=["--log-format", fmt],
    )
    await wait_for_node(distributor, "w1", proc=node)
    ok = distributor.enqueue("record", {"path": str(tmp_path / "notes.txt")})
    failed = distributor.enqueue("fail_twice", {"path": str(tmp_path / "notes.txt")})
    await asyncio.wait_for(ok, 20)
    with pytest.raises(JobFailed):
        await asyncio.wait_for(failed, 20)

    def lines_of(job_id: str) -> list[dict[str, Any]]:
        found = []
        for line in node.output().splitlines():
            if fmt == "json" and line.startswith("{"):
                entry = json.loads(line)
                if entry.get("job_id") == job_id:
                    found.append(entry)
            elif fmt == "text" and f"[job={job_id} " in line:
                message, _, suffix = line.rpartition(" [")
                fields = dict(pair.split("=", 1) for pair in suffix.rstrip("]").split(" "))
                found.append({"message": message, "job_id": fields["job"], **fields})
        return found

    await async_wait_until(lambda: len(lines_of(failed.id)) == 4, 10, 0.05)  # logs trail results
    for job_id, name, expected in [
        (ok.id, "record", ["started (attempt 1)", "succeeded (attempt 1)"]),
        (failed.id, "fail_twice", ["started (attempt 1)", "failed (attempt 1), retrying in",
                                   "started (attempt 2)", "failed (attempt 2), no retry"]),
    ]:  # fmt: skip
        entries = lines_of(job_id)
        assert len(entries) == len(expected), entries
        for entry, words in zip(entries, expected, strict=True):
            assert words in entry["message"], entry
            assert entry["job_id"] == job_id and entry["node"] == "w1", entry
            assert (entry["job_name"] if fmt == "json" else entry["name"]) == name, entry
        attempts = [int(e["attempt"]) for e in entries]
        assert attempts == sorted(attempts) and attempts[0] == 1, entries
