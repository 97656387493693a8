"""MLflow tracing of turns (MLFLOW_TRACING): traces recorded by a real MLflow tracking server.

The app runs with the light `mlflow-tracing` package (the `tracing` extra, in the dev group),
which only exports to a server. The server is the full `mlflow` (`mlflow server` on SQLite), in
an environment of its own (the `mlflow-server` group, `uv run --isolated`): in the project's,
the full package would overwrite mlflow-tracing's files.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, answer_text, free_port, make_scratch_dir, make_settings, say
from lakebase_memory.config import Settings
from lakebase_memory.errors import ConfigurationError
from lakebase_memory.observability.tracing import (
    TRACE_SESSION,
    TRACE_USER,
    open_tracing,
    traced_stream,
    tracing_target,
)

pytestmark = pytest.mark.slow
SERVER_START_SECONDS = 240  # the first start installs the group's environment
EXPORT_WAIT_SECONDS = 30


class MlflowServer:
    """`mlflow server` on a free port with a SQLite store, as a process group of its own."""

    def __init__(self) -> None:
        self.folder = make_scratch_dir()
        self.url = f"http://127.0.0.1:{free_port()}"
        uv = os.environ.get("UV") or shutil.which("uv")
        assert uv, "the MLflow server of these tests is run by uv (`uv run pytest`)"
        environment = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        environment.pop("VIRTUAL_ENV", None)  # the group's own environment, not the project's
        self.log = (self.folder / "server.log").open("w")
        self.process = subprocess.Popen(
            [uv, "run", "--project", str(ROOT), "--isolated", "--only-group", "mlflow-server",
             "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.folder}/mlflow.db",
             "--artifacts-destination", str(self.folder / "artifacts"),
             "--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1], "--workers", "1"],
            cwd=self.folder, env=environment, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self) -> MlflowServer:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("mlflow server exited:\n" + self.output())
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError("mlflow server did not start:\n" + self.output())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()

    def output(self) -> str:
        self.log.flush()
        return (self.folder / "server.log").read_text()[-4000:]

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server() -> Iterator[MlflowServer]:
    pytest.importorskip("mlflow", reason="the `tracing` extra (mlflow-tracing) is not installed")
    server = MlflowServer().wait_ready()
    yield server
    server.close()


def traced_settings(database: str, url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "mlflow_tracing": True,
        "mlflow_tracking_uri": url,
        "mlflow_experiment_name": f"test-{uuid.uuid4().hex[:8]}",
    }
    return make_settings(database, **{**values, **overrides})


def turn_traces(settings: Settings, count: int) -> list:
    """The experiment's traces, oldest first, once `count` of them have been exported."""
    import mlflow

    # mlflow-tracing has no MlflowClient: the experiment's id from the server's REST API.
    found = httpx.get(
        f"{settings.mlflow_tracking_uri}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": settings.mlflow_experiment_name},
    )
    assert found.status_code == 200, found.text
    experiment_id = found.json()["experiment"]["experiment_id"]
    deadline = time.monotonic() + EXPORT_WAIT_SECONDS
    while True:
        mlflow.flush_trace_async_logging()  # exports run in MLflow's threads after each turn
        traces = mlflow.search_traces(locations=[experiment_id], return_type="list")
        if len(traces) >= count or time.monotonic() > deadline:
            return sorted(traces, key=lambda trace: trace.info.request_time)
        time.sleep(0.2)


def descends_from(span: object, root: object, spans: list) -> bool:
    by_id = {s.span_id: s for s in spans}
    parent = span.parent_id  # type: ignore[attr-defined]
    while parent is not None:
        if parent == root.span_id:  # type: ignore[attr-defined]
            return True
        parent = by_id[parent].parent_id
    return False


def test_each_turn_is_one_trace_with_its_model_and_tool_spans(
    mlflow_server: MlflowServer, database: str, serve: Callable
) -> None:
    settings = traced_settings(database, mlflow_server.url, trust_forwarded_identity=True)
    server = serve(settings)
    thread = f"traced-{uuid.uuid4().hex[:8]}"
    with server.client(headers={"X-Forwarded-Email": "ada@example.com"}) as client:
        first = say(client, "Remember that my cat is called Tom", thread)
        second = say(client, "What is my cat called?", thread)

    traces = turn_traces(settings, 2)
    assert len(traces) == 2, "one trace per turn"
    for trace, reply, question in zip(
        traces, (first, second), ("Remember that my cat is called Tom", "What is my cat called?"),
        strict=True,
    ):  # fmt: skip
        assert trace.info.trace_metadata[TRACE_SESSION] == thread
        assert trace.info.trace_metadata[TRACE_USER] == "ada@example.com"
        spans = trace.data.spans
        roots = [span for span in spans if span.parent_id is None]
        assert [root.name for root in roots] == ["turn"]
        root = roots[0]
        assert root.inputs == {"thread_id": thread, "input": question}
        assert root.outputs == {"answer": answer_text(reply)}
        assert all(descends_from(span, root, spans) for span in spans if span is not root)

    remembered = traces[0].data.spans
    models = [span for span in remembered if span.span_type == "CHAT_MODEL"]
    tools = [span for span in remembered if span.span_type == "TOOL"]
    assert len(models) == 2, "the model asks for the tool, then answers with its result"
    assert [span.name for span in tools] == ["save_user_memory"]
    assert tools[0].inputs is not None and "Tom" in str(tools[0].inputs)
    answered = traces[1].data.spans
    assert [span.span_type for span in answered].count("CHAT_MODEL") == 1
    assert not [span for span in answered if span.span_type == "TOOL"]


def test_a_streamed_turn_is_traced_too(
    mlflow_server: MlflowServer, database: str, serve: Callable
) -> None:
    settings = traced_settings(database, mlflow_server.url)
    server = serve(settings)
    body = {"input": [{"role": "user", "content": "Hello there"}], "stream": True}
    with server.client() as client:
        response = client.post("/responses", json=body)
    assert response.status_code == 200
    [trace] = turn_traces(settings, 1)
    assert trace.info.trace_metadata[TRACE_USER] == settings.local_user  # no forwarded header
    root = next(span for span in trace.data.spans if span.parent_id is None)
    assert "Hello there" in root.outputs["answer"]


def test_a_stopped_tracking_server_never_fails_a_turn(database: str, serve: Callable) -> None:
    pytest.importorskip("mlflow", reason="the `tracing` extra (mlflow-tracing) is not installed")
    mlflow_server = MlflowServer().wait_ready()  # its own: this test stops it
    try:
        settings = traced_settings(database, mlflow_server.url)
        server = serve(settings)
        with server.client() as client:
            say(client, "Before the outage", "outage")
            assert len(turn_traces(settings, 1)) == 1
            mlflow_server.stop()
            started = time.monotonic()
            reply = say(client, "During the outage", "outage")
            elapsed = time.monotonic() - started
    finally:
        mlflow_server.close()
    assert '"During the outage"' in answer_text(reply)
    assert elapsed < 2, f"the export runs after the turn, not in it ({elapsed:.2f} s)"


def test_an_unreachable_server_at_start_is_a_warning(
    database: str, serve: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("mlflow", reason="the `tracing` extra (mlflow-tracing) is not installed")
    settings = traced_settings(database, f"http://127.0.0.1:{free_port()}")  # nothing listens
    server = serve(settings)
    with server.client() as client:
        reply = say(client, "Anyone there?")
    assert '"Anyone there?"' in answer_text(reply)
    assert "cannot be reached" in caplog.text and "untraced" in caplog.text


def test_an_unknown_experiment_id_is_a_configuration_error(
    mlflow_server: MlflowServer, database: str
) -> None:
    settings = make_settings(
        database, mlflow_tracing=True, mlflow_tracking_uri=mlflow_server.url,
        mlflow_experiment_id="987654",
    )  # fmt: skip
    with pytest.raises(ConfigurationError, match="MLFLOW_EXPERIMENT_NAME/MLFLOW_EXPERIMENT_ID"):
        open_tracing(settings)


def test_databricks_without_credentials_is_a_configuration_error(
    database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("mlflow", reason="the `tracing` extra (mlflow-tracing) is not installed")
    pytest.importorskip("databricks.sdk")
    for name in [n for n in os.environ if n.startswith("DATABRICKS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = make_settings(
        database, mlflow_tracing=True, mlflow_tracking_uri="databricks", mlflow_experiment_id="1"
    )
    with pytest.raises(ConfigurationError, match="no credentials"):
        open_tracing(settings)


def test_databricks_tracing_without_the_sdk_says_which_extra(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("databricks.sdk", "databricks.sdk.core"):  # what the import finds: nothing
        monkeypatch.setitem(sys.modules, name, None)
    settings = make_settings(
        database, mlflow_tracing=True, mlflow_tracking_uri="databricks", mlflow_experiment_id="1"
    )
    with pytest.raises(ConfigurationError, match=r"uv sync --extra databricks"):
        open_tracing(settings)


def test_without_the_extra_tracing_on_is_a_configuration_error(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in sys.modules if name == "mlflow" or name.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` finds: nothing
    settings = make_settings(database, mlflow_tracing=True, mlflow_tracking_uri="http://x:5000")
    with pytest.raises(ConfigurationError, match=r"uv sync --extra tracing"):
        open_tracing(settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "MLFLOW_TRACKING_URI is not set"),
        ({"mlflow_tracking_uri": "databricks"}, "needs an experiment"),
        ({"databricks_host": "https://x.cloud.databricks.com"}, "needs an experiment"),
        (
            {"mlflow_tracking_uri": "http://x:5000", "mlflow_experiment_name": "a",
             "mlflow_experiment_id": "1"},
            "not both",
        ),
        ({"mlflow_tracking_uri": "sqlite:///mlflow.db"}, "traces go to an MLflow server"),
        ({"mlflow_tracking_uri": "./mlruns"}, "traces go to an MLflow server"),
    ],
)  # fmt: skip
def test_tracing_settings_that_cannot_work(
    database: str, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        tracing_target(make_settings(database, mlflow_tracing=True, **overrides))


def test_a_server_url_defaults_to_the_lakebase_memory_experiment(database: str) -> None:
    target = tracing_target(make_settings(database, mlflow_tracking_uri="http://x:5000"))
    assert (target.experiment_name, target.experiment_id) == ("lakebase-memory", None)
    on_databricks = make_settings(database, databricks_host="https://x", mlflow_experiment_id="42")
    assert tracing_target(on_databricks).tracking_uri == "databricks"


def test_tracing_off_is_the_plain_stream() -> None:
    marker = object()

    def astream(graph_input: object, config: object, **options: object) -> object:
        return (marker, graph_input, config, options)

    assert traced_stream(None, astream, "in", {"c": 1}, stream_mode="values") == (  # type: ignore[arg-type]
        marker, "in", {"c": 1}, {"stream_mode": "values"},
    )  # fmt: skip


def test_tracing_off_never_imports_mlflow(database: str) -> None:
    # A process of its own: this one has imported mlflow for the other tests.
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from conftest import LiveServer, make_settings, say
        with LiveServer(make_settings({database!r})) as server, server.client() as client:
            say(client, "Remember that tracing is off", "untraced")
        print("mlflow imported:", any(m.split(".")[0] == "mlflow" for m in sys.modules))
    """)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=environment, cwd=ROOT)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "mlflow imported: False" in run.stdout
