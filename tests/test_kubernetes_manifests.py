"""The Kubernetes manifests in examples/kubernetes name the real endpoints, flags and settings:
their probes ask the paths the metrics server answers on the port the node serves, the node's
arguments parse, and the grace period is above the node's shutdown_grace."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from reactor.cli import build_parser
from reactor.config import DEFAULTS

MANIFESTS = Path(__file__).resolve().parent.parent / "examples" / "kubernetes"


def deployments() -> list[dict[str, Any]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        found += [
            d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Deployment"
        ]
    return found


def node_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def shutdown_grace(container: dict[str, Any]) -> float:
    """The node's shutdown_grace: its --set, else its REACTOR_SHUTDOWN_GRACE, else the default."""
    args = container["args"]
    for i, arg in enumerate(args):
        if arg == "--set" and args[i + 1].startswith("shutdown_grace="):
            return float(args[i + 1].split("=", 1)[1])
    for env in container.get("env", []):
        if env["name"] == "REACTOR_SHUTDOWN_GRACE":
            return float(env["value"])
    return float(DEFAULTS["shutdown_grace"])


def test_there_is_a_node_deployment() -> None:
    (deployment,) = deployments()
    assert node_container(deployment)["args"][:2] == ["reactor", "node"]


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: d["metadata"]["name"])
def test_the_node_arguments_parse_and_serve_the_probed_port(deployment: dict[str, Any]) -> None:
    container = node_container(deployment)
    args = container["args"]
    ns = build_parser().parse_args(args[1:])  # the real CLI: every flag exists
    assert ns.metrics_port == int(option(args, "--metrics-port"))
    assert ns.metrics_host == "0.0.0.0"  # the kubelet probes the pod's address
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert port == ns.metrics_port
    # the liveness probe waits longer than one ping does (reactor.ops.health.PING_WAIT)
    from reactor.ops.health import PING_WAIT, STALE_AFTER

    liveness = container["livenessProbe"]
    assert liveness["timeoutSeconds"] > PING_WAIT
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= STALE_AFTER


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: d["metadata"]["name"])
def test_the_grace_period_is_above_shutdown_grace_and_pre_stop_waits_for_the_node(
    deployment: dict[str, Any],
) -> None:
    container = node_container(deployment)
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > shutdown_grace(container) + 5  # room for the hand-back's acknowledgements
    command = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert re.search(r"kill -TERM 1\b", command)  # the node's graceful stop (SIGTERM)
    assert "while kill -0 1" in command  # ... and it waits until the node has exited
