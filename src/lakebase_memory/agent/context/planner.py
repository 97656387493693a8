"""What of a thread the model is sent at each turn, and the next move of the window made ahead.

`fit` is the agent's context step: it keeps the thread's context state while the messages fit
and moves the start forward (with a summary of what falls out) when they do not.

A move is the expensive turn: the summary is written, and because the prompt's start changed,
a model that caches its prompt's prefix (llama.cpp) reads the kept messages again. With
`prepare_ahead`, that work is done after a turn instead of in the next one: when a next message
as long as the last one would not fit, the move is made at once, in the background, and the
model is made to read the new prompt's start while the user reads the answer. The next turn
then costs what a turn between moves costs. What was prepared is held in this process, by
thread, and used only while the thread is exactly as it was then plus new messages; otherwise
(another process took the turn, the history changed, the next message is much longer) the
turn moves the window itself, as without preparing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from lakebase_memory.agent.context.summary import NO_STREAM, fold_into_summary, with_summary
from lakebase_memory.agent.context.tokens import TokenCounter, message_tokens
from lakebase_memory.agent.context.window import ContextState, ContextWindow, new_start
from lakebase_memory.config.settings import ContextPolicy
from lakebase_memory.errors import ModelError

logger = logging.getLogger(__name__)
PREPARED_THREADS = 64  # moves held at once; the oldest go first


@dataclass(frozen=True)
class PreparedMove:
    base: ContextState  # the state it was prepared from
    seen: int  # how many messages the thread had
    last_id: str | None  # and the id of the last one
    # Where the sent part will start; when that is the next message, which has no id yet, its
    # start_id is None until the message comes.
    moved: ContextState

    def resolve(
        self, messages: Sequence[BaseMessage], context: ContextState
    ) -> ContextState | None:
        """The move, if `messages` are the ones it was made for plus new ones."""
        if (
            context != self.base
            or len(messages) <= self.seen
            or messages[self.seen - 1].id != self.last_id
        ):
            return None
        moved = self.moved
        if moved.start_id is None:
            moved = replace(moved, start_id=messages[moved.left_out].id)
        return moved if moved.start_in(messages) is not None else None


class ContextPlanner:
    def __init__(
        self,
        model: BaseChatModel,
        counter: TokenCounter,
        window: ContextWindow,
        system_prompt: str,
        prepare_ahead: bool = False,
    ) -> None:
        self.model = model
        self.counter = counter
        self.window = window
        self.system_prompt = system_prompt
        self.prepare_ahead = prepare_ahead and window.policy is not ContextPolicy.OFF
        self._prepared: OrderedDict[str, asyncio.Task[PreparedMove | None]] = OrderedDict()

    async def sizes(self, messages: Sequence[BaseMessage]) -> list[int]:
        return [await message_tokens(self.counter, m) for m in messages]

    async def room(self) -> int:
        return self.window.room(await self.counter.count(self.system_prompt))

    async def fit(
        self, messages: Sequence[BaseMessage], stored: object, thread: str | None = None
    ) -> ContextState | None:
        """The context state this turn's prompt is made from; None when it stays as stored."""
        if self.window.policy is ContextPolicy.OFF or not messages:
            return None
        context = ContextState.load(stored)
        start = context.start_in(messages)
        reset = start is None
        if start is None:  # the history changed under the state: decide again from the start
            context, start = ContextState(), 0
        room = await self.room()
        sizes = await self.sizes(messages)
        prepared = await self._take(thread, messages, context)
        if prepared is not None and sum(sizes[prepared.left_out :]) <= room:
            return prepared
        if sum(sizes[start:]) <= room:
            return context if reset else None
        return await self._move(messages, sizes, context, start, room)

    def after_answer(
        self, thread: str | None, messages: Sequence[BaseMessage], stored: object
    ) -> None:
        """Prepare the next turn's move now if it will need one (see the module's doc)."""
        if not self.prepare_ahead or thread is None or not messages:
            return
        running = self._prepared.pop(thread, None)
        if running is not None:
            running.cancel()
        self._prepared[thread] = asyncio.create_task(
            self._prepare(list(messages), ContextState.load(stored))
        )
        while len(self._prepared) > PREPARED_THREADS:
            _, oldest = self._prepared.popitem(last=False)
            oldest.cancel()

    async def settle(self) -> None:
        """Wait until the moves being prepared are ready (or failed)."""
        await asyncio.gather(*self._prepared.values(), return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._prepared.values())
        self._prepared.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _move(
        self,
        messages: Sequence[BaseMessage],
        sizes: Sequence[int],
        context: ContextState,
        start: int,
        room: int,
    ) -> ContextState:
        moved = new_start(sizes, messages, start, room)
        notes, facts = "", ()
        if self.window.policy is ContextPolicy.SUMMARIZE:
            try:
                notes, kept = await fold_into_summary(
                    self.model, self.counter, self.window, self.system_prompt, context,
                    messages[start:moved],
                )  # fmt: skip
            except ModelError:
                raise
            except Exception as error:
                raise ModelError(
                    f"The model failed to summarize the earlier conversation: "
                    f"{type(error).__name__}: {error}"
                ) from error
            facts = tuple(kept)
        return ContextState(messages[moved].id, moved, notes, facts)

    async def _prepare(
        self, messages: list[BaseMessage], context: ContextState
    ) -> PreparedMove | None:
        start = context.start_in(messages)
        if start is None:
            return None
        room = await self.room()
        sizes = await self.sizes(messages)
        humans = [s for m, s in zip(messages, sizes, strict=True) if isinstance(m, HumanMessage)]
        expected = humans[-1] if humans else 0  # the next message, guessed: as long as the last
        if sum(sizes[start:]) + expected <= room:
            return None
        upcoming = [*messages, HumanMessage("")]  # stands for the next message
        moved = await self._move(upcoming, [*sizes, expected], context, start, room)
        if moved.left_out == len(messages):  # only the next message is to be kept
            moved = replace(moved, start_id=None)
        # The model reads the new prompt's start now; llama.cpp keeps it for the next turn.
        system = SystemMessage(with_summary(self.system_prompt, moved))
        prompt = [system, *messages[moved.left_out :]]
        await self.model.ainvoke(prompt, {"tags": [NO_STREAM]}, max_tokens=1)
        return PreparedMove(context, len(messages), messages[-1].id, moved)

    async def _take(
        self, thread: str | None, messages: Sequence[BaseMessage], context: ContextState
    ) -> ContextState | None:
        task = self._prepared.pop(thread, None) if thread is not None else None
        if task is None:
            return None
        try:
            prepared = await asyncio.shield(task)  # a cancelled turn leaves the task be
        except asyncio.CancelledError:
            if not task.cancelled():  # this turn itself is being cancelled
                raise
            return None
        except Exception as error:  # the turn moves the window itself, and reports failures
            logger.debug("preparing the window's move failed: %s", error)
            return None
        return None if prepared is None else prepared.resolve(messages, context)
