"""What a memory's value may hold: PostgreSQL's jsonb refuses NUL characters and text that is
not valid Unicode. Checked before a write by the API and the agent's tool alike."""

from __future__ import annotations

from typing import Any


def unstorable_text(value: dict[str, Any]) -> str | None:
    """Why PostgreSQL's jsonb would refuse a string of `value` (its keys included), if it
    would. Walked without recursion: the body parser allows deeper nesting than Python's
    stack."""
    pending: list[Any] = [value]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            pending.extend(node.keys())
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, str):
            if "\x00" in node:
                return "may not contain NUL (\\u0000) characters: remove them and send it again"
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return (
                    "has text that is not valid Unicode (an unpaired surrogate such as "
                    "\\ud800): send the text as UTF-8"
                )
    return None
