"""``reactor keys``: make CURVE key pairs; CURVE options for commands that start a distributor."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from reactor.cli import exits
from reactor.errors import ConfigError

log = logging.getLogger("reactor.cli")


def add_parser(sub: Any) -> None:
    """Register the ``keys`` subcommand."""
    p = sub.add_parser(
        "keys",
        help="make CURVE keys for encrypted, authenticated connections",
        description="Manage the CURVE keys that encrypt and authenticate node connections.",
    )
    actions = p.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    gen = actions.add_parser(
        "generate",
        help="write a key pair: DIR/NAME.key (public) and DIR/NAME.key_secret",
        description=(
            "Write a CURVE key pair. For a node, NAME must be the node's name: the distributor "
            "lets a public key connect only as the node its file is named after. Copy NAME.key "
            "into the distributor's allow directory; keep NAME.key_secret on the node (mode 0600)."
        ),
    )
    gen.add_argument("directory", metavar="DIR", help="where to write the key files")
    gen.add_argument(
        "--name", default="distributor", help="the key's name: a node's name (default: distributor)"
    )
    gen.add_argument("--force", action="store_true", help="replace existing key files")
    p.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    """Run a ``keys`` action; 0 on success, 2 on a usage or file error."""
    from reactor.net.security import generate_keys

    try:
        public, secret = generate_keys(ns.directory, ns.name, overwrite=ns.force)
    except (ConfigError, OSError) as exc:
        print(f"reactor keys: {exc}", file=sys.stderr)
        return exits.USAGE
    log.info(
        "wrote CURVE key pair %r", ns.name, extra={"public": str(public), "secret": str(secret)}
    )
    print(f"public key: {public}")
    print(f"secret key: {secret}  (keep it private)")
    return exits.OK


def add_server_curve_arguments(p: argparse.ArgumentParser) -> None:
    """The CURVE options of a command that starts a distributor (``reactor demo``)."""
    p.add_argument(
        "--curve-secret", metavar="FILE", help="the distributor's CURVE .key_secret file"
    )
    p.add_argument(
        "--curve-allow",
        metavar="DIR",
        help="directory of allowed node public keys, one NAME.key per node",
    )


def curve_server(ns: argparse.Namespace) -> Any:
    """The distributor's CurveServer from :func:`add_server_curve_arguments` options, or None.

    Raises:
        ConfigError: only one of the two options, or bad key files (nothing starts then).
    """
    secret = getattr(ns, "curve_secret", None)
    allow = getattr(ns, "curve_allow", None)
    if not (secret or allow):
        return None
    if not (secret and allow):
        raise ConfigError("CURVE needs both --curve-secret and --curve-allow")
    from reactor.net.security import CurveServer

    return CurveServer.from_files(secret, allow)
