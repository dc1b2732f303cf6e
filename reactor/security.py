"""CURVE for reactor sockets: key files, the distributor's allow-list and ZAP handler, node keys.

Opt-in and fail closed. A distributor given a :class:`CurveServer` encrypts every connection and
admits only the node keys in its allow directory, each bound to the node name its file is named
after (``worker_1.key`` may only be used by ``worker_1``). A node given a :class:`CurveClient`
connects encrypted and checks the distributor's public key.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from reactor import transport
from reactor.errors import ConfigError
from reactor.protocol import MAX_NAME_LEN

log = logging.getLogger("reactor.security")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"  # noqa: S105 - a file suffix, not a secret

#: Distinct refusals remembered for rate-limited logging (a peer could vary names forever).
_MAX_REFUSALS_TRACKED = 1024

AllowList = dict[str, frozenset[str]]  # z85 public key -> the node names it may use


# -- key files ------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if (
        not isinstance(name, str)
        or not name
        or len(name) > MAX_NAME_LEN
        or name.startswith(".")
        or any(sep in name for sep in ("/", "\\", os.sep, "\0"))
    ):
        raise ConfigError(
            f"{name!r} cannot name a key: use the node's name (no path separators, not starting "
            f"with '.', at most {MAX_NAME_LEN} characters)"
        )
    return name


def _write_key_file(path: Path, public: bytes, secret: bytes | None, *, overwrite: bool) -> None:
    kind = "Secret" if secret else "Public"
    lines = [
        f"#   ****  Generated on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC by reactor keys",
        f"#   ZeroMQ CURVE **{kind}** Certificate",
    ]
    if secret:
        lines.append("#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.")
    lines += ["", "metadata", "curve", f'    public-key = "{public.decode()}"']
    if secret:
        lines.append(f'    secret-key = "{secret.decode()}"')
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    # The mode applies at creation, so a secret key is never readable by others, even briefly.
    fd = os.open(path, flags, 0o600 if secret else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def generate_keys(
    directory: str | Path, name: str, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write a new CURVE key pair as ``DIR/NAME.key`` (public) and ``DIR/NAME.key_secret``.

    The files use ZeroMQ's certificate format (``zmq.auth.load_certificate`` reads them); the
    secret file is created with mode 0600.

    Returns:
        The public and secret file paths.

    Raises:
        ConfigError: a bad name, or the files exist and ``overwrite`` is False.
    """
    _check_name(name)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    public_file = root / f"{name}{PUBLIC_SUFFIX}"
    secret_file = root / f"{name}{SECRET_SUFFIX}"
    if not overwrite:
        for path in (public_file, secret_file):
            if path.exists():
                raise ConfigError(f"{path} already exists; pass overwrite (--force) to replace it")
    public, secret = zmq.curve_keypair()
    if overwrite:
        for path in (public_file, secret_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # so the new secret file is created 0600, whatever the old mode
    try:
        _write_key_file(secret_file, public, secret, overwrite=False)
        _write_key_file(public_file, public, None, overwrite=False)
    except FileExistsError as exc:
        raise ConfigError(f"{exc.filename} already exists; pass overwrite to replace it") from None
    return public_file, secret_file


def _valid_key(key: bytes | None) -> bool:
    if key is None or len(key) != 40:
        return False
    try:
        return len(z85.decode(key)) == 32
    except Exception:
        return False


def read_key_file(path: str | Path) -> tuple[bytes, bytes | None]:
    """The (public, secret) z85 keys of a key file; secret is None in a public key file.

    Raises:
        ConfigError: the file is missing, unreadable or holds no valid key.
    """
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the CURVE key file {str(path)!r}: {exc}") from None
    if not _valid_key(public) or (secret is not None and not _valid_key(secret)):
        raise ConfigError(
            f"{str(path)!r} does not hold a valid CURVE key (40 z85 characters); make key files "
            "with `reactor keys generate`"
        )
    return public, secret


def read_secret_key_file(path: str | Path) -> tuple[bytes, bytes]:
    """The (public, secret) z85 keys of a ``.key_secret`` file.

    Raises:
        ConfigError: the file is missing, invalid, or holds only a public key.
    """
    public, secret = read_key_file(path)
    if secret is None:
        raise ConfigError(
            f"{str(path)!r} holds only a public key; give the {SECRET_SUFFIX} file made "
            "alongside it by `reactor keys generate`"
        )
    return public, secret


def load_allow_list(directory: str | Path, *, allow_empty: bool = False) -> AllowList:
    """Read an allow directory: each ``NAME.key`` lets its public key connect as node NAME.

    The same key may appear under several names (it may then use any of them).

    Raises:
        ConfigError: the directory is missing, holds a secret key file or an invalid key file,
            or holds no key file (unless ``allow_empty``).
    """
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError(
            f"the CURVE allow directory {str(root)!r} does not exist; create it and copy each "
            f"node's NAME{PUBLIC_SUFFIX} public key file into it"
        )
    names: dict[str, set[str]] = {}
    for path in sorted(root.iterdir()):
        if path.name.endswith(SECRET_SUFFIX):
            raise ConfigError(
                f"the allow directory holds a secret key file, {str(path)!r}: only public "
                f"{PUBLIC_SUFFIX} files belong there; move it away and issue that node a new key"
            )
        if not path.name.endswith(PUBLIC_SUFFIX) or not path.is_file():
            continue
        public, _ = read_key_file(path)
        name = _check_name(path.name[: -len(PUBLIC_SUFFIX)])
        names.setdefault(public.decode(), set()).add(name)
    if not names and not allow_empty:
        raise ConfigError(
            f"the CURVE allow directory {str(root)!r} holds no {PUBLIC_SUFFIX} file, so no node "
            "could connect; copy each node's public key file into it"
        )
    return {key: frozenset(n) for key, n in names.items()}


# -- node side ------------------------------------------------------------------------------------


class CurveClient:
    """A node's CURVE settings: its key pair and the distributor's public key (all z85).

    Args:
        public_key: the node's public key.
        secret_key: the node's secret key.
        server_key: the distributor's public key; the connection fails unless it matches.
    """

    def __init__(self, *, public_key: bytes, secret_key: bytes, server_key: bytes) -> None:
        for label, key in (("public", public_key), ("secret", secret_key), ("server", server_key)):
            if not _valid_key(key):
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


class _ZapThread(threading.Thread):
    """Answers one ZeroMQ context's ZAP requests (RFC 27), off the event loop.

    ZeroMQ has one ZAP endpoint per context, so every CurveServer registers its own ZAP domain
    here; a request for a domain nobody registered (any more), for another mechanism, or from a
    key the domain's allow-list lacks is refused. The reply's user id is the client's z85 key,
    which ZeroMQ then attaches to every frame of that connection (see ``_Guard``).
    """

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        super().__init__(name="reactor-zap", daemon=True)
        self.ctx = ctx
        self.domains: dict[bytes, CurveServer] = {}
        self._stop_address = f"inproc://reactor-zap-stop-{id(self):x}"
        self._ready = threading.Event()
        self._error: zmq.ZMQError | None = None

    def start_and_wait(self) -> None:
        """Start, and return once the ZAP endpoint is bound.

        Raises:
            ConfigError: another ZAP handler owns the context's endpoint.
        """
        self.start()
        self._ready.wait(10)
        if self._error is not None:
            raise ConfigError(
                f"cannot start the CURVE authentication (ZAP) handler: {self._error}; another "
                "ZAP handler already runs in this process on reactor's ZeroMQ context"
            )

    def run(self) -> None:
        zap: zmq.Socket[bytes] = self.ctx.socket(zmq.REP)
        zap.linger = 0
        try:
            zap.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            self._error = exc
            zap.close(linger=0)
            self._ready.set()
            return
        stop: zmq.Socket[bytes] = self.ctx.socket(zmq.PAIR)
        stop.linger = 0
        stop.bind(self._stop_address)
        self._ready.set()
        poller = zmq.Poller()
        poller.register(zap, zmq.POLLIN)
        poller.register(stop, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if stop in ready:
                    return
                if zap in ready:
                    request = zap.recv_multipart()
                    zap.send_multipart(self._answer(request))
        finally:
            zap.close(linger=0)
            stop.close(linger=0)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        request_id = request[1] if len(request) > 1 else b""
        status, text, user = b"400", b"refused", b""
        try:
            if len(request) == 7 and request[0] == b"1.0" and request[5] == b"CURVE":
                server = self.domains.get(request[2])
                if server is not None and len(request[6]) == 32:
                    key = z85.encode(request[6])
                    if server._zap_allows(key):
                        status, text, user = b"200", b"OK", key
                elif server is None:
                    text = b"unknown ZAP domain"
        except Exception:  # a reply is owed whatever happens, or the REP socket jams
            log.exception("the ZAP handler failed on a request; refused it")
            status, text, user = b"500", b"internal error", b""
        return [b"1.0", request_id, status, text, user, b""]

    def halt(self) -> None:
        """Stop the thread and wait for it."""
        if self.is_alive():
            poke: zmq.Socket[bytes] = self.ctx.socket(zmq.PAIR)
            poke.linger = 0
            poke.connect(self._stop_address)
            poke.send(b"stop")
            self.join(10)
            poke.close(linger=0)


class _ZapHandlers:
    """The process's ZAP threads, one per ZeroMQ context, shared by every CurveServer.

    A thread lives as long as its context: stopping and rebinding the endpoint would race with
    sockets still handshaking.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: dict[int, _ZapThread] = {}

    def register(self, ctx: zmq.Context[Any], domain: str, server: CurveServer) -> None:
        with self._lock:
            thread = self._threads.get(id(ctx))
            if thread is None or not thread.is_alive():
                thread = _ZapThread(ctx)
                thread.start_and_wait()
                self._threads[id(ctx)] = thread
            thread.domains[domain.encode()] = server

    def unregister(self, ctx: zmq.Context[Any], domain: str) -> None:
        with self._lock:
            thread = self._threads.get(id(ctx))
            if thread is not None:
                thread.domains.pop(domain.encode(), None)

    def stop(self, ctx: zmq.Context[Any]) -> None:
        """Stop the context's thread (before terminating a private context, and in tests)."""
        with self._lock:
            thread = self._threads.pop(id(ctx), None)
        if thread is not None:
            thread.halt()

    def running(self, ctx: zmq.Context[Any]) -> bool:
        with self._lock:
            thread = self._threads.get(id(ctx))
            return thread is not None and thread.is_alive()


_ZAP = _ZapHandlers()


class _Guard:
    """Binds a ROUTER socket's peers to their CURVE keys, frame by frame.

    ZAP sees a connection's key but not the routing id the node claims, so the binding is checked
    on every frame: its ``User-Id`` (the z85 key, set by the ZAP reply) must be allowed to use the
    frame's routing id. A peer is sent to only while its latest frame passed, on a connection that
    is still up (a disconnect of that connection unbinds it before anything else can take the id).
    """

    def __init__(self, server: CurveServer, sock: zmq.Socket[Any]) -> None:
        self._server = server
        self._sock = sock
        self._monitor = transport.open_monitor(sock, zmq.EVENT_DISCONNECTED)
        self._bound: dict[bytes, tuple[int, str, str]] = {}  # peer -> (fd, key, name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick: Callable[[bytes], None] | None = None
        self._refusals: dict[tuple[bytes, str], int] = {}
        self._closed = False

    # Called by transport.Endpoint, on the loop's thread.

    def bind(self, loop: asyncio.AbstractEventLoop, kick: Callable[[bytes], None]) -> None:
        """Remember the endpoint's loop and how to drop a peer from it."""
        self._loop = loop
        self._kick = kick

    def poll(self) -> None:
        """Unbind the peers of connections that closed (before reading or sending anything)."""
        monitor = self._monitor
        if self._closed or not int(monitor.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            return
        while True:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            except zmq.ZMQError:
                return
            if event["event"] == zmq.EVENT_DISCONNECTED:
                fd = int(event["value"])
                for peer, (peer_fd, _, _) in list(self._bound.items()):
                    if peer_fd == fd:
                        del self._bound[peer]
                        self._drop(peer)

    def admit(self, peer: bytes, frame: zmq.Frame) -> bool:
        """Whether this frame's CURVE key may speak as ``peer``; binds the peer when it may."""
        try:
            key = str(frame.get("User-Id"))
        except zmq.ZMQError:
            key = ""
        try:
            fd = int(frame.get(zmq.SRCFD))
        except zmq.ZMQError:
            fd = -1
        try:
            name = peer.decode()
        except UnicodeDecodeError:
            name = ""
        names = self._server._allowed.get(key)
        if names is None or name not in names:
            self._refuse(peer, key, names)
            if self._bound.pop(peer, None) is not None:
                self._drop(peer)
            return False
        self._bound[peer] = (fd, key, name)
        return True

    def may_send(self, peer: bytes) -> bool:
        """Whether ``peer`` is bound to a key that is still allowed to use its name."""
        bound = self._bound.get(peer)
        if bound is None:
            return False
        names = self._server._allowed.get(bound[1])
        return names is not None and bound[2] in names

    # Called by the server.

    def revoke(self) -> None:
        """Drop every bound peer whose key lost its name (after a reload); any thread."""
        loop = self._loop
        if loop is None or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to drop
            loop.call_soon_threadsafe(self._revoke_now)

    def _revoke_now(self) -> None:
        for peer in list(self._bound):
            if not self.may_send(peer):
                _, key, name = self._bound.pop(peer)
                log.warning(
                    "node %s: its CURVE key %s is no longer in the allow-list; it gets no more "
                    "jobs and its messages are dropped",
                    name,
                    key,
                )
                self._drop(peer, now=True)

    def _drop(self, peer: bytes, *, now: bool = False) -> None:
        if self._kick is None or self._loop is None or self._closed:
            return
        if now:
            self._kick(peer)
        else:  # not from inside the endpoint's read or flush: let it finish first
            self._loop.call_soon(self._kick, peer)

    def _refuse(self, peer: bytes, key: str, names: frozenset[str] | None) -> None:
        marker = (peer[:MAX_NAME_LEN], key)
        count = self._refusals.get(marker, 0) + 1
        if count == 1 and len(self._refusals) >= _MAX_REFUSALS_TRACKED:
            self._refusals.clear()
        self._refusals[marker] = count
        if count == 1 or count % 1000 == 0:
            if names is None:
                why = "its key is not (or no longer) in the allow-list"
            else:
                why = f"its key may only be used by {', '.join(sorted(names))}"
            log.warning(
                "refused %d messages from a peer calling itself %r (CURVE key %s): %s",
                count,
                peer[:80],
                key or "?",
                why,
            )

    def close(self) -> None:
        """Stop watching the socket (the endpoint calls this before closing it)."""
        self._closed = True
        self._bound.clear()
        transport.close_monitor(self._sock, self._monitor)


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
        if not (_valid_key(public_key) and _valid_key(secret_key)):
            raise ConfigError("the distributor's CURVE keys are not 40 z85 characters each")
        if not allowed:
            raise ConfigError(
                "CURVE needs a non-empty allow-list of node keys: with none, no node could connect"
            )
        self.public_key = public_key
        self._secret_key = secret_key
        self.allow_dir = Path(allow_dir)
        self._allowed: AllowList = dict(allowed)
        self.domain = f"reactor-{secrets.token_hex(6)}"
        self._contexts: list[zmq.Context[Any]] = []
        self._guards: list[_Guard] = []
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
        return dict(self._allowed)

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
        before = set(self._allowed)
        self._allowed = allowed
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
        :class:`~reactor.transport.Endpoint`.

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
            _ZAP.register(ctx, self.domain, self)
            self._contexts.append(ctx)
        sock.curve_server = True
        sock.curve_secretkey = self._secret_key
        sock.zap_domain = self.domain.encode()
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        if sock.type == zmq.ROUTER:
            # No handover: a connected node's routing id cannot be taken over by another
            # connection, even one with a valid key; it changes hands only after a disconnect,
            # which the guard sees. (A CURVE node that reconnects while its old connection is
            # still up redials until the old one is gone: see transport._Redialer.)
            sock.setsockopt(zmq.ROUTER_HANDOVER, 0)
            guard = _Guard(self, sock)
            self._guards.append(guard)
            return guard
        return None

    def _zap_allows(self, key: bytes) -> bool:
        """The ZAP thread asks: may this z85 key connect at all?"""
        text = key.decode("ascii", "replace")
        if text in self._allowed:
            return True
        count = self._denials.get(text, 0) + 1
        if count == 1 and len(self._denials) >= _MAX_REFUSALS_TRACKED:
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
            _ZAP.unregister(ctx, self.domain)
        self._contexts.clear()

    def __repr__(self) -> str:
        key = self.public_key.decode()
        return f"CurveServer(public_key={key!r}, allow_dir={str(self.allow_dir)!r})"
