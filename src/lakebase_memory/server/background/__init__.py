"""Background responses (issue 15): stored, resumable, cancellable turns.

A background turn runs in a task of the server, not in its HTTP request. Its response row and
every event of its stream are stored (`ai_chatbot.responses`, `ai_chatbot.response_events`),
so any process of the app can answer `GET /responses/{id}`, replay the stream from any
sequence number and follow it live to its end, or cancel it.

- `rows`: the SQL;
- `runner`: runs a prepared turn, persists its events in batches, heartbeats its lease,
  watches for a cancel;
- `subscriptions`: replay-then-follow of a response's events (in-process wake-ups, polling
  for another process's responses);
- `recovery`: the sweeper that fails responses whose owner died, and retention.
"""

from lakebase_memory.server.background.recovery import ResponseMaintenance
from lakebase_memory.server.background.rows import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    ResponseRow,
    ResponseRows,
)
from lakebase_memory.server.background.runner import BackgroundRunner
from lakebase_memory.server.background.service import BackgroundResponses, start_runtime
from lakebase_memory.server.background.subscriptions import Wakeups, follow

__all__ = [
    "ACTIVE_STATUSES",
    "FINISHED_STATUSES",
    "BackgroundResponses",
    "BackgroundRunner",
    "ResponseMaintenance",
    "ResponseRow",
    "ResponseRows",
    "Wakeups",
    "follow",
    "start_runtime",
]
