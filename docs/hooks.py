"""MkDocs hook: the docstrings' Sphinx roles (``:meth:`stop```) render as plain code, not as
``:meth:`` followed by code."""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):(?=<code>)")


def on_page_content(html: str, **_: Any) -> str:
    """Drop the role names mkdocstrings leaves in front of a reference."""
    return _ROLE.sub("", html)
