"""Hostile clients: five ways one caller could deny service to all or push memory past the pod's
limit, each against a real `ml-prod-api serve` on 127.0.0.1.

1. costly-batch: with onnx, one `/v1/predict_batch` of 64 texts of 5,000 characters, while a
   second client sends single texts: how long others are refused, the batch's answer, RSS.
2. slow-bodies: 300 connections from one client send prediction headers with
   `Content-Length: 100000` and then a byte a second (more than `MAX_IN_FLIGHT_REQUESTS`, 256),
   while a second client sends texts.
3. large-headers: 16 connections send a 20 MB header at once, then one a 50 MB header while
   `/healthz` is probed: RSS and the slowest probe.
4. word-cache: tfidf, 180 batches of 16 distinct random 5,000-letter "words": RSS.
5. body-readers: a server limited to 256 file descriptors; one client (127.0.0.2) opens 300
   prediction connections that send their body a byte a second, while a second client
   (127.0.0.1) sends texts: how the 300 are answered, the server's descriptors, the others.

Every loop is bounded in count and time; servers are stopped by their own pid.
"""

from __future__ import annotations

import contextlib
import random
import socket
import string
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
from scripts.reliability import harness
from tests.support.servers import LoggedServer

_LETTERS = bytes(string.ascii_lowercase, "ascii")
_TO_LETTERS = bytes(_LETTERS[i % 26] for i in range(256))


def random_word(rng: random.Random, n: int) -> str:
    return rng.randbytes(n).translate(_TO_LETTERS).decode("ascii")


class RssWatch:
    """The server's RSS sampled every 0.1 s in a thread, for its peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> float:
        return round(harness.sample(self.pid).rss_mb, 1)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, harness.sample(self.pid).rss_mb)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def probe_while(
    url: str,
    running: Callable[[], bool],
    limit_s: float,
    path: str = "/v1/predict",
    statuses: list[int] | None = None,
) -> list[tuple[float, int, float]]:
    """(sent at, status, seconds) of sequential probes while `running()`, for at most limit_s;
    each status is also appended to `statuses`."""
    out: list[tuple[float, int, float]] = []
    t0 = time.monotonic()
    with httpx2.Client(timeout=30) as client:
        while running() and time.monotonic() - t0 < limit_s:
            sent = time.monotonic()
            try:
                if path == "/healthz":
                    status = client.get(url + path).status_code
                else:
                    status = client.post(url + path, json={"text": "have a nice day"}).status_code
            except httpx2.TransportError:
                status = 0
            out.append((sent - t0, status, time.monotonic() - sent))
            if statuses is not None:
                statuses.append(status)
            time.sleep(0.1)
    return out


def costly_batch(srv: LoggedServer, report: harness.Report) -> None:
    rng = random.Random(1)
    texts = [" ".join(random_word(rng, rng.randint(3, 9)) for _ in range(800))[:5000]]
    texts = [texts[0][i:] + texts[0][:i] for i in range(64)]
    for _ in range(5):  # the service learns the model's speed from ordinary requests
        httpx2.post(srv.url + "/v1/predict", json={"text": "warm-up text"}, timeout=30)
    answer: dict[str, Any] = {}

    def send() -> None:
        t0 = time.monotonic()
        r = httpx2.post(srv.url + "/v1/predict_batch", json={"texts": texts}, timeout=120)
        answer.update(status=r.status_code, code=r.json().get("error", {}).get("code"))
        answer["seconds"] = round(time.monotonic() - t0, 2)

    with RssWatch(srv.proc.pid) as rss:
        before = rss.now()
        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.3)
        last: list[int] = []

        def running() -> bool:
            # Until the batch is answered and a probe is served again (the model may still be
            # busy with work nobody waits for).
            return sender.is_alive() or not last or last[-1] != 200

        probes = probe_while(srv.url, running, limit_s=90, statuses=last)
        sender.join(120)
        time.sleep(2)
        after = rss.now()
    refused = [p for p in probes if p[1] != 200]
    report.figure("costly batch answer", answer)
    report.figure("others: probes by status", dict(Counter(p[1] for p in probes)))
    report.figure(
        "others refused for (s)", round(max(p[0] + p[2] for p in refused), 1) if refused else 0.0
    )
    report.figure("RSS MB before / peak / after", [before, round(rss.peak, 1), after])
    report.expect("others are served while the batch is answered", not refused, len(refused))


def slow_bodies(srv: LoggedServer, report: harness.Report, n: int, seconds: float) -> None:
    head = (
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    )
    conns = []
    for _ in range(n):
        # From 127.0.0.2: another client than the probes' (MAX_BODY_READERS_PER_CLIENT).
        conn = socket.create_connection(
            ("127.0.0.1", srv.port), timeout=5, source_address=("127.0.0.2", 0)
        )
        conn.sendall(head)
        conns.append(conn)
    try:
        with trickling(conns, threading.Event()):
            t0 = time.monotonic()
            probes = probe_while(srv.url, lambda: time.monotonic() - t0 < seconds, seconds + 1)
    finally:
        for conn in conns:
            conn.close()
    statuses = Counter(p[1] for p in probes)
    report.figure(f"others with {n} slow bodies: probes by status", dict(statuses))
    report.expect("others are served", set(statuses) == {200}, dict(statuses))


@contextlib.contextmanager
def trickling(conns: list[socket.socket], stop: threading.Event) -> Iterator[None]:
    """A slow body on every connection: one byte a second each until the block ends, which sets
    `stop` (other threads of the scenario may wait on it too)."""

    def trickle() -> None:
        while not stop.wait(1.0):
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.send(b" ")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        yield
    finally:
        stop.set()
        trickler.join(5)


def _answered(conn: socket.socket) -> str:
    """How the server has answered a connection so far: its status, `reset`, `closed`
    (without an answer), or `open` (nothing yet)."""
    conn.setblocking(False)
    try:
        data = conn.recv(4096)
    except BlockingIOError:
        return "open"
    except ConnectionResetError:
        return "reset"
    if not data:
        return "closed"
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "other"


def body_readers(srv: LoggedServer, report: harness.Report, n: int, seconds: float) -> None:
    head = (
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    )
    conns: list[socket.socket] = []
    connect_errors = 0
    stop = threading.Event()
    peak_fds = 0

    def watch_fds() -> None:
        nonlocal peak_fds
        while not stop.wait(0.1):
            with contextlib.suppress(Exception):
                peak_fds = max(peak_fds, harness.sample(srv.proc.pid).fds)

    watcher = threading.Thread(target=watch_fds, daemon=True)
    watcher.start()
    before_fds = harness.sample(srv.proc.pid).fds
    t0 = time.monotonic()
    opened_at: list[float] = []
    for _ in range(n):
        try:
            conn = socket.create_connection(
                ("127.0.0.1", srv.port), timeout=5, source_address=("127.0.0.2", 0)
            )
            conn.sendall(head)
            conns.append(conn)
            opened_at.append(time.monotonic())
        except OSError:
            connect_errors += 1
    opened_s = time.monotonic() - t0
    # When each connection first has something to read (an answer, or its end), for up to 3 s.
    for conn in conns:
        conn.setblocking(False)
    first_read: dict[int, float] = {}
    while len(first_read) < len(conns) and time.monotonic() - t0 < 3.0:
        for i, conn in enumerate(conns):
            if i not in first_read:
                try:
                    conn.recv(1, socket.MSG_PEEK)
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                first_read[i] = time.monotonic()
        time.sleep(0.001)
    waited_ms = sorted((first_read[i] - opened_at[i]) * 1000 for i in first_read)
    try:
        with trickling(conns, stop):
            t1 = time.monotonic()
            probes = probe_while(srv.url, lambda: time.monotonic() - t1 < seconds, seconds + 1)
            # Before BODY_READ_TIMEOUT_SECONDS (10 s) cuts off the bodies the server still reads.
            answers = Counter(_answered(conn) for conn in conns)
    finally:
        watcher.join(5)
        for conn in conns:
            conn.close()
    statuses = Counter(p[1] for p in probes)
    report.figure(f"{n} slow bodies from one client, opened in (s)", round(opened_s, 2))
    report.figure("its connections by answer after the attack", dict(answers))
    report.figure(
        "of those, answered or closed within 3 s: count, p50 / max ms after sending",
        [
            len(waited_ms),
            round(waited_ms[len(waited_ms) // 2], 1) if waited_ms else None,
            round(waited_ms[-1], 1) if waited_ms else None,
        ],
    )
    report.figure("its connect errors", connect_errors)
    report.figure("server fds before / peak", [before_fds, peak_fds])
    report.figure("others: probes by status (0: no answer)", dict(statuses))
    report.expect("others are served", set(statuses) == {200}, dict(statuses))


def send_header(port: int, size: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        chunk = b"a" * (1 << 20)
        with contextlib.suppress(OSError):
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ")
            for _ in range(size >> 20):
                conn.sendall(chunk)
            conn.sendall(b"\r\n\r\n")
            conn.recv(100)


def large_headers(srv: LoggedServer, report: harness.Report) -> None:
    with RssWatch(srv.proc.pid) as rss:
        before = rss.now()
        senders = [
            threading.Thread(target=send_header, args=(srv.port, 20 << 20)) for _ in range(16)
        ]
        for t in senders:
            t.start()
        for t in senders:
            t.join(120)
        peak16 = round(rss.peak, 1)
        big = threading.Thread(target=send_header, args=(srv.port, 50 << 20))
        big.start()
        probes = probe_while(srv.url, big.is_alive, 60, path="/healthz")
        big.join(60)
        after = rss.now()
    report.figure("RSS MB before / peak with 16 x 20 MB headers / after", [before, peak16, after])
    slowest = max((p[2] for p in probes), default=0.0)
    report.figure("/healthz during a 50 MB header: slowest (ms)", round(slowest * 1000, 1))
    report.expect("memory does not follow the headers", peak16 - before < 100, peak16 - before)


def word_cache(srv: LoggedServer, report: harness.Report, batches: int) -> None:
    rng = random.Random(4)
    with RssWatch(srv.proc.pid) as rss:
        before = rss.now()
        statuses: Counter[int] = Counter()
        with httpx2.Client(timeout=60) as client:
            for _ in range(batches):
                texts = [random_word(rng, 5000) for _ in range(16)]
                statuses[
                    client.post(srv.url + "/v1/predict_batch", json={"texts": texts}).status_code
                ] += 1
        after = rss.now()
    report.figure(f"{batches} batches of 16 random 5,000-letter words: status", dict(statuses))
    report.figure("RSS MB before / peak / after", [before, round(rss.peak, 1), after])
    report.expect("memory bounded", after - before < 20, round(after - before, 1))


SCENARIOS = ("costly-batch", "slow-bodies", "large-headers", "word-cache", "body-readers")


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--only", choices=SCENARIOS, action="append", help="run only these")
    args = p.parse_args(argv)
    chosen = args.only or list(SCENARIOS)
    report = harness.Report("hostile-clients", args.quick)
    run = harness.RunDir(report.scenario, args.keep_logs)
    for name in chosen:
        print(f"-- {name}", flush=True)
        if name == "costly-batch":
            if harness.onnx_model_dir() is None:
                report.note("costly-batch skipped: no onnx model")
                continue
            with harness.server(run, name, ready_timeout_s=300, MODEL_PROVIDER="onnx") as srv:
                costly_batch(srv, report)
        elif name == "slow-bodies":
            with harness.server(run, name, MODEL_PROVIDER="stub") as srv:
                slow_bodies(srv, report, 300, 6.0 if args.quick else 12.0)
        elif name == "large-headers":
            with harness.server(run, name, MODEL_PROVIDER="stub") as srv:
                large_headers(srv, report)
        elif name == "body-readers":
            # A descriptor limit low enough for one client's connections to exhaust it.
            argv = ["prlimit", "--nofile=256", sys.executable, "-m", "ml_prod_api.cli", "serve"]
            argv += ["--host", "127.0.0.1", "--port", "{port}"]
            with harness.server(run, name, argv=argv, MODEL_PROVIDER="stub") as srv:
                body_readers(srv, report, 300, 6.0)
        elif name == "word-cache":
            with harness.server(run, name, ready_timeout_s=300, MODEL_PROVIDER="tfidf") as srv:
                word_cache(srv, report, 60 if args.quick else 180)
    run.cleanup(report.failed)
    return report.finish(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
