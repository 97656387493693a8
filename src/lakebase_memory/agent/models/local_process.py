"""Starts, checks, watches and restarts the local model's process (`local_server`).

The app opens the listening socket once and hands it to every process it starts, so the
model keeps one address for the app's lifetime. A start counts only after a real chat
completion answered (a broken llama.cpp build crashes exactly there), so a model that cannot
run stops the app's start-up with one line and the fix, instead of killing the first turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import httpx

from lakebase_memory.agent.models.local_server import API_KEY_VARIABLE, MODEL_ALIAS
from lakebase_memory.errors import ModelUnavailableError

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 120.0  # loading 100 MB of weights takes about a second
RESTART_WAIT_SECONDS = 30.0  # how long a turn waits for a restarting model
CRASH_WINDOW_SECONDS = 60.0
CRASHES_BEFORE_GIVING_UP = 5  # within the window: the model is broken, not unlucky
REBUILD_HINT = (
    "Rebuild llama-cpp-python with the project's portable build settings: "
    "`uv cache clean llama-cpp-python && uv sync --reinstall-package llama-cpp-python`; "
    "or choose another model with MODEL_BACKEND=openai|databricks|echo."
)
# Variables the model process needs; nothing else of the app's environment (its secrets, or
# names that llama-cpp-python's own settings would read, such as MODEL or PORT) reaches it.
PASSED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH")
PASSED_PREFIXES = ("OMP_", "OPENBLAS_", "GGML_", "LLAMA_")


def exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


class LocalModelProcess:
    """One supervised model process at a time; `ready()` before every use."""

    def __init__(
        self,
        model_path: Path,
        *,
        context_tokens: int,
        threads: int,
        command: Sequence[str] | None = None,
        start_timeout: float = START_TIMEOUT_SECONDS,
    ) -> None:
        self.model_path = model_path
        self.context_tokens = context_tokens
        self.threads = threads
        self._start_timeout = start_timeout
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        port = self._socket.getsockname()[1]
        root = f"http://127.0.0.1:{port}"
        self.base_url = f"{root}/v1"  # for OpenAI clients
        self.api_key = secrets.token_urlsafe(24)
        self._command = list(command) if command else self._default_command()
        self._http = httpx.AsyncClient(
            base_url=root,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=httpx.Timeout(30.0, connect=5.0),
        )
        self._process: asyncio.subprocess.Process | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self._failure: str | None = None  # set while the model cannot be started at all
        self._exits: deque[float] = deque(maxlen=CRASHES_BEFORE_GIVING_UP)
        self._output: deque[str] = deque(maxlen=40)
        self._readers: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.starts = 0
        self.last_exit: str | None = None

    # --- life cycle -----------------------------------------------------------------------

    @classmethod
    async def start(cls, model_path: Path, **options: object) -> LocalModelProcess:
        """Start the model and check it answers; raises ModelUnavailableError with the fix."""
        model = cls(model_path, **options)  # type: ignore[arg-type]
        try:
            await model._launch_checked()
        except BaseException:
            await model.close()
            raise
        model._watcher = asyncio.create_task(model._watch(), name="local-model-watcher")
        return model

    async def close(self) -> None:
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._stop_process()
        for reader in list(self._readers):
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self._http.aclose()
        self._socket.close()

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    async def ready(self, timeout: float = RESTART_WAIT_SECONDS) -> None:
        """Return once the model answers requests; wait for a restart in progress."""
        if self._ready.is_set():
            return
        if self._failure is not None:
            raise ModelUnavailableError(self._failure)
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise ModelUnavailableError(
                f"The local model is restarting (it {self.last_exit}) and was not back within "
                f"{timeout:.0f} s; try again shortly."
            ) from None

    async def stopped_reason(self, since_start: int, wait: float = 2.0) -> str | None:
        """Why the process that served start number `since_start` is gone, or None if it
        still runs. A dropped connection comes a moment before the exit is seen: wait."""
        deadline = time.monotonic() + wait
        while True:
            if self.starts != since_start or self._process is None:
                return self.last_exit or "stopped"
            if self._process.returncode is not None:
                return exit_reason(self._process.returncode)
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)

    # --- the model's own endpoints --------------------------------------------------------

    async def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the model's own tokenizer."""
        await self.ready()
        response = await self._http.post(
            "/extras/tokenize/count", json={"input": text, "model": MODEL_ALIAS}
        )
        response.raise_for_status()
        return int(response.json()["count"])

    # --- internals ------------------------------------------------------------------------

    def _default_command(self) -> list[str]:
        return [
            sys.executable, "-m", "lakebase_memory.agent.models.local_server",
            "--model", str(self.model_path),
            "--context-tokens", str(self.context_tokens),
            "--threads", str(self.threads),
        ]  # fmt: skip

    async def _launch_checked(self) -> None:
        self._ready.clear()
        fd = self._socket.fileno()
        env = {k: v for k, v in os.environ.items()
               if k in PASSED_VARIABLES or k.startswith(PASSED_PREFIXES)}  # fmt: skip
        env[API_KEY_VARIABLE] = self.api_key
        self._output.clear()
        self._process = process = await asyncio.create_subprocess_exec(
            *self._command,
            "--fd",
            str(fd),
            pass_fds=(fd,),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the app, which stops the model in order
        )
        self.starts += 1
        reader = asyncio.create_task(self._read_output(process))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        step = "loading the model"
        try:
            async with asyncio.timeout(self._start_timeout):
                await self._wait_listening(process)
                step = "answering its start-up check (a two-message chat completion)"
                await self._check_answers(process)
        except TimeoutError:
            await self._stop_process()
            raise ModelUnavailableError(
                f"The local model did not start within {self._start_timeout:.0f} s "
                f"(while {step}). {REBUILD_HINT}"
            ) from None
        except ModelUnavailableError:
            await self._stop_process()
            raise
        except httpx.HTTPError as error:
            reason = await self._exit_of(process)
            await self._stop_process()
            raise self._start_failure(step, reason or f"{type(error).__name__}: {error}") from None
        self._failure = None
        self._ready.set()
        logger.info("local model ready (process %s, %s)", process.pid, self.model_path.name)

    async def _wait_listening(self, process: asyncio.subprocess.Process) -> None:
        # The socket accepts before the model is loaded (it is ours): ask until it answers.
        while True:
            if process.returncode is not None:
                raise self._start_failure("loading the model", exit_reason(process.returncode))
            try:
                response = await self._http.get("/v1/models", timeout=2.0)
            except (httpx.TimeoutException, httpx.TransportError):
                await asyncio.sleep(0.1)
                continue
            if response.status_code == 200:
                return
            await asyncio.sleep(0.1)

    async def _check_answers(self, process: asyncio.subprocess.Process) -> None:
        body = {
            "model": MODEL_ALIAS,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Say hello."},
            ],
            "max_tokens": 2,
        }
        response = await self._http.post("/v1/chat/completions", json=body, timeout=60.0)
        if response.status_code != 200 or not response.json().get("choices"):
            raise self._start_failure(
                "answering its start-up check", f"HTTP {response.status_code}: {response.text}"
            )

    def _start_failure(self, step: str, reason: str) -> ModelUnavailableError:
        if reason.startswith("killed by") and "SIGKILL" not in reason and "SIGTERM" not in reason:
            return ModelUnavailableError(
                f"The local model's process crashed ({reason.removeprefix('killed by ')}) while "
                f"{step}: the llama-cpp-python build does not run on this CPU. {REBUILD_HINT}"
            )
        said = self._last_output()
        return ModelUnavailableError(
            f"The local model's process {reason} while {step}"
            + (f" ({said})" if said else "")
            + f". {REBUILD_HINT}"
        )

    def _last_output(self) -> str:
        for line in reversed(self._output):
            if line.strip() and not line.startswith(("INFO", "Traceback", "  ")):
                return line.strip()
        return ""

    async def _exit_of(self, process: asyncio.subprocess.Process) -> str | None:
        try:
            await asyncio.wait_for(process.wait(), 2.0)
        except TimeoutError:
            return None
        return exit_reason(process.returncode or 0)

    async def _read_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._output.append(line)
                logger.debug("local model: %s", line)

    async def _watch(self) -> None:
        """Restart the process whenever it ends, backing off when it keeps crashing."""
        delay = 0.0
        while not self._closing:
            process = self._process
            if process is not None and process.returncode is None:
                await process.wait()
                if self._closing:
                    return
                self._ready.clear()
                self.last_exit = exit_reason(process.returncode or 0)
                self._exits.append(time.monotonic())
                logger.warning("local model process %s %s; restarting it",
                               process.pid, self.last_exit)  # fmt: skip
            if self._crash_looping():
                self._failure = (
                    f"The local model's process ended {CRASHES_BEFORE_GIVING_UP} times within "
                    f"{CRASH_WINDOW_SECONDS:.0f} s (last: {self.last_exit}); it is started "
                    f"again every {RESTART_WAIT_SECONDS:.0f} s. {REBUILD_HINT}"
                )
                delay = RESTART_WAIT_SECONDS
            await asyncio.sleep(delay)
            try:
                await self._launch_checked()
                delay = 0.0
            except ModelUnavailableError as error:
                self.last_exit = str(error)
                self._exits.append(time.monotonic())
                logger.error("%s", error)
                delay = min(max(delay * 2, 1.0), RESTART_WAIT_SECONDS)

    def _crash_looping(self) -> bool:
        return (
            len(self._exits) == CRASHES_BEFORE_GIVING_UP
            and self._exits[-1] - self._exits[0] < CRASH_WINDOW_SECONDS
        )

    async def _stop_process(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5.0)
        except TimeoutError:
            process.kill()
            await process.wait()
