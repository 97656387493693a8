"""The agent: one model node over `MessagesState`, checkpointed per thread."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from lakebase_memory.errors import ModelError

AGENT_NODE = "agent"


def build_graph(
    model: BaseChatModel, system_prompt: str, checkpointer: BaseCheckpointSaver | None
) -> CompiledStateGraph:
    """The system prompt is added at call time, so threads store only the conversation."""

    async def call_model(state: MessagesState, config: RunnableConfig) -> dict[str, list]:
        try:
            reply = await model.ainvoke([SystemMessage(system_prompt), *state["messages"]], config)
        except Exception as error:
            # Told apart from database failures, which surface outside this node.
            raise ModelError(
                f"The model failed to answer: {type(error).__name__}: {error}"
            ) from error
        return {"messages": [reply]}

    builder = StateGraph(MessagesState)
    builder.add_node(AGENT_NODE, call_model)
    builder.add_edge(START, AGENT_NODE)
    builder.add_edge(AGENT_NODE, END)
    return builder.compile(checkpointer=checkpointer)
