"""CURVE key files: generating key pairs, reading them, and loading the allow directory."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from reactor.errors import ConfigError
from reactor.wire.protocol import MAX_NAME_LEN

log = logging.getLogger("reactor.security")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"  # noqa: S105 - a file suffix, not a secret

#: Distinct refusals remembered for rate-limited logging (a peer could vary names forever).
MAX_REFUSALS_TRACKED = 1024

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


def valid_key(key: bytes | None) -> bool:
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
    if not valid_key(public) or (secret is not None and not valid_key(secret)):
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
