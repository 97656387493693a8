"""Edit a dotenv file in place: set some keys, disable others, leave every other line alone."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
DISABLED_NOTE = "# disabled by lakebase-memory configure: "


def quote(value: str) -> str:
    """A dotenv value: bare when safe, else double-quoted with escapes."""
    if re.fullmatch(r"[A-Za-z0-9_./:@+,=-]*", value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def update_env_file(
    path: Path, values: Mapping[str, str], disable: Iterable[str] = ()
) -> list[str]:
    """Set `values` (replacing each key's line, or appending), comment out the `disable` keys.

    Returns a description of each change. Comments, blank lines and other keys are kept as
    they are, in their order.
    """
    lines = path.read_text().splitlines() if path.exists() else []
    pending = dict(values)
    disabled = set(disable) - set(values)
    changes: list[str] = []
    out: list[str] = []
    for line in lines:
        match = _ASSIGNMENT.match(line)
        key = match.group(1) if match else None
        if key in pending:
            new = f"{key}={quote(pending.pop(key))}"
            if new != line:
                changes.append(f"set {key}")
            out.append(new)
        elif key in disabled:
            out.append(DISABLED_NOTE + line)
            changes.append(f"disabled {key}")
        else:
            out.append(line)
    for key, value in pending.items():
        out.append(f"{key}={quote(value)}")
        changes.append(f"set {key}")
    path.write_text("\n".join(out) + "\n")
    return changes
