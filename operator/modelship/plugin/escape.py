"""Terminal safety: text from the cluster is shown, never obeyed.

Anyone who can annotate a ModelDeployment (or whose words reach a status reason: a model name, a query, an API
error) could otherwise send the SRE's terminal ANSI/OSC sequences (rewrite the screen, set the clipboard with
OSC 52, fake a hyperlink) or bidi overrides that make text read differently than it is. Every control
character (C0, DEL, C1), format character (bidi embeddings/overrides/isolates, zero-width) and line/paragraph
separator is written as a visible escape such as `\\x1b` or `\\u202e`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from modelship.plugin.cluster import ClusterApi

_UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str, keep_newlines: bool = False) -> str:
    """`text` with every control, format and separator character made visible (newlines kept if asked)."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        char if (keep_newlines and char == "\n") or unicodedata.category(char) not in _UNSAFE_CATEGORIES
        or char == " " else _escape(char)
        for char in text
    )


def clean(value: Any) -> Any:
    """A whole object from the API with every string (keys included) escaped, for rendering."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, Mapping):
        return {clean(key): clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean(item) for item in value]
    return value


CLEAR = "\x1b[H\x1b[2J"
"""Our own screen clear for `status --watch`: the only sequence let through, and only at the start of a frame."""


def safe_output(out: Callable[[str], None]) -> Callable[[str], None]:
    """The last guard before the terminal: our line breaks and frame clear survive, nothing else that steers it."""

    def write(text: str) -> None:
        head = CLEAR if text.startswith(CLEAR) else ""
        out(head + escape(text[len(head):], keep_newlines=True))

    return write


class SafeApi:
    """A ClusterApi whose reads come back escaped, so every renderer and message sees only inert text.

    `whoami` is passed through untouched: it is written to the requested-by annotation, where the API server
    compares it with the authenticated name (and the plugin escapes it when printing).
    """

    def __init__(self, api: ClusterApi) -> None:
        self._api = api

    @property
    def default_namespace(self) -> str:
        return self._api.default_namespace

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(clean(self._api.get(namespace, name)))

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        return [dict(clean(item)) for item in self._api.list(namespace)]

    def patch_annotations(self, namespace: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
        return dict(clean(self._api.patch_annotations(namespace, name, annotations)))

    def whoami(self) -> str:
        return self._api.whoami()

    def watch(self, namespace: str, name: str, timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
        for obj in self._api.watch(namespace, name, timeout_s=timeout_s):
            yield dict(clean(obj))

    def watch_collection(self, namespace: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        for kind, obj in self._api.watch_collection(namespace):
            yield kind, dict(clean(obj))
