"""Moving threads between LangGraph's stock Postgres format and the linear format (issue 6).

The linear savers read threads that LangGraph's stock `PostgresSaver` wrote, so nothing has to
move for a thread to stay usable. Two one-off operations change where a thread's bytes are:

- `import_stock_threads` rewrites stock threads into the linear format, in place: each message
  once in the thread's log instead of a copy of the whole list at every checkpoint, so old
  threads shrink and later turns stay cheap;
- `export_stock_threads` writes threads back in the stock format, in place or into another
  database, so LangGraph's own saver (or any tool that reads its tables) reads them: nobody is
  locked into this project's storage.

Both replay each thread through a saver's public API (`aput` oldest checkpoint first, then
`aput_writes`), so the target format is exactly what that saver writes, with every checkpoint
id, parent, namespace, metadata, channel version and pending write (task id, task path,
position, channel and value) preserved. Each thread moves in one transaction: a reader sees
it entirely before or entirely after, and a failure leaves it as it was. Writers of the linear
format queue on the thread's head row (`ai_chatbot.checkpoint_threads`), which a move locks
first; a thread in the middle of a turn (a live turn lease) is skipped, not waited for.

Both need the connection's `search_path` to reach the checkpoint tables (as for the savers)
and the message log tables to exist (`saver.setup()` or `lakebase-memory setup`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP, BaseCheckpointSaver, CheckpointTuple
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg import AsyncConnection, sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lakebase_memory.database import describe_conninfo
from lakebase_memory.database.borrow import borrow
from lakebase_memory.errors import LakebaseMemoryError
from lakebase_memory.memory.saver.aio import AsyncLinearPostgresSaver
from lakebase_memory.memory.saver.codec import REF_TYPES, is_message_list
from lakebase_memory.memory.saver.ops import MessageLogError

Source = AsyncConnection[Any] | AsyncConnectionPool[Any]
Status = Literal["imported", "exported", "skipped", "failed"]
OnThread = Callable[["ThreadResult"], None]

DEFAULT_BATCH_SIZE = 100
# Rows deserialized at a time while looking for a stock-format message list: a stock thread
# shows one in its first rows, and a long one holds hundreds of megabytes of them.
PROBE_PAGE = 50
# Columns of the thread's head row that describe the thread rather than its storage, kept
# across an import.
KEPT_HEAD_COLUMNS = ("user_id", "created_at", "updated_at")

_LOG = "ai_chatbot.checkpoint_messages"
_HEADS = "ai_chatbot.checkpoint_threads"


class TransferError(LakebaseMemoryError):
    """A thread cannot be moved as asked; the message says why and what to do."""


class TargetUnavailableError(TransferError):
    """The database to export to cannot be reached."""


class UnknownThreadError(TransferError):
    """Thread ids that have no checkpoint in the source database."""

    def __init__(self, thread_ids: Sequence[str]) -> None:
        self.thread_ids = list(thread_ids)
        names = ", ".join(repr(t) for t in self.thread_ids)
        super().__init__(
            f"no checkpoints for thread(s) {names} in the memory database: check the ids "
            "(and that CHECKPOINT_SCHEMA names the schema the threads were saved in)"
        )


@dataclass
class ThreadResult:
    """What happened to one thread. Byte counts are the thread's rows' sizes in PostgreSQL."""

    thread_id: str
    status: Status
    reason: str = ""
    checkpoints: int = 0
    writes: int = 0
    bytes_before: int = 0
    bytes_after: int | None = None


@dataclass
class TransferReport:
    """The outcome of an import or export, thread by thread.

    With `dry_run`, every move was made and then rolled back: the statuses and sizes are what
    the real run would give (except into a target database without the stock tables yet,
    where nothing is written and `bytes_after` stays None).
    """

    direction: Literal["import", "export"]
    target: str  # "in place", or the target database without its password
    dry_run: bool
    threads: list[ThreadResult] = field(default_factory=list)

    def _with(self, *statuses: Status) -> list[ThreadResult]:
        return [t for t in self.threads if t.status in statuses]

    @property
    def moved(self) -> list[ThreadResult]:
        """The threads imported or exported."""
        return self._with("imported", "exported")

    @property
    def skipped(self) -> list[ThreadResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[ThreadResult]:
        return self._with("failed")

    @property
    def bytes_before(self) -> int:
        """The moved threads' size before the move."""
        return sum(t.bytes_before for t in self.moved)

    @property
    def bytes_after(self) -> int | None:
        """The moved threads' size after the move (in the target), None if not measured."""
        sizes = [t.bytes_after for t in self.moved]
        return None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "target": self.target,
            "dry_run": self.dry_run,
            "moved": len(self.moved),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "threads": [asdict(t) for t in self.threads],
        }


class _Skip(Exception):
    """Leave this thread as it is (rolls its transaction back)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Checkpoint:
    """One checkpoint of a thread as read, and its writes as the put_writes calls to replay."""

    item: CheckpointTuple
    calls: list[tuple[str, str, list[tuple[str, Any]]]]  # (task_id, task_path, writes)


# A moved thread: its checkpoints, and its size before and after the move (None: not measured).
_Moved = tuple[list[_Checkpoint], int, int | None]
# Moves one thread (by id) in its own transaction, or raises `_Skip` to leave it as it is.
_Move = Callable[[str], Awaitable[_Moved]]


# -- public API ------------------------------------------------------------------------------


async def import_stock_threads(
    conn_or_pool: Source,
    thread_ids: Sequence[str] | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    serde: SerializerProtocol | None = None,
    on_thread: OnThread | None = None,
) -> TransferReport:
    """Rewrite threads stored in the stock format into the linear format, in place.

    Args:
        conn_or_pool: the memory database (an autocommit connection, or a pool of them).
        thread_ids: the threads to import; None for every thread (listed `batch_size` at a
            time, so a database of millions of threads never sits in memory).
        dry_run: import each thread and roll it back, to see what would change.
        serde: the serializer the savers use (the default `JsonPlusSerializer` otherwise).
        on_thread: called with each thread's result as soon as it is known (progress).

    A thread none of whose channel values is a message list in the stock format (already
    imported, written by the linear saver, or without messages) is skipped, so running this
    twice is harmless. A thread written partly by each saver is imported whole. Rows no
    checkpoint refers to (blobs of no checkpoint's channel versions, writes of a checkpoint
    that does not exist) cannot be read through a saver and are not carried over.

    Raises:
        UnknownThreadError: a named thread has no checkpoints (nothing was changed).
    """
    report = TransferReport("import", "in place", dry_run)
    async with _connection(conn_or_pool) as conn:

        async def move(thread_id: str) -> _Moved:
            saver = AsyncLinearPostgresSaver(conn, serde=serde)
            async with conn.transaction(force_rollback=dry_run):
                head = await _lock_head(conn, thread_id)
                if not await _has_stock_messages(conn, saver, thread_id):
                    linear = head is not None or await _has_references(conn, thread_id)
                    raise _Skip(
                        "already in the linear format"
                        if linear
                        else "no message lists in it: nothing to gain"
                    )
                # Without the head row this transaction added as a lock.
                before = await _thread_bytes(conn, thread_id, log=True, head=head is not None)
                checkpoints = await _read_thread(conn, saver, thread_id)
                await saver.adelete_thread(thread_id)
                await _replay(saver, thread_id, checkpoints)
                await _restore_head(conn, thread_id, head, checkpoints)
                after = await _thread_bytes(conn, thread_id, log=True)
            return checkpoints, before, after

        await _move_each(conn, thread_ids, batch_size, report, on_thread, "imported", move)
    return report


async def export_stock_threads(
    source: Source,
    thread_ids: Sequence[str] | None = None,
    *,
    target: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    serde: SerializerProtocol | None = None,
    on_thread: OnThread | None = None,
) -> TransferReport:
    """Write threads in LangGraph's stock Postgres format, so its own saver reads them.

    Args:
        source: the memory database (an autocommit connection, or a pool of them).
        thread_ids: the threads to export; None for every thread with checkpoints.
        target: None to convert the threads in place (their message-log references become
            full stock blobs; the thread's log entries and head row are removed), or the
            conninfo of another database (or schema, with `options=-csearch_path=...`) where
            LangGraph's `AsyncPostgresSaver` creates its tables and receives the threads. The
            source is not changed then.
        dry_run: export each thread and roll it back (in place, or in a target that already
            has the stock tables; otherwise nothing is written at all).
        serde: the serializer both sides use (the default `JsonPlusSerializer` otherwise).
        on_thread: called with each thread's result as soon as it is known (progress).

    In place, a thread already in the stock format is skipped; into a target, a thread the
    target already has is skipped (delete it there to export it again).

    Raises:
        UnknownThreadError: a named thread has no checkpoints (nothing was changed).
        TargetUnavailableError: the target database cannot be reached.
    """
    where = "in place" if target is None else describe_conninfo(target)
    report = TransferReport("export", where, dry_run)
    async with _connection(source) as conn:
        if target is None:
            move = _exporter_in_place(conn, serde, dry_run)
            await _move_each(conn, thread_ids, batch_size, report, on_thread, "exported", move)
            return report
        try:
            out = await AsyncConnection.connect(
                target, autocommit=True, prepare_threshold=0, row_factory=dict_row
            )
        except psycopg.OperationalError as error:
            cause = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise TargetUnavailableError(
                f"cannot connect to the export target {where}: {cause}. Check the URL and "
                "that its server is running."
            ) from error
        async with out:
            ready = await _has_stock_tables(out)
            if not dry_run:
                await AsyncPostgresSaver(out, serde=serde).setup()  # type: ignore[arg-type]
                ready = True
            move = _exporter_to(conn, out, ready, serde, dry_run)
            await _move_each(conn, thread_ids, batch_size, report, on_thread, "exported", move)
    return report


# -- export ----------------------------------------------------------------------------------


def _exporter_in_place(
    conn: AsyncConnection[Any], serde: SerializerProtocol | None, dry_run: bool
) -> _Move:
    """Exports a thread into the stock format in its own database."""

    async def move(thread_id: str) -> _Moved:
        linear = AsyncLinearPostgresSaver(conn, serde=serde)
        stock = AsyncPostgresSaver(conn, serde=serde)  # type: ignore[arg-type]
        async with conn.transaction(force_rollback=dry_run):
            head = await _lock_head(conn, thread_id)
            if head is None and not await _has_references(conn, thread_id):
                raise _Skip("already in the stock format")
            before = await _thread_bytes(conn, thread_id, log=True, head=head is not None)
            checkpoints = await _read_thread(conn, linear, thread_id)
            await linear.adelete_thread(thread_id)  # rows, log entries and head row
            await _replay(stock, thread_id, checkpoints)
            after = await _thread_bytes(conn, thread_id, log=True)
        return checkpoints, before, after

    return move


def _exporter_to(
    conn: AsyncConnection[Any],
    out: AsyncConnection[Any],
    ready: bool,
    serde: SerializerProtocol | None,
    dry_run: bool,
) -> _Move:
    """Exports a thread into the stock tables of `out` (`ready`: they exist), leaving the
    source as it is."""

    async def move(thread_id: str) -> _Moved:
        linear = AsyncLinearPostgresSaver(conn, serde=serde)
        stock = AsyncPostgresSaver(out, serde=serde)  # type: ignore[arg-type]
        if not ready:  # a dry run into a database without the stock tables: read only
            before, checkpoints = await _snapshot(conn, linear, thread_id)
            return checkpoints, before, None
        async with out.transaction(force_rollback=dry_run):
            if await _exists(out, thread_id):
                raise _Skip(
                    "the target database already has this thread: delete it there "
                    "to export it again"
                )
            before, checkpoints = await _snapshot(conn, linear, thread_id)
            await _replay(stock, thread_id, checkpoints)
            after = await _thread_bytes(out, thread_id, log=False)
        return checkpoints, before, after

    return move


# -- reading and replaying a thread ----------------------------------------------------------


async def _snapshot(
    conn: AsyncConnection[Any], saver: AsyncLinearPostgresSaver, thread_id: str
) -> tuple[int, list[_Checkpoint]]:
    """The thread's size and checkpoints as of one moment, without locking out its writers.

    A repeatable-read transaction: the checkpoints, their log entries and their writes agree
    even if a turn commits between the queries.
    """
    async with conn.transaction(force_rollback=True):
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return (
            await _thread_bytes(conn, thread_id, log=True),
            await _read_thread(conn, saver, thread_id),
        )


async def _read_thread(
    conn: AsyncConnection[Any], saver: AsyncLinearPostgresSaver, thread_id: str
) -> list[_Checkpoint]:
    """Every checkpoint of the thread (all namespaces), oldest first, with its writes.

    Values come from the linear saver, which reads both formats; the writes' task paths and
    positions, which a `CheckpointTuple` does not carry, come from `checkpoint_writes`.
    """
    items = [item async for item in saver.alist({"configurable": {"thread_id": thread_id}})]
    items.sort(key=lambda i: (i.config["configurable"]["checkpoint_id"], _ns(i)))
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
        key = (_ns(item), item.config["configurable"]["checkpoint_id"])
        checkpoints.append(_Checkpoint(item, _write_calls(thread_id, item, rows.get(key, []))))
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


async def _replay(
    saver: BaseCheckpointSaver[Any], thread_id: str, checkpoints: list[_Checkpoint]
) -> None:
    """Put every checkpoint, oldest first, with all its channel versions, then its writes."""
    for checkpoint in checkpoints:
        item = checkpoint.item
        ns = _ns(item)
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


# -- the thread's head row -------------------------------------------------------------------


async def _lock_head(conn: AsyncConnection[Any], thread_id: str) -> dict[str, Any] | None:
    """Lock the thread against linear writers; its head row as it was, None if it had none.

    A thread without a head row gets one for the transaction's length, so that a linear
    writer arriving meanwhile waits for the move instead of writing beside it. A thread in
    the middle of a turn is skipped: the turn will write again.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"INSERT INTO {_HEADS} (thread_id) VALUES (%s) ON CONFLICT (thread_id) DO NOTHING "
            "RETURNING thread_id",
            (thread_id,),
        )
        created = await cur.fetchone() is not None
        await cur.execute(
            f"SELECT to_jsonb(h) AS head, now() AS now FROM {_HEADS} h "
            "WHERE thread_id = %s FOR UPDATE",
            (thread_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    head: dict[str, Any] = row["head"]
    expires = head.get("turn_expires_at")
    if head.get("turn_id") and expires and dt.datetime.fromisoformat(expires) > row["now"]:
        raise _Skip("a turn is running on it: run the command again when it has ended")
    return None if created else head


async def _restore_head(
    conn: AsyncConnection[Any],
    thread_id: str,
    head: dict[str, Any] | None,
    checkpoints: list[_Checkpoint],
) -> None:
    """Give the rewritten thread back its owner, creation time and last activity.

    The saver recreated the head row as for a new thread (now, no owner): retention by age
    and per-user listings would see every imported thread as new. A thread that had no head
    row dates from its checkpoints, and its owner is its chat's.
    """
    stamps = [c.item.checkpoint.get("ts") for c in checkpoints if c.item.checkpoint.get("ts")]
    if head is not None:
        values = {c: head.get(c) for c in KEPT_HEAD_COLUMNS}
    else:
        values = {
            "user_id": None,
            "created_at": min(stamps, default=None),
            "updated_at": max(stamps, default=None),
        }
    assignments: list[sql.Composable] = []
    params: list[Any] = []
    for column in KEPT_HEAD_COLUMNS:
        if column == "user_id":
            assignments.append(
                sql.SQL(
                    'user_id = coalesce(%s::text, h.user_id, (SELECT c."userId" '
                    'FROM ai_chatbot."Chat" c WHERE c."threadId" = h.thread_id))'
                )
            )
            params.append(values["user_id"])
        elif values.get(column) is not None:
            assignments.append(sql.SQL("{} = %s::timestamptz").format(sql.Identifier(column)))
            params.append(values[column])
    if not assignments:
        return
    statement = sql.SQL("UPDATE {} h SET {} WHERE h.thread_id = %s").format(
        sql.SQL(_HEADS), sql.SQL(", ").join(assignments)
    )
    await conn.execute(statement, [*params, thread_id])


# -- what a thread holds ---------------------------------------------------------------------


async def _has_stock_messages(
    conn: AsyncConnection[Any], saver: AsyncLinearPostgresSaver, thread_id: str
) -> bool:
    """Whether a channel value of the thread is a message list stored in the stock format.

    Those are what makes a stock thread grow with the square of its length, and what the
    linear format never stores as a plain blob. Pending writes are not looked at: each holds
    a step's new messages only, and the linear saver stores them as the stock saver does.
    Blobs are read a page at a time (in primary key order); the search stops at the first hit.
    """
    key = ("checkpoint_ns", "channel", "version")
    columns = sql.SQL(", ").join(map(sql.Identifier, key))
    plain = [*REF_TYPES, "empty", "null"]  # types that cannot hold a stock message list
    after: list[Any] = []
    async with conn.cursor(binary=True, row_factory=dict_row) as cur:
        while True:
            page_after = sql.SQL("")
            if after:
                page_after = sql.SQL("AND ({}) > (%s, %s, %s)").format(columns)
            await cur.execute(
                sql.SQL(
                    "SELECT {columns}, type, blob FROM checkpoint_blobs "
                    "WHERE thread_id = %s AND type <> ALL(%s) {page_after} "
                    "ORDER BY {columns} LIMIT %s"
                ).format(columns=columns, page_after=page_after),
                [thread_id, plain, *after, PROBE_PAGE],
            )
            page = await cur.fetchall()
            for row in page:
                if is_message_list(saver.serde.loads_typed((row["type"], row["blob"]))):
                    return True
            if len(page) < PROBE_PAGE:
                return False
            after = [page[-1][column] for column in key]


async def _has_references(conn: AsyncConnection[Any], thread_id: str) -> bool:
    """Whether the thread has linear-format rows: log references or log entries."""
    cursor = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM checkpoint_blobs WHERE thread_id = %s AND type = ANY(%s))"
        " OR EXISTS (SELECT 1 FROM checkpoint_writes WHERE thread_id = %s AND type = ANY(%s))"
        f" OR EXISTS (SELECT 1 FROM {_LOG} WHERE thread_id = %s)",
        (thread_id, list(REF_TYPES), thread_id, list(REF_TYPES), thread_id),
    )
    row = await cursor.fetchone()
    return bool(row and _first(row))


async def _exists(conn: AsyncConnection[Any], thread_id: str) -> bool:
    cursor = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM checkpoints WHERE thread_id = %s)", (thread_id,)
    )
    row = await cursor.fetchone()
    return bool(row and _first(row))


async def _thread_bytes(
    conn: AsyncConnection[Any], thread_id: str, *, log: bool, head: bool = True
) -> int:
    """The size of the thread's rows (`pg_column_size`: compressed values count compressed).

    `log`: the database has the linear format's tables; `head`: count the head row.
    """
    tables = ["checkpoints", "checkpoint_blobs", "checkpoint_writes"]
    if log:
        tables += [_LOG, _HEADS] if head else [_LOG]
    parts = [
        f"(SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM {t} t WHERE t.thread_id = %s)"
        for t in tables
    ]
    cursor = await conn.execute(
        "SELECT (" + " + ".join(parts) + ")::bigint", [thread_id] * len(tables)
    )
    row = await cursor.fetchone()
    return int(_first(row)) if row else 0


async def _has_stock_tables(conn: AsyncConnection[Any]) -> bool:
    cursor = await conn.execute(
        "SELECT to_regclass('checkpoints') IS NOT NULL "
        "AND to_regclass('checkpoint_blobs') IS NOT NULL "
        "AND to_regclass('checkpoint_writes') IS NOT NULL"
    )
    row = await cursor.fetchone()
    return bool(row and _first(row))


# -- plumbing --------------------------------------------------------------------------------


async def _threads(
    conn: AsyncConnection[Any], thread_ids: Sequence[str] | None, batch_size: int
) -> AsyncIterator[str]:
    """The named threads (all checked to exist first), or every thread, a page at a time."""
    if isinstance(thread_ids, str):
        raise TypeError("thread_ids must be a sequence of thread ids, not a str")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if thread_ids is not None:
        wanted = list(dict.fromkeys(str(t) for t in thread_ids))
        cursor = await conn.execute(
            "SELECT t FROM unnest(%s::text[]) AS t "
            "WHERE NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = t)",
            (wanted,),
        )
        if unknown := [_first(row) for row in await cursor.fetchall()]:
            raise UnknownThreadError(unknown)
        for thread_id in wanted:
            yield thread_id
        return
    after = ""
    while True:
        cursor = await conn.execute(
            "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id > %s "
            "ORDER BY thread_id LIMIT %s",
            (after, batch_size),
        )
        page = [_first(row) for row in await cursor.fetchall()]
        for thread_id in page:
            yield thread_id
        if len(page) < batch_size:
            return
        after = page[-1]


@asynccontextmanager
async def _connection(source: Source) -> AsyncIterator[AsyncConnection[Any]]:
    """One connection for the whole run: each thread's transaction must be on one session."""
    async with borrow(source, "moving threads") as conn:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            raise ValueError("the connection is inside a transaction: pass an idle connection")
        yield conn


async def _move_each(
    conn: AsyncConnection[Any],
    thread_ids: Sequence[str] | None,
    batch_size: int,
    report: TransferReport,
    on_thread: OnThread | None,
    status: Status,
    move: _Move,
) -> None:
    """Move each thread with `move`, one after the other, and record what happened to it.

    `move` returns the thread's checkpoints and its sizes before and after, or raises `_Skip`
    to leave it as it is; a `TransferError` or `MessageLogError` marks the thread failed and
    the run goes on with the next one.
    """
    async for thread_id in _threads(conn, thread_ids, batch_size):
        try:
            checkpoints, before, after = await move(thread_id)
        except _Skip as skip:
            result = ThreadResult(thread_id, "skipped", skip.reason)
        except (TransferError, MessageLogError) as error:
            result = ThreadResult(thread_id, "failed", str(error))
        else:
            result = _moved(thread_id, status, checkpoints, before, after)
        _record(report, on_thread, result)


def _moved(
    thread_id: str, status: Status, checkpoints: list[_Checkpoint], before: int, after: int | None
) -> ThreadResult:
    writes = sum(len(w) for c in checkpoints for _, _, w in c.calls)
    return ThreadResult(thread_id, status, "", len(checkpoints), writes, before, after)


def _record(report: TransferReport, on_thread: OnThread | None, result: ThreadResult) -> None:
    report.threads.append(result)
    if on_thread is not None:
        on_thread(result)


def _ns(item: CheckpointTuple) -> str:
    return str(item.config["configurable"].get("checkpoint_ns", ""))


def _first(row: Any) -> Any:
    """The first column of a row from a tuple or a dict row factory."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
