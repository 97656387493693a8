"""`lakebase-memory doctor`: ordered checks from the configuration to the app's privileges,
each reporting its cause and the exact fix."""

from lakebase_memory.diagnosis.result import CheckResult, Status
from lakebase_memory.diagnosis.runner import CHECKS, Check, diagnose

__all__ = ["CHECKS", "Check", "CheckResult", "Status", "diagnose"]
