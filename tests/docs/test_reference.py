"""The reference pages name everything the code has: every command and option of ``reactor``,
every config key, every metric, every dashboard route."""

from __future__ import annotations

import argparse
import re

from reactor.cli import build_parser
from reactor.config import DEFAULTS
from tests.docs.blocks import ROOT

DOCS = ROOT / "docs"


def _parsers(
    parser: argparse.ArgumentParser, path: str = "reactor"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


def test_the_cli_reference_names_every_command_and_option() -> None:
    text = (DOCS / "reference" / "cli.md").read_text()
    missing = []
    for path, parser in _parsers(build_parser()):
        if path.startswith("reactor bench"):
            continue  # bench hands its arguments to the benchmarks package, documented there
        if path not in text:
            missing.append(path)
        for action in parser._actions:
            missing += [f"{path} {flag}" for flag in action.option_strings if flag not in text]
    assert not missing, f"docs/reference/cli.md lacks: {missing}"


def test_the_configuration_reference_names_every_key() -> None:
    text = (DOCS / "reference" / "configuration.md").read_text()
    missing = [key for key in DEFAULTS if f"`{key}`" not in text]
    assert not missing, f"docs/reference/configuration.md lacks: {missing}"


def test_the_dashboard_routes_are_documented() -> None:
    source = (ROOT / "reactor" / "ops" / "dashboard" / "app.py").read_text()
    text = (DOCS / "guides" / "operations.md").read_text()
    routes = re.findall(r'add_(get|post)\("(/[^"]*)"', source)
    assert routes
    for method, route in routes:
        shown = re.sub(r"\{node\}", "NAME", re.sub(r"\{job_id\}", "JOB_ID", route))
        shown = shown.replace("{flow_id}", "FLOW_ID")
        if shown.startswith("/live/"):
            assert f"`{shown}`" in text, f"operations.md lacks the route {shown}"
        else:
            assert f"`{method.upper()} {shown}`" in text, f"operations.md lacks {method} {route}"


def test_the_metrics_reference_names_every_metric() -> None:
    source = (ROOT / "reactor" / "ops" / "metrics.py").read_text()
    text = (DOCS / "reference" / "metrics.md").read_text()
    names = set(re.findall(r'"(reactor_[a-z_]+)"', source))
    assert names
    missing = [name for name in names if name not in text]
    assert not missing, f"docs/reference/metrics.md lacks: {missing}"


def _slug(heading: str) -> str:
    """The anchor MkDocs gives a heading (Python-Markdown's toc slugify)."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_the_readme_links_into_the_docs_resolve() -> None:
    """MkDocs checks the docs' own links; the README is not part of the site, so this checks its."""
    links = re.findall(r"\]\(([^)#\s]+)(?:#([\w-]+))?\)", (ROOT / "README.md").read_text())
    local = [(path, anchor) for path, anchor in links if "://" not in path]
    assert len(local) > 20
    for path, anchor in local:
        target = ROOT / path
        assert target.is_file(), f"README links to a missing file: {path}"
        if anchor:
            headings = re.findall(r"^#+ (.*)$", target.read_text(), re.M)
            assert anchor in {_slug(h) for h in headings}, f"README: no #{anchor} in {path}"


def test_the_configuration_reference_names_every_option_variable() -> None:
    text = (DOCS / "reference" / "configuration.md").read_text()
    variables = {
        name
        for _, parser in _parsers(build_parser())
        for name in re.findall(r"env\s+(REACTOR_\w+)", parser.format_help())
    }
    assert len(variables) > 10
    missing = sorted(name for name in variables if f"`{name}`" not in text)
    assert not missing, f"docs/reference/configuration.md lacks: {missing}"
