"""Readiness across worker processes.

With several workers behind one socket, `/readyz` is answered by whichever worker accepts the
connection, so a pod could say "ready" while another worker is still loading its model and
answering 503. Each worker therefore keeps a marker file
`ready-<pid>` in the shared multiprocess directory while it is ready, and a worker reports ready
only when as many live workers are ready as were started. Hand-written: uvicorn's supervisor
offers no shared state between workers.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ml_prod_api.metrics import pid_alive
from ml_prod_api.serving.readiness import Readiness

MARKER_PREFIX = "ready-"


class WorkerBoard:
    def __init__(self, directory: Path, expected: int, pid: int | None = None) -> None:
        self.directory = directory
        self.expected = expected
        self.marker = directory / f"{MARKER_PREFIX}{pid or os.getpid()}"

    def publish(self, readiness: Readiness) -> None:
        """Called by the inference service on every readiness change of this worker."""
        if readiness.ready:
            self.marker.touch()
        else:
            with contextlib.suppress(FileNotFoundError):
                self.marker.unlink()

    def ready_workers(self) -> int:
        count = 0
        for path in self.directory.glob(f"{MARKER_PREFIX}*"):
            try:
                pid = int(path.name.removeprefix(MARKER_PREFIX))
            except ValueError:
                continue
            if pid_alive(pid):
                count += 1
            else:  # a worker that died without cleaning up
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return count

    def all_ready(self) -> bool:
        return self.ready_workers() >= self.expected
