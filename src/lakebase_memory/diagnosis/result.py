"""What one check found: its status, the cause in words, and the exact fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"  # a check it depends on failed, so it could not run
    NOT_APPLICABLE = "not applicable"  # e.g. Databricks checks on a plain PostgreSQL target


# An en dash for "did not run" / "nothing to check", as the CLI's brief shows it.
DASH = "\u2013"
SYMBOLS = {Status.PASS: "✓", Status.FAIL: "✗", Status.SKIPPED: DASH, Status.NOT_APPLICABLE: DASH}


@dataclass(frozen=True)
class CheckResult:
    """One line of the diagnosis. `fix` is set on every failure: a command or SQL to run."""

    name: str
    status: Status
    detail: str
    fix: str | None = None
    items: tuple[str, ...] = field(default=())  # what is missing, one entry per thing

    @property
    def ok(self) -> bool:
        """Passed, or had nothing to check here; a skipped check is not ok."""
        return self.status in (Status.PASS, Status.NOT_APPLICABLE)

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.status]

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "status": self.status.value,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
            "items": list(self.items),
        }


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.PASS, detail)


def failed(name: str, detail: str, fix: str, items: tuple[str, ...] = ()) -> CheckResult:
    return CheckResult(name, Status.FAIL, detail, fix, items)


def not_applicable(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.NOT_APPLICABLE, detail)


def skipped(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.SKIPPED, detail)
