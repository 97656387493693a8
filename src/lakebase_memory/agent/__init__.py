"""The agent: a LangGraph graph and its model back-ends."""

from lakebase_memory.agent.graph import build_graph
from lakebase_memory.agent.models import build_model, close_model

__all__ = ["build_graph", "build_model", "close_model"]
