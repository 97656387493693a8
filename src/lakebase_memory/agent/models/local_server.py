"""The local model's own process: llama-cpp-python's OpenAI-compatible server on a socket the
app opened and handed down (`python -m lakebase_memory.agent.models.local_server`).

Only this process loads native code (llama.cpp): if it crashes, the app's server lives on,
answers the turn with 503 `model_unavailable` and starts this process again. The socket stays
the parent's, so the model's address never changes and a request made while it restarts waits
in the socket's queue instead of being refused.
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time

import uvicorn

API_KEY_VARIABLE = "LAKEBASE_MEMORY_MODEL_KEY"  # not on the command line: `ps` shows that
MODEL_ALIAS = "local"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--fd", type=int, required=True, help="listening socket to serve on")
    parser.add_argument("--context-tokens", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    _exit_with_parent()

    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    server_settings = ServerSettings(
        api_key=os.environ[API_KEY_VARIABLE],
        # The default cuts a streaming answer short whenever another request arrives: one
        # thread's turn would end another's. Requests queue instead, one generation at a time.
        interrupt_requests=False,
    )
    model_settings = ModelSettings(
        model=args.model,
        model_alias=MODEL_ALIAS,
        n_ctx=args.context_tokens,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        # The server's default computes the logits of every prompt token (for echo/logprobs):
        # 10x slower prompt evaluation for nothing the app asks for.
        logits_all=False,
        verbose=False,
    )
    app = create_app(server_settings=server_settings, model_settings=[model_settings])
    listening = socket.socket(fileno=args.fd)  # family and type read from the descriptor
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[listening])


def _exit_with_parent() -> None:
    """End this process when the app's process is gone (killed, say): no orphaned model keeps
    its memory and the app's port."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


if __name__ == "__main__":
    main()
