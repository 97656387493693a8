"""The agent: a model node over the thread's messages, checkpointed per thread.

Before the model runs, the `context` node decides what of the thread the model is sent (see
`agent.context.window`): the thread keeps every message, the model gets what fits its window.
That decision (where the sent part starts, the running summary of the rest) is part of the
thread's state, so a summary is written once and read at the following turns.
"""

from __future__ import annotations

from typing import Any, NotRequired
from uuid import uuid4

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from lakebase_memory.agent.context import (
    ContextPlanner,
    ContextPolicy,
    ContextState,
    ContextWindow,
    EstimatedTokens,
    TokenCounter,
    with_summary,
)
from lakebase_memory.errors import ModelError

AGENT_NODE = "agent"
CONTEXT_NODE = "context"


class AgentState(MessagesState):
    context: NotRequired[dict[str, Any]]  # ContextState.dump()


def thread_of(config: RunnableConfig) -> str | None:
    thread = (config.get("configurable") or {}).get("thread_id")
    return None if thread is None else str(thread)


def build_graph(
    model: BaseChatModel,
    system_prompt: str,
    checkpointer: BaseCheckpointSaver | None,
    window: ContextWindow | None = None,
    tokens: TokenCounter | None = None,
    planner: ContextPlanner | None = None,
) -> CompiledStateGraph:
    """The system prompt is added at call time, so threads store only the conversation.

    Without a `window` (or a `planner`, which has one) the model is sent the whole thread."""
    if planner is None:
        window = window or ContextWindow(tokens=0, output_tokens=0, policy=ContextPolicy.OFF)
        planner = ContextPlanner(model, tokens or EstimatedTokens(), window, system_prompt)
    policy = planner.window.policy

    async def fit_context(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        context = await planner.fit(state["messages"], state.get("context"), thread_of(config))
        return {} if context is None else {"context": context.dump()}

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
        if isinstance(reply, AIMessage) and policy is not ContextPolicy.OFF:
            # What this answer was made from, kept with it (and shown in the response).
            reply.response_metadata["context"] = {
                "messages_sent": len(sent),
                "messages_left_out": start,
                "summarized": context.summarized,
                "tokens_sent": sum(await planner.sizes(prompt)),
            }
            reply.id = reply.id or str(uuid4())  # what a prepared move recognizes it by
            planner.after_answer(thread_of(config), [*messages, reply], state.get("context"))
        return {"messages": [reply]}

    builder = StateGraph(AgentState)
    builder.add_node(AGENT_NODE, call_model)
    if policy is ContextPolicy.OFF:
        builder.add_edge(START, AGENT_NODE)  # nothing to decide: no step of its own
    else:
        builder.add_node(CONTEXT_NODE, fit_context)
        builder.add_edge(START, CONTEXT_NODE)
        builder.add_edge(CONTEXT_NODE, AGENT_NODE)
    builder.add_edge(AGENT_NODE, END)
    return builder.compile(checkpointer=checkpointer)
