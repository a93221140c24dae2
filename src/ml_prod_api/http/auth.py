"""Optional API-key authentication, as pure ASGI middleware in front of the body parser.

Keys come from `API_KEYS` and/or `API_KEYS_FILE` (re-read when the file changes, so a rotated
Kubernetes Secret takes effect without a restart). Only SHA-256 digests are kept, and a presented
key is compared against every digest with `hmac.compare_digest`, whether or not an earlier one
matched and whether or not a key was sent at all, so a missing key, a wrong key and a right key
take the same path. A key's name (`name:key`) or a digest prefix identifies the caller in logs
and rate limits; the key itself is never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from ml_prod_api.http.errors import send_error

log = logging.getLogger("ml_prod_api.auth")

CALLER_SCOPE_KEY = "ml_prod_api.caller"
_NAMED = re.compile(r"^([A-Za-z0-9_.-]{1,32}):(.+)$")
# Compared against when no key was sent, so that path does the same work as a wrong key.
_DUMMY_DIGEST = hashlib.sha256(b"no key presented").digest()
_UNAUTHORIZED = "a valid API key is required (X-API-Key header or Authorization: Bearer)"


@dataclass(frozen=True, slots=True)
class StoredKey:
    name: str
    digest: bytes


def parse_keys(entries: list[str]) -> list[StoredKey]:
    keys = []
    for raw in entries:
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        match = _NAMED.match(entry)
        name, secret = (match.group(1), match.group(2)) if match else (None, entry)
        digest = hashlib.sha256(secret.encode()).digest()
        keys.append(StoredKey(name or f"key-{digest.hex()[:8]}", digest))
    return keys


class ApiKeyStore:
    """The accepted keys, from the setting and the file (reloaded when its mtime changes)."""

    def __init__(self, inline: str | None, file: Path | None, reload_seconds: float = 5.0) -> None:
        self._inline = parse_keys(inline.split(",")) if inline else []
        self._file = file
        self._reload_seconds = reload_seconds
        self._file_keys: list[StoredKey] = []
        self._mtime: float | None = None
        self._checked = 0.0
        if file is not None:
            self._load_file()

    @property
    def enabled(self) -> bool:
        return self._file is not None or bool(self._inline)

    def _load_file(self) -> None:
        assert self._file is not None
        try:
            mtime = self._file.stat().st_mtime
            if mtime == self._mtime:
                return
            keys = parse_keys(self._file.read_text().splitlines())
        except OSError as exc:
            log.error(
                "API key file unreadable; keeping the previous keys",
                extra={"error_type": type(exc).__name__},
            )
            return
        if not keys and self._file_keys:
            log.error("API key file is empty; keeping the previous keys")
            return
        self._file_keys, self._mtime = keys, mtime
        log.info("API keys loaded", extra={"keys": len(keys), "names": [k.name for k in keys]})

    def keys(self) -> list[StoredKey]:
        if self._file is not None:
            now = time.monotonic()
            if now - self._checked >= self._reload_seconds:
                self._checked = now
                self._load_file()
        return self._inline + self._file_keys

    def identify(self, presented: bytes | None) -> str | None:
        """The name of the matching key, or None. Same work for every outcome."""
        digest = hashlib.sha256(presented).digest() if presented else _DUMMY_DIGEST
        found: str | None = None
        for key in self.keys():
            if hmac.compare_digest(digest, key.digest) and presented:
                found = key.name
        return found


class ConflictingCredentials(Exception):
    """More than one key was sent (both headers, or one of them twice)."""


def presented_key(scope: Scope) -> bytes | None:
    """The one key the request presents, or None. Two keys are refused rather than one chosen:
    when the first one sent won, an empty `X-API-Key` hid a valid bearer token, and a client
    cannot know which of two keys it is charged to."""
    found: list[bytes | None] = []
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            found.append(value.strip() or None)
        elif name == b"authorization" and value[:7].lower() == b"bearer ":
            found.append(value[7:].strip() or None)
    if len(found) > 1:
        raise ConflictingCredentials
    return found[0] if found else None


def caller_identity(scope: Scope) -> str:
    """Who a request is charged to (rate limits, the cap on bodies arriving): the API key's name
    once `ApiKeyGuard` has accepted it, else the client address (`ip:...`), which is the
    forwarded one only from `TRUSTED_PROXIES`."""
    caller = scope.get(CALLER_SCOPE_KEY)
    if caller is None:
        client = scope.get("client")
        caller = f"ip:{client[0]}" if client else "ip:unknown"
    return str(caller)


class ApiKeyGuard:
    """Refuses protected paths without a valid key (401 with `WWW-Authenticate`)."""

    def __init__(self, app: ASGIApp, *, store: ApiKeyStore, protect_metrics: bool) -> None:
        self.app = app
        self.store = store
        self.protect_metrics = protect_metrics

    def _protected(self, path: str) -> bool:
        return path.startswith("/v1/") or (self.protect_metrics and path == "/metrics")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            presented = presented_key(scope)
        except ConflictingCredentials:
            await send_error(
                send,
                400,
                "conflicting_credentials",
                "send one API key, in X-API-Key or in Authorization: Bearer, not both",
            )
            return
        caller = self.store.identify(presented)
        if caller is None:
            await send_error(
                send,
                401,
                "unauthorized",
                _UNAUTHORIZED,
                [(b"www-authenticate", b'Bearer realm="ml-prod-api"')],
            )
            return
        scope[CALLER_SCOPE_KEY] = caller
        await self.app(scope, receive, send)
