"""The agent: a model node over the thread's messages, checkpointed per thread; with tools,
a model-and-tools loop (the model asks, the tools node answers, the model goes on).

Before the model runs, the `context` node decides what of the thread the model is sent (see
`agent.context.window`): the thread keeps every message, the model gets what fits its window.
That decision (where the sent part starts, the running summary of the rest) is part of the
thread's state, so a summary is written once and read at the following turns.

Tools come from the server (memory, MCP: run by the tools node) and from the client (the
request's `tools`: function definitions the client runs itself). A call of a client's tool ends
the turn with the call in the answer; the client sends its `function_call_output` in the next
request and the model goes on from there. Server tools' calls of the same answer are run
first, so the thread never holds a server call without its result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NotRequired
from uuid import uuid4

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode
from langgraph.store.base import BaseStore

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
TOOLS_NODE = "tools"
CLIENT_TOOLS_KEY = "client_tools"  # configurable: the request's function definitions
MAX_TOOL_ROUNDS = 8  # model-and-tools rounds per turn before the model must answer


def tool_failed(error: Exception) -> str:
    """What the model is told when a tool fails (it may try again or answer without it)."""
    return f"The tool failed: {type(error).__name__}: {error}. Answer without it or try again."


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
    tools: Sequence[BaseTool] = (),
    store: BaseStore | None = None,
) -> CompiledStateGraph:
    """The system prompt is added at call time, so threads store only the conversation.

    Without a `window` (or a `planner`, which has one) the model is sent the whole thread.
    `tools` are the server's; `store` is the long-term memory the memory tools use."""
    if planner is None:
        window = window or ContextWindow(tokens=0, output_tokens=0, policy=ContextPolicy.OFF)
        planner = ContextPlanner(model, tokens or EstimatedTokens(), window, system_prompt)
    policy = planner.window.policy
    server_tools = {tool.name: tool for tool in tools}
    with_server_tools = model.bind_tools(list(tools)) if tools else model

    def model_for(config: RunnableConfig) -> Any:
        client_tools = (config.get("configurable") or {}).get(CLIENT_TOOLS_KEY)
        if not client_tools:
            return with_server_tools
        return model.bind_tools([*server_tools.values(), *client_tools])

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
            # After MAX_TOOL_ROUNDS rounds the model is sent without tools: it must answer.
            chosen = model if _tool_rounds(messages) >= MAX_TOOL_ROUNDS else model_for(config)
            reply = await chosen.ainvoke(prompt, config)
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
    if server_tools:
        builder.add_node(TOOLS_NODE, ServerToolNode(list(tools), handle_tool_errors=tool_failed))
        builder.add_conditional_edges(
            AGENT_NODE, lambda state: _after_model(state, server_tools), [TOOLS_NODE, END]
        )
        builder.add_conditional_edges(TOOLS_NODE, _after_tools, [AGENT_NODE, END])
    else:
        builder.add_edge(AGENT_NODE, END)
    return builder.compile(checkpointer=checkpointer, store=store)


class ServerToolNode(ToolNode):
    """LangGraph's ToolNode, for the server's tools only: a client's tool calls in the same
    answer are left for the client to run (and answer in its next request)."""

    def _parse_input(self, input: Any) -> tuple[list[Any], Any]:
        calls, kind = super()._parse_input(input)
        return [call for call in calls if call["name"] in self.tools_by_name], kind


def _pending_calls(state: AgentState) -> tuple[AIMessage | None, set[str]]:
    """The latest model answer and the ids of its tool calls that have no result yet."""
    answered: set[str] = set()
    for message in reversed(state["messages"]):
        if isinstance(message, ToolMessage):
            answered.add(message.tool_call_id)
        elif isinstance(message, AIMessage):
            return message, {c["id"] or "" for c in message.tool_calls} - answered
        else:
            break
    return None, set()


def _tool_rounds(messages: Sequence[Any]) -> int:
    """How many times the model has called tools since the turn's user message."""
    rounds = 0
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        rounds += isinstance(message, AIMessage) and bool(message.tool_calls)
    return rounds


def _after_model(state: AgentState, server_tools: dict[str, BaseTool]) -> str:
    reply, pending = _pending_calls(state)
    if reply is None or not pending:
        return END
    if any(c["name"] in server_tools for c in reply.tool_calls if c["id"] in pending):
        return TOOLS_NODE
    return END  # only the client's tools are asked for: the client runs them


def _after_tools(state: AgentState) -> str:
    _, pending = _pending_calls(state)
    return END if pending else AGENT_NODE
