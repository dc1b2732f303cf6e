"""CURVE for reactor sockets: key files, the distributor's allow-list and ZAP handler, node keys.

Opt-in and fail closed. A distributor given a :class:`CurveServer` encrypts every connection and
admits only the node keys in its allow directory, each bound to the node name its file is named
after (``worker_1.key`` may only be used by ``worker_1``). A node given a :class:`CurveClient`
connects encrypted and checks the distributor's public key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from reactor.errors import ConfigError
from reactor.net import transport
from reactor.net.security.guard import Guard
from reactor.net.security.keys import (
    MAX_REFUSALS_TRACKED,
    PUBLIC_SUFFIX,
    SECRET_SUFFIX,
    ZAP_ENDPOINT,
    AllowList,
    generate_keys,
    load_allow_list,
    read_key_file,
    read_secret_key_file,
    valid_key,
)
from reactor.net.security.zap import ZAP_HANDLERS

__all__ = [
    "PUBLIC_SUFFIX",
    "SECRET_SUFFIX",
    "ZAP_ENDPOINT",
    "AllowList",
    "CurveClient",
    "CurveServer",
    "generate_keys",
    "load_allow_list",
    "read_key_file",
    "read_secret_key_file",
]

log = logging.getLogger("reactor.security")


class CurveClient:
    """A node's CURVE settings: its key pair and the distributor's public key (all z85).

    Args:
        public_key: the node's public key.
        secret_key: the node's secret key.
        server_key: the distributor's public key; the connection fails unless it matches.
    """

    def __init__(self, *, public_key: bytes, secret_key: bytes, server_key: bytes) -> None:
        for label, key in (("public", public_key), ("secret", secret_key), ("server", server_key)):
            if not valid_key(key):
                raise ConfigError(f"the CURVE {label} key is not 40 z85 characters")
        self.public_key = public_key
        self._secret_key = secret_key
        self.server_key = server_key

    @classmethod
    def from_files(cls, secret_file: str | Path, server_public_file: str | Path) -> CurveClient:
        """Load the node's ``.key_secret`` file and the distributor's ``.key`` file.

        Raises:
            ConfigError: a file is missing or invalid.
        """
        public, secret = read_secret_key_file(secret_file)
        server, _ = read_key_file(server_public_file)
        return cls(public_key=public, secret_key=secret, server_key=server)

    def apply_client(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` a CURVE client (before it connects)."""
        sock.curve_publickey = self.public_key
        sock.curve_secretkey = self._secret_key
        sock.curve_serverkey = self.server_key

    def __repr__(self) -> str:
        return f"CurveClient(public_key={self.public_key.decode()!r})"


# -- distributor side -----------------------------------------------------------------------------


class CurveServer:
    """A distributor's CURVE settings: its key pair and the allow-list of node keys.

    Args:
        public_key: the distributor's public key (z85).
        secret_key: the distributor's secret key (z85).
        allow_dir: the directory of allowed node public keys, re-read by :meth:`reload`.
        allowed: the allow-list already read from ``allow_dir``.

    Raises:
        ConfigError: an invalid key, or an empty allow-list.
    """

    def __init__(
        self, *, public_key: bytes, secret_key: bytes, allow_dir: str | Path, allowed: AllowList
    ) -> None:
        if not (valid_key(public_key) and valid_key(secret_key)):
            raise ConfigError("the distributor's CURVE keys are not 40 z85 characters each")
        if not allowed:
            raise ConfigError(
                "CURVE needs a non-empty allow-list of node keys: with none, no node could connect"
            )
        self.public_key = public_key
        self._secret_key = secret_key
        self.allow_dir = Path(allow_dir)
        #: The allow-list in force: z85 key -> the node names it may use. Read it, never change
        #: it: :meth:`reload` replaces it whole, so a reader on another thread sees one or the
        #: other. (The guard reads it on every frame, so it is an attribute, not a copy.)
        self.allow_list: AllowList = dict(allowed)
        self.domain = f"reactor-{secrets.token_hex(6)}"
        self._contexts: list[zmq.Context[Any]] = []
        self._guards: list[Guard] = []
        self._closed = False
        self._denials: dict[str, int] = {}

    @classmethod
    def from_files(cls, secret_file: str | Path, allow_dir: str | Path) -> CurveServer:
        """Load the distributor's ``.key_secret`` file and its allow directory.

        Raises:
            ConfigError: a missing or invalid file, or an allow directory that is missing, empty,
                or holds a secret key file.
        """
        public, secret = read_secret_key_file(secret_file)
        return cls(
            public_key=public,
            secret_key=secret,
            allow_dir=allow_dir,
            allowed=load_allow_list(allow_dir),
        )

    @property
    def allowed(self) -> dict[str, frozenset[str]]:
        """The current allow-list: z85 public key -> the node names it may use."""
        return dict(self.allow_list)

    @property
    def denied(self) -> dict[str, int]:
        """Connections refused at the handshake, per z85 key not in the allow-list."""
        return dict(self._denials)

    def reload(self) -> None:
        """Re-read the allow directory; nodes whose key was removed get no more jobs at once.

        Their open connections stay up but carry nothing: their messages are dropped and the
        distributor treats them as gone (their unacknowledged jobs go to other nodes); they cannot
        reconnect. An allow directory left empty refuses every node (with a warning).

        Raises:
            ConfigError: the directory is missing or holds an invalid file; the previous
                allow-list stays in force.
        """
        try:
            allowed = load_allow_list(self.allow_dir, allow_empty=True)
        except ConfigError as exc:
            log.error("CURVE allow-list not reloaded, the previous one stays in force: %s", exc)
            raise
        before = set(self.allow_list)
        self.allow_list = allowed
        log.info(
            "CURVE allow-list reloaded from %s: %d keys (%d added, %d removed)",
            self.allow_dir,
            len(allowed),
            len(set(allowed) - before),
            len(before - set(allowed)),
        )
        if not allowed:
            log.warning("the CURVE allow-list is empty: every node is refused")
        for guard in self._guards:
            guard.revoke()

    def reload_on_sighup(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Reload on SIGHUP (Unix, main thread); returns a function that removes the handler."""

        def on_hup() -> None:
            with contextlib.suppress(ConfigError):  # reload() logged it; keep serving
                self.reload()

        def remove() -> None:
            loop.remove_signal_handler(signal.SIGHUP)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        return remove

    def apply_server(self, sock: zmq.Socket[Any]) -> transport.PeerGuard | None:
        """Make ``sock`` a CURVE server that admits only the allow-list (before it binds).

        Starts the process's ZAP handler if needed, sets ``ZAP_DOMAIN`` with
        ``ZAP_ENFORCE_DOMAIN`` (no handler means no connection), and, on a ROUTER, returns the
        guard that binds each peer's routing id to its key: pass it to the socket's
        :class:`~reactor.net.transport.Endpoint`.

        Raises:
            ConfigError: the server is closed, libzmq lacks CURVE or ZAP enforcement, or
                another ZAP handler owns the context.
        """
        if self._closed:
            raise ConfigError("this CurveServer is closed; load a new one")
        if not zmq.has("curve"):
            raise ConfigError("this libzmq was built without CURVE support")
        if not hasattr(zmq, "ZAP_ENFORCE_DOMAIN"):
            raise ConfigError(
                f"libzmq {zmq.zmq_version()} cannot enforce ZAP; reactor's CURVE needs 4.3+"
            )
        ctx = sock.context
        if ctx not in self._contexts:
            ZAP_HANDLERS.register(ctx, self.domain, self)
            self._contexts.append(ctx)
        sock.curve_server = True
        sock.curve_secretkey = self._secret_key
        sock.zap_domain = self.domain.encode()
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        if sock.type == zmq.ROUTER:
            # No handover: a connected node's routing id cannot be taken over by another
            # connection, even one with a valid key; it changes hands only after a disconnect,
            # which the guard sees. (A CURVE node that reconnects while its old connection is
            # still up redials until the old one is gone: see redial.Redialer.)
            sock.setsockopt(zmq.ROUTER_HANDOVER, 0)
            guard = Guard(self, sock)
            self._guards.append(guard)
            return guard
        return None

    def zap_allows(self, key: bytes) -> bool:
        """The ZAP thread asks: may this z85 key connect at all?"""
        text = key.decode("ascii", "replace")
        if text in self.allow_list:
            return True
        count = self._denials.get(text, 0) + 1
        if count == 1 and len(self._denials) >= MAX_REFUSALS_TRACKED:
            self._denials.clear()
        self._denials[text] = count
        if count <= 3 or count % 1000 == 0:
            log.warning(
                "refused a connection from CURVE key %s: not in the allow-list %s (%d so far)",
                text,
                self.allow_dir,
                count,
            )
        return False

    def close(self) -> None:
        """Stop authenticating for this server (its sockets refuse every new connection)."""
        if self._closed:
            return
        self._closed = True
        for guard in self._guards:
            guard.close()
        self._guards.clear()
        for ctx in self._contexts:
            ZAP_HANDLERS.unregister(ctx, self.domain)
        self._contexts.clear()

    def __repr__(self) -> str:
        key = self.public_key.decode()
        return f"CurveServer(public_key={key!r}, allow_dir={str(self.allow_dir)!r})"
