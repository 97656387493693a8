"""MCP tools against a real MCP server (the `mcp` SDK's FastMCP over streamable HTTP, in a
process of its own): called through the agent, failing, unreachable, stopped mid-run, slow, and
MCP_SERVERS written wrong."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from conftest import LiveServer, answer_text, free_port, make_settings, say
from lakebase_memory.agent.tools.mcp import (
    MCPToolError,
    load_mcp_tools,
    parse_mcp_servers,
    tool_name,
)
from lakebase_memory.errors import ConfigurationError
from lakebase_memory.server.runtime import AppRuntime

pytestmark = pytest.mark.slow

SERVER_CODE = """
import asyncio, sys
import uvicorn
from mcp.server.fastmcp import FastMCP

mcp = FastMCP("calc", log_level="WARNING")

@mcp.tool()
def add(a: int, b: int) -> int:
    '''Add two whole numbers.'''
    return a + b

@mcp.tool()
def boom(reason: str) -> str:
    '''Always fails.'''
    raise ValueError(f"boom: {reason}")

@mcp.tool()
async def slow(seconds: float) -> str:
    '''Answers after a while.'''
    await asyncio.sleep(seconds)
    return "late"

@mcp.tool(name="dotted.name")
def dotted() -> str:
    '''A name a model would not accept as it is.'''
    return "dotted"

uvicorn.run(mcp.streamable_http_app(), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning")
"""


class MCPServerProcess:
    """A FastMCP server in a child process, on a port of its own."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MCPServerProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER_CODE, str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the MCP server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the MCP server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def entry(self, **extra: object) -> dict[str, object]:
        return {"url": self.url, "transport": "streamable_http", **extra}


@pytest.fixture(scope="module")
def calc() -> Iterator[MCPServerProcess]:
    server = MCPServerProcess().start()
    yield server
    server.stop()


@pytest.fixture
def calc_app(
    database: str, serve: Callable[..., LiveServer], calc: MCPServerProcess
) -> Iterator[httpx.Client]:
    settings = make_settings(database, mcp_servers=json.dumps({"calc": calc.entry(timeout=2)}))
    with serve(settings).client() as client:
        yield client


def items(reply: dict, kind: str) -> list[dict]:
    return [item for item in reply["output"] if item["type"] == kind]


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there


def test_an_mcp_tool_answers_the_model(calc_app: httpx.Client) -> None:
    reply = say(calc_app, 'Call calc_add {"a": 2, "b": 3}', "mcp-add")
    [call] = items(reply, "function_call")
    assert call["name"] == "calc_add" and json.loads(call["arguments"]) == {"a": 2, "b": 3}
    [result] = items(reply, "function_call_output")
    assert result["call_id"] == call["call_id"] and result["output"] == "5"
    assert "Tool calc_add answered: 5" in answer_text(reply)
    # Stored in the thread like any tool call.
    thread = calc_app.get("/api/threads/mcp-add").json()
    assert [m["role"] for m in thread["messages"]].count("tool") == 1
    # The memory tools are there alongside, and a client tool may not take an MCP tool's name.
    body = {"input": "hi", "tools": [{"type": "function", "name": "calc_add"}]}
    refused = calc_app.post("/invocations", json=body)
    assert refused.status_code == 422 and "calc_add" in refused.json()["error"]["message"]


def test_a_failing_mcp_tool_is_told_to_the_model(calc_app: httpx.Client) -> None:
    reply = say(calc_app, 'Call calc_boom {"reason": "on purpose"}', "mcp-boom")
    [result] = items(reply, "function_call_output")
    assert result["output"].startswith("The tool failed: MCPToolError: boom on MCP server 'calc'")
    assert "boom: on purpose" in result["output"]
    assert result["output"].endswith("Answer without it or try again.")
    # The turn went on: the model answered, having been told.
    assert "Tool calc_boom answered: The tool failed" in answer_text(reply)
    # And the next turn on the thread works.
    again = say(calc_app, 'Call calc_add {"a": 1, "b": 1}', "mcp-boom")
    assert items(again, "function_call_output")[0]["output"] == "2"


def test_a_call_that_does_not_answer_in_time_fails_the_tool_not_the_turn(
    calc_app: httpx.Client,
) -> None:
    started = time.monotonic()
    reply = say(calc_app, 'Call calc_slow {"seconds": 20}', "mcp-slow")
    assert time.monotonic() - started < 10
    [result] = items(reply, "function_call_output")
    assert "MCP server 'calc' did not answer within 2 s" in result["output"]
    assert result["output"].startswith("The tool failed:")
    assert items(reply, "message")


def test_an_unreachable_server_is_left_out_and_the_rest_works(
    database: str,
    serve: Callable[..., LiveServer],
    calc: MCPServerProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    silent = socket.socket()  # takes connections (the kernel's backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    servers = {
        "gone": {"url": closed_port_url(), "transport": "streamable_http"},
        "notmcp": {"url": calc.url.replace("/mcp", "/nothing-here"), "transport": "http"},
        "silent": {
            "url": f"http://127.0.0.1:{silent.getsockname()[1]}/mcp",
            "transport": "streamable_http",
            "connect_timeout": 1,
        },
        "calc": calc.entry(),
    }
    caplog.set_level(logging.WARNING, logger="lakebase_memory.agent.tools.mcp")
    started = time.monotonic()
    try:
        server = serve(make_settings(database, mcp_servers=json.dumps(servers)))
    finally:
        silent.close()
    assert time.monotonic() - started < 15  # the servers are asked at once, each bounded
    left_out = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(left_out) == 3, left_out
    assert any("'gone'" in line and "ConnectError" in line for line in left_out)
    assert any("'notmcp'" in line for line in left_out)
    assert any("'silent'" in line and "no answer within 1 s" in line for line in left_out)
    with server.client() as client:
        saved = say(client, "Remember that my favourite colour is blue", "mcp-memory")
        [result] = items(saved, "function_call_output")
        assert result["output"].startswith("Successfully saved memory")
        added = say(client, 'Call calc_add {"a": 4, "b": 5}')
        assert items(added, "function_call_output")[0]["output"] == "9"
        # The unreachable server's tools were never offered: the echo model calls no tool.
        reply = say(client, 'Call gone_add {"a": 1, "b": 2}')
        assert items(reply, "function_call") == []


def test_a_server_stopped_after_the_start_fails_the_call_and_the_turn_completes(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    calc = MCPServerProcess().start()
    try:
        settings = make_settings(database, mcp_servers=json.dumps({"calc": calc.entry()}))
        with serve(settings).client() as client:
            assert items(say(client, 'Call calc_add {"a": 2, "b": 3}', "mcp-stop"),
                         "function_call_output")[0]["output"] == "5"  # fmt: skip
            calc.stop()
            started = time.monotonic()
            reply = say(client, 'Call calc_add {"a": 2, "b": 3}', "mcp-stop")
            assert time.monotonic() - started < 10
            [result] = items(reply, "function_call_output")
            assert result["output"].startswith(
                "The tool failed: MCPToolError: MCP server 'calc' failed: ConnectError"
            ), result["output"]
            assert "Tool calc_add answered: The tool failed" in answer_text(reply)
            # Each call opens its own session: the server back on its port is used again.
            calc.start()
            back = say(client, 'Call calc_add {"a": 2, "b": 3}', "mcp-stop")
            assert items(back, "function_call_output")[0]["output"] == "5"
    finally:
        calc.stop()


async def test_tool_names_are_prefixed_and_never_clash(calc: MCPServerProcess) -> None:
    servers = json.dumps({"calc": calc.entry(), "copy": calc.entry()})
    tools = {tool.name: tool for tool in await load_mcp_tools(servers)}
    assert set(tools) == {
        "calc_add", "calc_boom", "calc_slow", "calc_dotted_name",
        "copy_add", "copy_boom", "copy_slow", "copy_dotted_name",
    }  # fmt: skip
    assert tools["calc_add"].metadata["mcp_tool"] == "add"  # type: ignore[index]
    assert await tools["calc_dotted_name"].ainvoke({}) == "dotted"
    # A name that is taken (by default the memory tools') is left out.
    kept = await load_mcp_tools(json.dumps({"calc": calc.entry()}), reserved={"calc_add"})
    assert "calc_add" not in {tool.name for tool in kept} and len(kept) == 3
    assert tool_name("get", "user_memory") == "get_user_memory"
    clash = await load_mcp_tools(json.dumps({"get_user": calc.entry()}))
    assert "get_user_memory" not in {tool.name for tool in clash}


async def test_a_failed_call_raises_for_the_tool_node(calc: MCPServerProcess) -> None:
    [boom] = [
        tool
        for tool in await load_mcp_tools(json.dumps({"calc": calc.entry()}))
        if tool.name == "calc_boom"
    ]
    with pytest.raises(MCPToolError, match="boom: why"):
        await boom.ainvoke({"reason": "why"})
    gone = {"gone": {"url": closed_port_url(), "transport": "sse"}}
    assert await load_mcp_tools(json.dumps(gone)) == []  # no tools, and nothing raised


@pytest.mark.parametrize(
    ("servers", "says"),
    [
        ("{not json", "MCP_SERVERS is not valid JSON (Expecting property name"),
        ('["http://localhost/mcp"]', "must be a JSON object of servers by name, not a list"),
        ('{"has space": {}}', "has the server name 'has space'"),
        ('{"docs": "http://localhost/mcp"}', '["docs"] must be an object with "url"'),
        ('{"docs": {"transport": "http"}}', '["docs"]["url"] must be an http:// or https://'),
        ('{"docs": {"url": "ftp://x/mcp", "transport": "http"}}', "not 'ftp://x/mcp'"),
        ('{"docs": {"url": "http://x/mcp"}}', '["docs"]["transport"] must be "streamable_http"'),
        ('{"docs": {"url": "http://x/mcp", "transport": "stdio"}}', "not 'stdio'"),
        ('{"docs": {"url": "http://x/mcp", "transport": "sse", "token": "t"}}', "unknown keys"),
        ('{"d": {"url": "http://x", "transport": "sse", "headers": {"a": 1}}}', "of strings"),
        ('{"d": {"url": "http://x", "transport": "sse", "timeout": 0}}', "more than 0"),
        ('{"d": {"url": "http://x", "transport": "sse", "timeout": NaN}}', "more than 0"),
        ('{"d": {"url": "http://x", "transport": "sse", "timeout": "5"}}', "number of seconds"),
    ],
)
def test_mcp_servers_written_wrong_say_what_and_how(servers: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_mcp_servers(servers)
    message = str(refused.value)
    assert says in message
    assert "Write it as a JSON object of servers by name, for example MCP_SERVERS=" in message


def test_valid_mcp_servers_are_read() -> None:
    [server] = parse_mcp_servers(
        '{"docs": {"url": "https://u:p@docs.example/mcp?k=1", "transport": "http",'
        ' "headers": {"Authorization": "Bearer x"}, "timeout": 5, "connect_timeout": 1}}'
    )
    assert (server.name, server.transport, server.timeout, server.connect_timeout) == (
        "docs", "streamable_http", 5.0, 1.0,
    )  # fmt: skip
    assert server.where == "https://docs.example/mcp"  # no credentials in the log
    assert "Bearer" not in repr(server)
    assert parse_mcp_servers("{}") == []


async def test_invalid_mcp_servers_stop_the_start(database: str) -> None:
    settings = make_settings(database, mcp_servers="{not json")
    with pytest.raises(ConfigurationError, match="MCP_SERVERS is not valid JSON"):
        await AppRuntime.start(settings)


async def test_without_the_extra_mcp_servers_say_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "langchain_mcp_adapters.tools", None)  # not installed
    servers = json.dumps({"docs": {"url": closed_port_url(), "transport": "streamable_http"}})
    with pytest.raises(ConfigurationError, match=r"pip install 'lakebase-memory\[mcp\]'"):
        await load_mcp_tools(servers)
