"""Several worker processes behind one socket, and the directory they share.

With more than one worker, prometheus-client's multiprocess mode needs a directory named by
`PROMETHEUS_MULTIPROC_DIR`, set before any worker imports the client. The same directory carries
what the workers must know of each other:

- `metrics_directory`: the launcher prepares the directory (and cleans it up) around the workers.
- `reserve_metric_files`: a worker allocates its files before prometheus-client maps them.
  The client sizes a new file with `truncate`, which on most filesystems (tmpfs, ext4) reserves
  no space; on a full filesystem the first write through the mapping then kills the worker with
  SIGBUS, before any line is logged, and every replacement dies the same way. Allocated first,
  the same shortage is an `OSError` the worker can report and survive (h2o/h2o #910 and
  prometheus/prometheus #19092 fixed the same crash the same way).
- `mark_degraded`: a worker that could not reserve its files keeps a marker
  `metrics-degraded-<pid>` (an empty file needs no data blocks), so whichever worker answers a
  scrape can say how many workers' numbers are missing.
- `mark_dead_workers`: the live gauges of a worker that died stop counting.
- `WorkerBoard`: readiness across workers. `/readyz` is answered by whichever worker accepts the
  connection, so a pod could say "ready" while another worker is still loading its model and
  answering 503. Each worker therefore keeps a marker file `ready-<pid>` while it is ready, and a
  worker reports ready only when as many live workers are ready as were started.

Hand-written because uvicorn's supervisor offers no shared state between workers and, unlike
gunicorn's `child_exit` hook, no callback when it replaces a dead worker.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import multiprocess

if TYPE_CHECKING:
    from ml_prod_api.serving.readiness import Readiness

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable
MARKER_PREFIX = "ready-"
DEGRADED_PREFIX = "metrics-degraded-"
DRAINING_PREFIX = "draining-"
# prometheus-client's own initial file size (`mmap_dict._INITIAL_MMAP_SIZE`): a reserved file looks
# to the client exactly like one it made itself, and it grows a file only past this size.
RESERVED_FILE_BYTES = 1 << 16
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def metrics_directory(workers: int) -> Iterator[None]:
    """Set up prometheus-client's multiprocess directory for several workers, and clean it.

    An existing `PROMETHEUS_MULTIPROC_DIR` is honoured (emptied first: files of an earlier run
    would be counted again); otherwise a temporary one is made for more than one worker.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for pattern in ("*.db", f"{MARKER_PREFIX}*", f"{DEGRADED_PREFIX}*", f"{DRAINING_PREFIX}*"):
            for stale in Path(given).glob(pattern):
                stale.unlink()
        yield
        return
    if workers == 1:
        yield
        return
    directory = tempfile.mkdtemp(prefix="ml-prod-api-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def reserve_metric_files(directory: str, kinds: Iterable[str], pid: int | None = None) -> None:
    """Allocate, on disk, the file prometheus-client will map for each kind of metric of this
    process (`counter_<pid>.db`, `gauge_liveall_<pid>.db`...): `RESERVED_FILE_BYTES`, or the
    whole of a larger file already there (one of an earlier process with the same pid, which the
    client reuses).

    Raises `OSError` (ENOSPC, EDQUOT, EFBIG...) when the filesystem cannot hold them; the files
    this call created are removed again.
    """
    pid = pid or os.getpid()
    created: list[Path] = []
    try:
        for kind in kinds:
            path = Path(directory) / f"{kind}_{pid}.db"
            existed = path.exists()
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if not existed:
                created.append(path)
            try:
                _allocate(fd, max(RESERVED_FILE_BYTES, os.fstat(fd).st_size))
            finally:
                os.close(fd)
    except OSError:
        for path in created:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


def _allocate(fd: int, size: int) -> None:
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
    else:  # macOS has none; zeros written past the end allocate the same blocks
        end = os.fstat(fd).st_size
        if end < size:
            os.pwrite(fd, bytes(size - end), end)


def mark_degraded(directory: str, pid: int | None = None) -> None:
    """Leave the marker of a worker whose metrics are not in the directory (best effort: a
    filesystem out of inodes as well cannot take it)."""
    with contextlib.suppress(OSError):
        (Path(directory) / f"{DEGRADED_PREFIX}{pid or os.getpid()}").touch()


def degraded_workers(directory: str) -> int:
    return _live_markers(Path(directory), DEGRADED_PREFIX)


def _live_markers(directory: Path, prefix: str) -> int:
    """Markers `<prefix><pid>` of live processes; those of dead ones are removed."""
    count = 0
    for path in directory.glob(f"{prefix}*"):
        try:
            pid = int(path.name.removeprefix(prefix))
        except ValueError:
            continue
        if pid_alive(pid):
            count += 1
        else:  # a worker that died without cleaning up
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return count


def mark_dead_workers(directory: str) -> list[int]:
    """Drop the live-gauge files of workers that no longer exist (the files name their pid)."""
    dead = []
    for path in Path(directory).glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.match(path.name)
        if match and not pid_alive(int(match.group(1))):
            dead.append(int(match.group(1)))
    for pid in set(dead):
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    return sorted(set(dead))


class WorkerBoard:
    def __init__(self, directory: Path, expected: int, pid: int | None = None) -> None:
        self.directory = directory
        self.expected = expected
        self.marker = directory / f"{MARKER_PREFIX}{pid or os.getpid()}"
        self.draining_marker = directory / f"{DRAINING_PREFIX}{pid or os.getpid()}"

    def publish(self, readiness: Readiness) -> None:
        """Called by the inference service on every readiness change of this worker."""
        if readiness.ready:
            self.marker.touch()
        else:
            with contextlib.suppress(FileNotFoundError):
                self.marker.unlink()
        # SIGTERM reaches the workers one after another: a worker still ready, asked in between,
        # must answer "draining" like its sibling, not "loading". The marker stays until this
        # process is gone (`_live_markers` drops it then). ReadyState is a StrEnum, compared by
        # value: this module is imported before the serving package may be.
        if readiness.state == "draining":
            self.draining_marker.touch()

    def ready_workers(self) -> int:
        return _live_markers(self.directory, MARKER_PREFIX)

    def draining_workers(self) -> int:
        return _live_markers(self.directory, DRAINING_PREFIX)
