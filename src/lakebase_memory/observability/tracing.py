"""Optional MLflow tracing: one trace per turn, to a Databricks workspace or any MLflow server.

A trace holds the turn (its root span: the new user input and the answer), and below it the
agent's graph as LangChain reports it: each node, each model call and each tool call, by
MLflow's LangChain callback. The trace's session is the thread id and its user the turn's
user (MLflow's standard `mlflow.trace.session` and `mlflow.trace.user` metadata), so the MLflow
UI groups a conversation's turns.

Off by default (MLFLOW_TRACING). Off, this module never imports `mlflow` and adds nothing to a
turn: `traced_stream(None, ...)` is the graph's own stream. On, MLflow exports each trace from
its own threads after the turn, so a slow or stopped tracking server never delays or fails a
turn (it costs the trace, with a warning in the log).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakebase_memory.config import Settings
from lakebase_memory.config.databricks import SDK_FIELDS, sdk_config
from lakebase_memory.errors import ConfigurationError, first_line
from lakebase_memory.memory.history import message_text

if TYPE_CHECKING:
    from langchain_core.callbacks import BaseCallbackHandler
    from mlflow.entities import LiveSpan

logger = logging.getLogger(__name__)

TRACE_SESSION = "mlflow.trace.session"  # MLflow's standard metadata keys
TRACE_USER = "mlflow.trace.user"
TURN_SPAN = "turn"
DEFAULT_EXPERIMENT = "lakebase-memory"
INSTALL_HINT = (
    "MLFLOW_TRACING is on, but the `tracing` extra (mlflow-tracing) is not installed: run "
    "`uv sync --extra tracing` (or `pip install 'lakebase-memory[tracing]'`), or set "
    "MLFLOW_TRACING=false."
)
# MLflow's defaults for its own process environment, unless set there already. Telemetry: a
# server sends no usage data to MLflow's makers on its own. HTTP: MLflow retries a request for
# about 4 minutes by default; a trace export that keeps failing then holds a worker thread (and
# a stopping server, which drains the queue) that long. Two retries and 10 s per request
# bound a stopped tracking server's cost to seconds.
MLFLOW_ENVIRONMENT = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
# What MLflow's set_tracking_uri and set_experiment also write to the process environment (for
# subprocesses): the same names as the settings', so a second app or worker started in this
# process would read them as its own configuration (and the id beside a name as a conflict).
MLFLOW_SET_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")
# Answers of a tracking server that mean the configuration is wrong, not the server down.
CONFIGURATION_ERROR_CODES = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_DOES_NOT_EXIST",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "BAD_REQUEST",
}


@dataclass(frozen=True)
class TracingTarget:
    """Where traces go: a tracking URI and one experiment, by id or by name."""

    tracking_uri: str
    experiment_id: str | None
    experiment_name: str | None

    @property
    def on_databricks(self) -> bool:
        return self.tracking_uri == "databricks" or self.tracking_uri.startswith("databricks://")

    def describe(self) -> str:
        experiment = self.experiment_id or self.experiment_name
        return f"MLflow at {self.tracking_uri}, experiment {experiment}"


def tracing_target(settings: Settings) -> TracingTarget:
    """The target the settings name, or a ConfigurationError saying what is missing."""
    uri = settings.mlflow_tracking_uri
    if uri is None:
        databricks_auth = settings.on_databricks_app or any(
            getattr(settings, field) for field in SDK_FIELDS
        )
        if not databricks_auth:
            raise ConfigurationError(
                "MLFLOW_TRACING is on, but MLFLOW_TRACKING_URI is not set: set it to an MLflow "
                "server's URL (e.g. http://127.0.0.1:5000) or to `databricks` (with "
                "DATABRICKS_HOST and a token or a profile)."
            )
        uri = "databricks"
    name, experiment_id = settings.mlflow_experiment_name, settings.mlflow_experiment_id
    if name and experiment_id:
        raise ConfigurationError(
            "Set one of MLFLOW_EXPERIMENT_NAME and MLFLOW_EXPERIMENT_ID, not both."
        )
    target = TracingTarget(uri.strip(), experiment_id, name)
    if not (target.on_databricks or target.tracking_uri.startswith(("http://", "https://"))):
        # mlflow-tracing has no local stores (a folder, sqlite:///...): only a server's API.
        raise ConfigurationError(
            f"MLFLOW_TRACKING_URI={target.tracking_uri!r}: traces go to an MLflow server "
            "(http://host:port; run one with `uvx mlflow server --backend-store-uri "
            "sqlite:///mlflow.db`) or to `databricks`."
        )
    if not name and not experiment_id:
        if target.on_databricks:
            # A workspace has no default experiment an app may write to: it must be named.
            raise ConfigurationError(
                "MLFLOW_TRACING to Databricks needs an experiment: set MLFLOW_EXPERIMENT_ID "
                "(e.g. from the app's MLflow experiment resource) or MLFLOW_EXPERIMENT_NAME to "
                "a workspace path such as /Users/<you>/lakebase-memory."
            )
        target = TracingTarget(target.tracking_uri, None, DEFAULT_EXPERIMENT)
    return target


@dataclass(frozen=True)
class TurnTracing:
    """Traces turns to one experiment (see `open_tracing`)."""

    target: TracingTarget
    experiment_id: str

    def stream(
        self,
        astream: Callable[..., AsyncIterator[Any]],
        graph_input: Any,
        config: dict[str, Any],
        **options: Any,
    ) -> AsyncIterator[Any]:
        return self._traced(astream, graph_input, config, options)

    async def _traced(
        self,
        astream: Callable[..., AsyncIterator[Any]],
        graph_input: Any,
        config: dict[str, Any],
        options: dict[str, Any],
    ) -> AsyncIterator[Any]:
        opened = _open_turn_span(config, graph_input)
        if opened is None:  # MLflow failed to start the trace: the turn runs untraced
            async for item in astream(graph_input, config, **options):
                yield item
            return
        manager, span = opened
        state: Any = None
        error: BaseException | None = None
        try:
            async for item in astream(graph_input, _with_tracer(config), **options):
                if isinstance(item, tuple) and len(item) == 2 and item[0] == "values":
                    state = item[1]  # the thread's state after each step: the last holds the answer
                yield item
        except BaseException as failure:  # also a cancelled turn: recorded as the trace's error
            error = failure
            raise
        finally:
            _close_turn_span(manager, span, state, error)


def traced_stream(
    tracing: TurnTracing | None,
    astream: Callable[..., AsyncIterator[Any]],
    graph_input: Any,
    config: dict[str, Any],
    **options: Any,
) -> AsyncIterator[Any]:
    """`astream(graph_input, config, **options)`, traced when tracing is on.

    Off (`tracing` is None), this is the call itself: no wrapper, no callback, no cost."""
    if tracing is None:
        return astream(graph_input, config, **options)
    return tracing.stream(astream, graph_input, config, **options)


def open_tracing(settings: Settings) -> TurnTracing | None:
    """The turns' tracing when MLFLOW_TRACING is on, checked against the tracking server.

    Raises ConfigurationError for what only the configuration can fix (the extra missing, no
    tracking URI, an unknown experiment, refused credentials). A tracking server that cannot be
    reached is an outage, not a mistake: the app starts untraced, with a warning."""
    if not settings.mlflow_tracing:
        return None  # and mlflow is never imported
    target = tracing_target(settings)
    if target.on_databricks:
        _check_databricks_auth(settings, target)
    for name, value in MLFLOW_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if target.on_databricks:
        _export_databricks_auth(settings)
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
    except ImportError as error:
        raise ConfigurationError(INSTALL_HINT) from error
    try:
        with _environment_kept(MLFLOW_SET_VARIABLES):
            mlflow.set_tracking_uri(target.tracking_uri)
            experiment = mlflow.set_experiment(
                experiment_name=target.experiment_name, experiment_id=target.experiment_id
            )
    except MlflowException as error:
        if error.error_code in CONFIGURATION_ERROR_CODES:
            raise ConfigurationError(
                f"MLFLOW_TRACING: {target.describe()} refused: {first_line(error)}. Check "
                "MLFLOW_EXPERIMENT_NAME/MLFLOW_EXPERIMENT_ID and the credentials, or set "
                "MLFLOW_TRACING=false."
            ) from error
        return _untraced(target, error)
    except OSError as error:
        return _untraced(target, error)
    logger.info("tracing turns to %s (id %s)", target.describe(), experiment.experiment_id)
    return TurnTracing(target, experiment.experiment_id)


def _untraced(target: TracingTarget, error: Exception) -> None:
    logger.warning(
        "MLFLOW_TRACING: %s cannot be reached (%s); this process runs its turns untraced. "
        "Restart the app once the server answers.",
        target.describe(), first_line(error),
    )  # fmt: skip


@contextmanager
def _environment_kept(names: tuple[str, ...]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_databricks_auth(settings: Settings, target: TracingTarget) -> None:
    """The SDK's credentials as the app resolves them: MLflow would report them missing as an
    unreachable server, and the app would start untraced instead of saying what to set."""
    profile = target.tracking_uri.removeprefix("databricks").removeprefix("://") or None
    try:
        sdk_config(settings, **({"profile": profile} if profile else {}))
    except ConfigurationError as error:  # the SDK is missing
        raise ConfigurationError(f"MLFLOW_TRACING to Databricks: {error}") from error
    except ValueError as error:
        raise ConfigurationError(
            f"MLFLOW_TRACING to Databricks: no credentials ({first_line(error)}). Set "
            "DATABRICKS_HOST with DATABRICKS_TOKEN, DATABRICKS_CLIENT_ID/SECRET or "
            "DATABRICKS_CONFIG_PROFILE, or set MLFLOW_TRACING=false."
        ) from error


def _export_databricks_auth(settings: Settings) -> None:
    """MLflow authenticates to Databricks with the SDK, which reads only the process
    environment; the app's Databricks settings also come from `.env` files."""
    for field in SDK_FIELDS:
        value = getattr(settings, field)
        if value:
            os.environ.setdefault(field.upper(), str(value))


def _open_turn_span(
    config: dict[str, Any], graph_input: Any
) -> tuple[AbstractContextManager[LiveSpan], LiveSpan] | None:
    """Start the turn's trace as the current span (so the graph's spans nest below it)."""
    import mlflow
    from mlflow.entities import SpanType

    configurable = config.get("configurable") or {}
    question = _input_text(graph_input)
    try:
        manager = mlflow.start_span(name=TURN_SPAN, span_type=SpanType.AGENT)
        span = manager.__enter__()
    except Exception as error:
        logger.warning("MLflow could not start the turn's trace: %s", first_line(error))
        return None
    try:
        span.set_inputs({"thread_id": configurable.get("thread_id"), "input": question})
        metadata = {TRACE_SESSION: str(configurable.get("thread_id", ""))}
        if configurable.get("user_id") is not None:
            metadata[TRACE_USER] = str(configurable["user_id"])
        mlflow.update_current_trace(metadata=metadata, request_preview=question)
    except Exception as error:  # the trace lacks its details; the turn goes on
        logger.warning("MLflow could not describe the turn's trace: %s", first_line(error))
    return manager, span


def _close_turn_span(
    manager: AbstractContextManager[LiveSpan],
    span: LiveSpan,
    state: Any,
    error: BaseException | None,
) -> None:
    import mlflow

    try:
        answer = _answer_text(state)
        span.set_outputs({"answer": answer})
        mlflow.update_current_trace(response_preview=answer)
    except Exception as failure:
        logger.warning("MLflow could not record the turn's answer: %s", first_line(failure))
    try:
        if error is None:
            manager.__exit__(None, None, None)
        else:
            manager.__exit__(type(error), error, error.__traceback__)
    except Exception as failure:
        logger.warning("MLflow could not end the turn's trace: %s", first_line(failure))


def _with_tracer(config: dict[str, Any]) -> dict[str, Any]:
    """The config with MLflow's LangChain callback added: a span per node, model and tool."""
    # Inline: the callback runs in the turn's own task, not a thread per event (a streamed
    # answer has one per token), and sees the turn's span as the current one.
    tracer = _tracer_class()(run_inline=True)
    callbacks = config.get("callbacks")
    if callbacks is None:
        merged: Any = [tracer]
    elif isinstance(callbacks, list):
        merged = [*callbacks, tracer]
    else:  # a callback manager
        merged = callbacks.copy()
        merged.add_handler(tracer, inherit=True)
    return {**config, "callbacks": merged}


@functools.cache
def _tracer_class() -> type[BaseCallbackHandler]:
    """MLflow's LangChain callback, for the runs LangGraph describes by name alone."""
    from mlflow.langchain.langchain_tracer import MlflowLangchainTracer

    class TurnTracer(MlflowLangchainTracer):
        # LangGraph starts its graph, nodes and edges with `serialized=None` and a name (an
        # edge's lambda without one); MLflow's tracer reads `serialized` for the span's name
        # and would drop the span (and with it its children) with a warning.
        def _assign_span_name(self, serialized: dict[str, Any] | None, default_name: str) -> str:
            return str(super()._assign_span_name(serialized or {}, default_name))

    return TurnTracer


def _input_text(graph_input: Any) -> str:
    messages = graph_input.get("messages", []) if isinstance(graph_input, dict) else []
    return "\n".join(_texts(m for m in messages if getattr(m, "type", None) == "human"))


def _answer_text(state: Any) -> str:
    messages = state.get("messages", []) if isinstance(state, dict) else []
    last = messages[-1] if messages else None
    return message_text(last) if last is not None and getattr(last, "type", None) == "ai" else ""


def _texts(messages: Iterator[Any]) -> list[str]:
    return [text for text in (message_text(m) for m in messages) if text]
