"""The agent: a model node over the thread's messages, checkpointed per thread.

Before the model runs, the `context` node decides what of the thread the model is sent (see
`agent.context.window`): the thread keeps every message, the model gets what fits its window.
That decision (where the sent part starts, the running summary of the rest) is part of the
thread's state, so a summary is written once and read at the following turns.
"""

from __future__ import annotations

from typing import Any, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from lakebase_memory.agent.context import (
    ContextPolicy,
    ContextState,
    ContextWindow,
    EstimatedTokens,
    TokenCounter,
    fold_into_summary,
    message_tokens,
    new_start,
    with_summary,
)
from lakebase_memory.errors import ModelError

AGENT_NODE = "agent"
CONTEXT_NODE = "context"


class AgentState(MessagesState):
    context: NotRequired[dict[str, Any]]  # ContextState.dump()


def build_graph(
    model: BaseChatModel,
    system_prompt: str,
    checkpointer: BaseCheckpointSaver | None,
    window: ContextWindow | None = None,
    tokens: TokenCounter | None = None,
) -> CompiledStateGraph:
    """The system prompt is added at call time, so threads store only the conversation.

    Without a `window` the model is sent the whole thread (policy `off`)."""
    window = window or ContextWindow(tokens=0, output_tokens=0, policy=ContextPolicy.OFF)
    counter = tokens or EstimatedTokens()

    async def sizes_of(messages: list[BaseMessage]) -> list[int]:
        return [await message_tokens(counter, m) for m in messages]

    async def fit_context(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        messages = state["messages"]
        if window.policy is ContextPolicy.OFF or not messages:
            return {}
        context = ContextState.load(state.get("context"))
        start = context.start_in(messages)
        reset = start is None
        if start is None:  # the history changed under the state: decide again from the start
            context, start = ContextState(), 0
        system = await counter.count(system_prompt)
        room = window.room(system)
        sizes = await sizes_of(messages)
        if sum(sizes[start:]) <= room:
            return {"context": context.dump()} if reset else {}
        moved = new_start(sizes, messages, start, room)
        notes, facts = "", ()
        if window.policy is ContextPolicy.SUMMARIZE:
            try:
                notes, kept = await fold_into_summary(
                    model, counter, window, system_prompt, context, messages[start:moved]
                )
            except ModelError:
                raise
            except Exception as error:
                raise ModelError(
                    f"The model failed to summarize the earlier conversation: "
                    f"{type(error).__name__}: {error}"
                ) from error
            facts = tuple(kept)
        moved_context = ContextState(messages[moved].id, moved, notes, facts)
        return {"context": moved_context.dump()}

    async def call_model(state: AgentState, config: RunnableConfig) -> dict[str, list]:
        messages = state["messages"]
        context = ContextState.load(state.get("context"))
        start = context.start_in(messages) or 0
        sent = messages[start:]
        prompt = [SystemMessage(with_summary(system_prompt, context)), *sent]
        try:
            reply = await model.ainvoke(prompt, config)
        except ModelError:
            raise
        except Exception as error:
            # Told apart from database failures, which surface outside this node.
            raise ModelError(
                f"The model failed to answer: {type(error).__name__}: {error}"
            ) from error
        if isinstance(reply, AIMessage) and window.policy is not ContextPolicy.OFF:
            # What this answer was made from, kept with it (and shown in the response).
            reply.response_metadata["context"] = {
                "messages_sent": len(sent),
                "messages_left_out": start,
                "summarized": context.summarized,
                "tokens_sent": sum(await sizes_of(prompt)),
            }
        return {"messages": [reply]}

    builder = StateGraph(AgentState)
    builder.add_node(AGENT_NODE, call_model)
    if window.policy is ContextPolicy.OFF:
        builder.add_edge(START, AGENT_NODE)  # nothing to decide: no step of its own
    else:
        builder.add_node(CONTEXT_NODE, fit_context)
        builder.add_edge(START, CONTEXT_NODE)
        builder.add_edge(CONTEXT_NODE, AGENT_NODE)
    builder.add_edge(AGENT_NODE, END)
    return builder.compile(checkpointer=checkpointer)
