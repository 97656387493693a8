"""The tools of configured MCP servers (`MCP_SERVERS`; needs the `mcp` extra).

`MCP_SERVERS` is a JSON object, one entry per server:
`{"<name>": {"url": "http://host:port/mcp", "transport": "streamable_http", "headers": {...},
"timeout": 30, "connect_timeout": 10}}` (`headers`, `timeout` and `connect_timeout` optional).
A mistake in it stops the start with a `ConfigurationError` saying what is wrong.

At start-up each server is asked for its tools, all at once, each within its
`connect_timeout`: a server that cannot be reached, refuses or fails is left out with a
warning naming it, and the agent starts with the others' tools. A tool is named
`<server>_<tool>` (characters a model does not accept become `_`), so two servers, or a server
and the memory tools, never share a name; a name that clashes anyway is left out, with a
warning.

Every call opens a session of its own (so a server restarted since the start is simply used
again) and is bounded by the server's `timeout`. A call that fails (the server gone, an error
the tool reports, no answer in time) raises, and the agent's tool node tells the model that the
tool failed; the turn goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from langchain_core.tools import BaseTool, StructuredTool, ToolException

from lakebase_memory.agent.tools.memory_tools import MEMORY_TOOLS
from lakebase_memory.errors import ConfigurationError

if TYPE_CHECKING:
    from langchain_mcp_adapters.sessions import Connection

logger = logging.getLogger(__name__)

TRANSPORTS = {"streamable_http": "streamable_http", "streamable-http": "streamable_http",
              "http": "streamable_http", "sse": "sse"}  # fmt: skip
KEYS = ("url", "transport", "headers", "timeout", "connect_timeout")
DEFAULT_TIMEOUT = 30.0  # seconds for one tool call
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds to list a server's tools at start-up
MAX_TIMEOUT = 600.0
MAX_NAME = 64  # what OpenAI-style tool names allow: ^[a-zA-Z0-9_-]{1,64}$
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]")
EXAMPLE = '{"docs": {"url": "http://localhost:8001/mcp", "transport": "streamable_http"}}'
INSTALL = (
    "MCP_SERVERS is set, but the MCP tools need the optional `mcp` extra, which is not "
    "installed: pip install 'lakebase-memory[mcp]' (in a checkout: uv sync --extra mcp), or "
    "unset MCP_SERVERS."
)


class MCPToolError(ToolException):
    """An MCP tool call failed: the model is told so (the message names the server)."""


@dataclass(frozen=True)
class MCPServer:
    """One entry of MCP_SERVERS, validated."""

    name: str
    url: str
    transport: str  # "streamable_http" | "sse"
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may hold secrets
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    @property
    def where(self) -> str:
        """The URL without credentials, query or fragment: what the log may show."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    def connection(self) -> Connection:
        """The connection langchain-mcp-adapters opens a session with."""
        config: dict[str, Any] = {
            "transport": self.transport,
            "url": self.url,
            "timeout": self.timeout,
            "sse_read_timeout": self.timeout,
        }
        if self.headers:
            config["headers"] = dict(self.headers)
        return config  # type: ignore[return-value]


def parse_mcp_servers(servers_json: str) -> list[MCPServer]:
    """The servers of MCP_SERVERS, or a ConfigurationError saying what is wrong and how to
    write it."""
    try:
        raw = json.loads(servers_json)
    except json.JSONDecodeError as error:
        raise _invalid(
            f"is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    if not isinstance(raw, dict):
        raise _invalid(f"must be a JSON object of servers by name, not {_kind(raw)}")
    return [_server(name, entry) for name, entry in raw.items()]


def _server(name: str, entry: object) -> MCPServer:
    if not SERVER_NAME.match(name):
        raise _invalid(
            f"has the server name {name!r}: a name is 1 to 32 letters, digits, '_' or '-' "
            "(it starts the names of the server's tools)"
        )
    if not isinstance(entry, dict):
        raise _invalid(
            f'["{name}"] must be an object with "url" and "transport", not {_kind(entry)}'
        )
    unknown = sorted(set(entry) - set(KEYS))
    if unknown:
        raise _invalid(f'["{name}"] has unknown keys {unknown}; the keys are {list(KEYS)}')
    url = entry.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
        raise _invalid(f'["{name}"]["url"] must be an http:// or https:// URL, not {url!r}')
    transport = entry.get("transport")
    if transport not in TRANSPORTS:
        raise _invalid(
            f'["{name}"]["transport"] must be "streamable_http" or "sse", not {transport!r}'
        )
    headers = entry.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in headers.items()
    ):
        raise _invalid(f'["{name}"]["headers"] must be an object of strings')
    return MCPServer(
        name=name,
        url=url,  # type: ignore[arg-type]
        transport=TRANSPORTS[transport],  # type: ignore[index]
        headers=headers,
        timeout=_seconds(name, entry, "timeout", DEFAULT_TIMEOUT),
        connect_timeout=_seconds(name, entry, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
    )


def _seconds(name: str, entry: dict[str, Any], key: str, default: float) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f'["{name}"]["{key}"] must be a number of seconds, not {value!r}')
    if not 0 < value <= MAX_TIMEOUT:  # NaN (which json accepts) fails this too
        raise _invalid(f'["{name}"]["{key}"] must be more than 0 and at most {MAX_TIMEOUT:g} s')
    return float(value)


def _kind(value: object) -> str:
    return {list: "a list", str: "a string", type(None): "null"}.get(type(value), repr(value))


def _invalid(what: str) -> ConfigurationError:
    return ConfigurationError(
        f"MCP_SERVERS {what}. Write it as a JSON object of servers by name, for example "
        f'MCP_SERVERS=\'{EXAMPLE}\' (optional per server: "headers", "timeout" and '
        '"connect_timeout" in seconds).'
    )


async def load_mcp_tools(
    servers_json: str, reserved: Collection[str] | None = None
) -> list[BaseTool]:
    """The tools of the servers in MCP_SERVERS that answer at start-up. A server that does
    not answer is left out with a warning; a mistake in MCP_SERVERS, or the `mcp` extra
    missing, raises ConfigurationError. `reserved`: names no MCP tool may take (by default
    the memory tools')."""
    servers = parse_mcp_servers(servers_json)
    if not servers:
        return []
    try:
        from langchain_mcp_adapters.tools import load_mcp_tools as list_server_tools
    except ImportError as error:
        raise ConfigurationError(INSTALL) from error
    taken = set(reserved if reserved is not None else (tool.name for tool in MEMORY_TOOLS))

    async def one(server: MCPServer) -> list[BaseTool]:
        try:
            async with asyncio.timeout(server.connect_timeout):
                return await list_server_tools(None, connection=server.connection())
        except Exception as error:
            cause = (
                f"no answer within {server.connect_timeout:g} s"
                if isinstance(error, TimeoutError)
                else _cause(error)
            )
            logger.warning(
                "MCP server %r (%s) left out: %s. The agent starts without its tools; check "
                "that the server runs and its entry in MCP_SERVERS, then restart.",
                server.name, server.where, cause,
            )  # fmt: skip
            return []

    found = await asyncio.gather(*(one(server) for server in servers))
    tools: list[BaseTool] = []
    for server, server_tools in zip(servers, found, strict=True):
        for tool in server_tools:
            name = tool_name(server.name, tool.name)
            if not isinstance(tool, StructuredTool) or tool.coroutine is None:
                logger.warning(
                    "MCP server %r: tool %r left out, this langchain-mcp-adapters made it "
                    "without an async call", server.name, tool.name,
                )  # fmt: skip
                continue
            if name in taken:
                logger.warning(
                    "MCP server %r: tool %r left out, its name %r is already taken",
                    server.name, tool.name, name,
                )  # fmt: skip
                continue
            taken.add(name)
            tools.append(_bounded(server, tool, name))
        if server_tools:
            logger.info(
                "MCP server %r (%s): %d tools", server.name, server.where, len(server_tools)
            )
    return tools


def tool_name(server: str, tool: str) -> str:
    """`<server>_<tool>`, with what a model does not accept in a name made `_`."""
    return _NOT_IN_NAME.sub("_", f"{server}_{tool}")[:MAX_NAME]


def _bounded(server: MCPServer, tool: StructuredTool, name: str) -> BaseTool:
    """The adapter's tool under its new name, its call bounded by the server's timeout and
    every failure raised as an MCPToolError (which the tool node tells the model)."""
    call: Callable[..., Awaitable[tuple[Any, Any]]] = tool.coroutine  # type: ignore[assignment]

    async def bounded(**arguments: Any) -> tuple[str, Any]:
        try:
            async with asyncio.timeout(server.timeout):
                content, artifact = await call(**arguments)
        except TimeoutError:
            raise MCPToolError(
                f"MCP server {server.name!r} did not answer within {server.timeout:g} s"
            ) from None
        except ToolException as error:  # the tool ran and reported an error
            raise MCPToolError(f"{tool.name} on MCP server {server.name!r}: {error}") from error
        except Exception as error:  # the server gone, refusing, or answering nonsense
            raise MCPToolError(f"MCP server {server.name!r} failed: {_cause(error)}") from error
        return _text(content), artifact

    return StructuredTool(
        name=name,
        description=tool.description or f"The tool {tool.name} of the MCP server {server.name}.",
        args_schema=tool.args_schema,
        coroutine=bounded,
        response_format="content_and_artifact",
        metadata={**(tool.metadata or {}), "mcp_server": server.name, "mcp_tool": tool.name},
    )


def _text(content: object) -> str:
    """A tool's result as the text the thread keeps: its text blocks, one per line, and a
    note for what is not text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return json.dumps(content, default=str)
    lines: list[str] = []
    for block in content:
        if isinstance(block, str):
            lines.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            lines.append(str(block.get("text", "")))
        elif isinstance(block, dict):
            mime = block.get("mime_type") or "unknown type"
            lines.append(f"[{block.get('type', 'content')} ({mime}) not shown]")
    return "\n".join(lines)


def _cause(error: BaseException) -> str:
    """The first real error inside anyio's exception groups, as `Type: message`."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


__all__ = ["MCPServer", "MCPToolError", "load_mcp_tools", "parse_mcp_servers", "tool_name"]
