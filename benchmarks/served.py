"""`usage-dashboard serve` for a benchmark that drives the page in a browser: on a free
loopback port, in its own process group, its output kept, ready once it printed its URL;
`close()` stops it and its kernels (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Mapping, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from usage_lib.serving import voila_process  # noqa: E402


class ServedDashboard:
    """`usage-dashboard serve ARGS` with the caller's environment less its AQUEDUCT_
    variables, plus `env`."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], startup_timeout: float = 120) -> None:
        self.port = voila_process.free_port()
        environment = {key: value for key, value in os.environ.items()
                       if not key.startswith("AQUEDUCT_") and key != "QUERY_STRING"}
        environment.update({**env, "PYTHONUNBUFFERED": "1"})
        command = [sys.executable, "-m", "usage_lib.cli", "serve", *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.output: list[str] = []
        self.url = ""
        ready = threading.Event()

        def pump() -> None:
            for line in self.process.stdout:
                self.output.append(line)
                found = re.search(r"served at (http://\S+)", line)
                if found:
                    self.url = found.group(1)
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(startup_timeout):
            self.close()
            raise RuntimeError("usage-dashboard serve printed no URL:\n" + "".join(self.output[-40:]))

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
