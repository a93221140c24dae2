"""A server whose metrics directory sits on a full filesystem, without root.

Two ways: a 64 KiB tmpfs filled to the last byte and mounted over the directory in a user and
mount namespace of the server's own (`unshare`, where the kernel allows unprivileged user
namespaces; the mount goes away with the server), and a file-size limit (`RLIMIT_FSIZE`) that
every worker inherits, which fails the same file extension with `EFBIG` instead of `ENOSPC`.
Both return an argv for `run_server` / `start_logged_server` (`{port}` is filled in there).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.servers import serve_argv


def user_namespaces_work() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "true"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return probe.returncode == 0


def full_tmpfs_argv(directory: Path) -> list[str]:
    """`serve` with `directory` replaced by a 64 KiB tmpfs with no byte left (ENOSPC, as on a
    full emptyDir or disk)."""
    script = (
        'mount -t tmpfs -o size=64k tmpfs "$1" || exit 97; '
        'head -c 1048576 /dev/zero > "$1/filler" 2>/dev/null; '
        'shift; exec "$@"'
    )
    unshare = shutil.which("unshare") or "unshare"
    return [
        unshare,
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        script,
        "sh",
        str(directory),
        *serve_argv(),
    ]


def file_size_limit_argv(limit_bytes: int) -> list[str]:
    """`serve` where no file may grow past `limit_bytes` (EFBIG: Python ignores SIGXFSZ)."""
    code = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, {limit_bytes})); "
        "os.execv(sys.executable, [sys.executable] + sys.argv[1:])"
    )
    return [sys.executable, "-c", code, *serve_argv()[1:]]
