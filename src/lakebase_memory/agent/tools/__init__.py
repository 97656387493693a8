"""The agent's tools: long-term memory, and those of configured MCP servers (optional)."""

from __future__ import annotations

import logging

from langchain_core.tools import BaseTool

from lakebase_memory.agent.tools.memory_tools import MEMORY_TOOLS
from lakebase_memory.config import Settings

logger = logging.getLogger(__name__)


async def open_tools(settings: Settings) -> list[BaseTool]:
    """The tools the agent may call: none when AGENT_TOOLS is off. An MCP server that cannot
    be reached is left out with a warning; it never stops the start."""
    if not settings.tools_enabled:
        return []
    tools: list[BaseTool] = list(MEMORY_TOOLS)
    if settings.mcp_servers:
        from lakebase_memory.agent.tools.mcp import load_mcp_tools

        tools += await load_mcp_tools(settings.mcp_servers)
    return tools


__all__ = ["MEMORY_TOOLS", "open_tools"]
