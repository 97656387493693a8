"""Reading a thread through a saver and replaying it into another: every checkpoint, oldest
first, then its pending writes, as the saver's public API writes them."""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP, BaseCheckpointSaver, CheckpointTuple
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from lakebase_memory.memory.saver.aio import AsyncLinearPostgresSaver
from lakebase_memory.memory.saver.transfer.batches import (
    namespace_of,
)
from lakebase_memory.memory.saver.transfer.report import (
    ReadCheckpoint,
    TransferError,
)
from lakebase_memory.memory.saver.transfer.thread_state import (
    thread_bytes,
)


async def thread_snapshot(
    conn: AsyncConnection[Any], saver: AsyncLinearPostgresSaver, thread_id: str
) -> tuple[int, list[ReadCheckpoint]]:
    """The thread's size and checkpoints as of one moment, without locking out its writers.

    A repeatable-read transaction: the checkpoints, their log entries and their writes agree
    even if a turn commits between the queries.
    """
    async with conn.transaction(force_rollback=True):
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return (
            await thread_bytes(conn, thread_id, log=True),
            await read_thread(conn, saver, thread_id),
        )


async def read_thread(
    conn: AsyncConnection[Any], saver: AsyncLinearPostgresSaver, thread_id: str
) -> list[ReadCheckpoint]:
    """Every checkpoint of the thread (all namespaces), oldest first, with its writes.

    Values come from the linear saver, which reads both formats; the writes' task paths and
    positions, which a `CheckpointTuple` does not carry, come from `checkpoint_writes`.
    """
    items = [item async for item in saver.alist({"configurable": {"thread_id": thread_id}})]
    items.sort(key=lambda i: (i.config["configurable"]["checkpoint_id"], namespace_of(i)))
    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel "
            "FROM checkpoint_writes WHERE thread_id = %s",
            (thread_id,),
        )
        for row in await cur.fetchall():
            rows[(row["checkpoint_ns"], row["checkpoint_id"])].append(row)
    checkpoints = []
    for item in items:
        key = (namespace_of(item), item.config["configurable"]["checkpoint_id"])
        checkpoints.append(ReadCheckpoint(item, _write_calls(thread_id, item, rows.get(key, []))))
    return checkpoints


def _write_calls(
    thread_id: str, item: CheckpointTuple, rows: list[dict[str, Any]]
) -> list[tuple[str, str, list[tuple[str, Any]]]]:
    """The `put_writes` calls that store exactly these rows again, positions included.

    `put_writes` numbers a task's writes by their place in the call (special channels such as
    interrupts have fixed negative positions), so each task's rows become one call with each
    regular write at its position; a gap is filled by one of the task's special writes, as the
    original call must have had.
    """
    values: dict[tuple[str, str], deque[Any]] = defaultdict(deque)
    for task_id, channel, value in item.pending_writes or []:
        values[(task_id, channel)].append(value)
    if len(rows) != sum(len(v) for v in values.values()):
        raise TransferError(
            f"thread {thread_id!r}: checkpoint {item.config['configurable']['checkpoint_id']} "
            "changed while it was read; run the command again"
        )
    tasks: dict[tuple[str, str], list[tuple[dict[str, Any], Any]]] = defaultdict(list)
    # A task's values arrive in position order, whatever order the saver sorts tasks in.
    for row in sorted(rows, key=lambda r: (r["task_id"], r["channel"], r["idx"])):
        value = values[(row["task_id"], row["channel"])].popleft()
        tasks[(row["task_id"], row["task_path"])].append((row, value))
    calls = []
    for (task_id, task_path), writes in sorted(tasks.items()):
        special = [(r, v) for r, v in writes if r["channel"] in WRITES_IDX_MAP]
        regular = {r["idx"]: (r, v) for r, v in writes if r["channel"] not in WRITES_IDX_MAP}
        length = max(regular, default=-1) + 1
        fillers = deque(special)
        ordered: list[tuple[dict[str, Any], Any]] = []
        for position in range(length):
            if position in regular:
                ordered.append(regular[position])
            elif fillers:
                ordered.append(fillers.popleft())
            else:
                ordered = []
                break
        ordered += fillers
        wrong = [r for r, _ in special if r["idx"] != WRITES_IDX_MAP[r["channel"]]]
        if len(ordered) != len(writes) or wrong or min(regular, default=0) < 0:
            raise TransferError(
                f"thread {thread_id!r}: the writes of task {task_id!r} have positions "
                "LangGraph's put_writes cannot reproduce (rows edited by hand?); the thread "
                "was left as it is"
            )
        calls.append((task_id, task_path, [(r["channel"], v) for r, v in ordered]))
    return calls


async def replay_thread(
    saver: BaseCheckpointSaver[Any], thread_id: str, checkpoints: list[ReadCheckpoint]
) -> None:
    """Put every checkpoint, oldest first, with all its channel versions, then its writes."""
    for checkpoint in checkpoints:
        item = checkpoint.item
        ns = namespace_of(item)
        parent = (item.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        config: RunnableConfig = {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                **({"checkpoint_id": parent} if parent else {}),
            }
        }
        stored = await saver.aput(
            config,
            item.checkpoint,
            item.metadata,
            dict(item.checkpoint["channel_versions"]),
        )
        own = {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": stored["configurable"]["checkpoint_id"],
            }
        }
        for task_id, task_path, writes in checkpoint.calls:
            await saver.aput_writes(own, writes, task_id, task_path)
