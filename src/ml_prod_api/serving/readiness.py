"""Readiness: the states an inference service moves through, and the moves it may make.

LOADING until every model instance is loaded and warm, then READY; FAILED when one cannot load;
DRAINING from the first SIGTERM, so the load balancer stops sending while queued work still runs;
STOPPED once the inference threads are told to finish. Hand-written because it is five states:
a state-machine library would add a dependency without removing a line of logic.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass


class ReadyState(enum.StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    DRAINING = "draining"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Readiness:
    state: ReadyState
    reason: str | None = None

    @property
    def ready(self) -> bool:
        return self.state is ReadyState.READY

    @property
    def accepts_work(self) -> bool:
        # While draining, work is still accepted: the load balancer needs the grace period to
        # notice the failing readiness probe.
        return self.state in (ReadyState.READY, ReadyState.DRAINING)

    def describe(self) -> str:
        """The state, and why it failed, for callers and probes: without the artifact's absolute
        path and file digests, which tell an outsider about the deployment (the log line of the
        failure keeps them for the operator)."""
        if self.state is ReadyState.FAILED:
            return f"failed: {public_reason(self.reason or 'unknown')}"
        return str(self.state.value)


# An absolute path (kept: its last part, the file's name) and a hex digest or its prefix.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:()'\"]+/)*([^\s/:()'\"]*)")
_DIGEST = re.compile(r"\b[0-9a-f]{12,}\b(?:\.\.\.)?")


def public_reason(reason: str) -> str:
    """`reason` with absolute paths shortened to their file name and digests left out."""
    return _DIGEST.sub("<digest>", _ABSOLUTE_PATH.sub(r"\1", reason))


class ReadinessMachine:
    """The current readiness and its transitions; every change is reported to `on_change`."""

    def __init__(self, on_change: Callable[[Readiness], None]) -> None:
        self._current = Readiness(ReadyState.LOADING)
        self._on_change = on_change

    @property
    def current(self) -> Readiness:
        return self._current

    def loaded(self) -> None:
        """Every instance loaded: READY, unless a drain or stop came first."""
        if self._current.state is ReadyState.LOADING:
            self._set(Readiness(ReadyState.READY))

    def failed(self, reason: str) -> None:
        """An instance could not load: FAILED, whatever came before, so the reason is shown."""
        self._set(Readiness(ReadyState.FAILED, reason))

    def draining(self) -> None:
        if self._current.state in (ReadyState.READY, ReadyState.LOADING):
            self._set(Readiness(ReadyState.DRAINING))

    def stopped(self) -> None:
        """The threads are told to finish; a load failure keeps its reason."""
        if self._current.state is not ReadyState.FAILED:
            self._set(Readiness(ReadyState.STOPPED))

    def _set(self, readiness: Readiness) -> None:
        self._current = readiness
        self._on_change(readiness)
