"""``reactor.security``: the public import path of CURVE security (it lives in reactor.net)."""

from __future__ import annotations

from reactor.net.security import (
    PUBLIC_SUFFIX,
    SECRET_SUFFIX,
    ZAP_ENDPOINT,
    AllowList,
    CurveClient,
    CurveServer,
    generate_keys,
    load_allow_list,
    read_key_file,
    read_secret_key_file,
)

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
