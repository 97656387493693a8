"""`start-app` as a real process: started, read until ready, interrupted, killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from conftest import free_port

START_APP = Path(sys.executable).parent / "start-app"


class App:
    def __init__(
        self,
        cwd: Path,
        data_dir: Path,
        *options: str,
        port: int | None = None,
        **env: str,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        foreign = ("DATABASE_", "PG", "DATABRICKS_", "LAKEBASE_")
        environment = {k: v for k, v in os.environ.items() if not k.startswith(foreign)}
        environment.update(
            {"MODEL_BACKEND": "echo", "LAKEBASE_MEMORY_DATA_DIR": str(data_dir), **env}
        )
        arguments = [] if port else ["--port", str(self.port)]
        self.process = subprocess.Popen(
            [str(START_APP), *arguments, *options], cwd=cwd, env=environment,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.output: list[str] = []

    def wait_ready(self, timeout: float = 60) -> App:
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                raise AssertionError("start-app exited:\n" + "".join(self.output))
            self.output.append(line)
            if "is ready at" in line:
                assert f"http://127.0.0.1:{self.port}/" in line
                return self
        raise AssertionError("start-app did not become ready:\n" + "".join(self.output))

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def logs(self) -> str:
        assert self.process.stdout is not None
        return "".join(self.output) + self.process.stdout.read()


def postmaster(data_dir: Path) -> psutil.Process | None:
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    if not pid_file.exists():
        return None
    try:
        return psutil.Process(int(pid_file.read_text().split()[0]))
    except psutil.NoSuchProcess:
        return None
