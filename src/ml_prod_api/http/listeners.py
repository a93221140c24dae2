"""Stop the kernel taking new connections on the listening sockets before they close (Linux).

The kernel completes a TCP handshake on a listening socket by itself and queues the connection
until the server calls accept(); the client's connect() has already succeeded and it sends its
request. Closing the listening socket resets every connection still queued, so a client that
connected in the last moments of a drain reads a reset after sending, not a refusal at connect: a
proxy may retry a refused connect, but not a POST it may have delivered. There is no call that
stops a listening socket from completing handshakes while it stays open
(https://utcc.utoronto.ca/~cks/space/blog/programming/SocketListenLimitation).

So, at the end of the drain's grace period, each listening socket gets a classic BPF socket
filter that drops TCP segments with SYN set and ACK clear: a socket filter on a listener runs
for every segment addressed to it, so new handshakes never start, while the final ACK of a
handshake already in flight still passes and completes into the queue. The server's event loop
goes on accepting what is queued until the queue (TCP_INFO's `tcpi_unacked`, which is the accept
queue's length for a listening socket) is empty, and only then does the server close the socket.
A client whose SYN was dropped retransmits it about a second later and meets a closed port: a
clean `ECONNREFUSED` (or the next process, if one listens there by then). It is what operators
do from outside with a firewall rule dropping SYNs around an HAProxy restart, done by the process
itself on its own sockets. Kernel documentation of the filter:
https://www.kernel.org/doc/html/latest/networking/filter.html.

Hand-written because Python's socket module has no helper for socket filters (the program is
five instructions, passed with ctypes), and neither uvicorn nor asyncio can stop a listener
without closing it. The listening sockets are found in /proc/self/fd, which sees them whichever
command started the server. A socket that the parent process also holds (uvicorn's or gunicorn's
supervisor with several workers, systemd socket activation) is left alone: the filter belongs to
the socket, not to this process, and would stop the processes that keep serving on it (uvicorn
replaces workers one at a time on SIGHUP). `ml-prod-api serve` closes its supervisor's copy when
the whole server stops, so that its workers quiesce the socket then.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import struct
import sys
from dataclasses import dataclass

# <linux/filter.h>, <asm-generic/socket.h>
_SO_ATTACH_FILTER = 26
_BPF_LD_B_ABS = 0x30  # BPF_LD | BPF_B | BPF_ABS: load the byte at an offset of the TCP header
_BPF_ALU_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_RET_K = 0x06  # BPF_RET | BPF_K: bytes of the segment to keep (0: drop it)
_TCP_FLAGS_OFFSET = 13  # a TCP listener's filter sees the segment from its TCP header on
_SYN, _ACK = 0x02, 0x10

# Drop a segment whose flags, of SYN and ACK, are SYN alone; keep every other one whole.
_DROP_NEW_HANDSHAKES = (
    (_BPF_LD_B_ABS, 0, 0, _TCP_FLAGS_OFFSET),
    (_BPF_ALU_AND_K, 0, 0, _SYN | _ACK),
    (_BPF_JEQ_K, 0, 1, _SYN),
    (_BPF_RET_K, 0, 0, 0),
    (_BPF_RET_K, 0, 0, 0xFFFFFFFF),
)

# struct tcp_info (<linux/tcp.h>): eight one-byte fields, tcpi_rto, _ato, _snd_mss, _rcv_mss,
# then tcpi_unacked: for a listening socket, the accept queue's length (tcp_get_info()).
_TCP_INFO_UNACKED = struct.Struct("=8x16xI")


@dataclass(frozen=True, slots=True)
class QuiesceResult:
    """What quiescing found: how many listening sockets stopped taking new connections, how many
    were left alone because the parent process holds them too, how many connections were queued
    when it started, and how many were still queued when it gave up waiting (0 when every one
    was accepted)."""

    quiesced: int
    shared: int
    queued_at_start: int
    left_queued: int


def supported() -> bool:
    return sys.platform == "linux" and os.path.isdir("/proc/self/fd")


def refuse_new_connections(sock: socket.socket) -> None:
    """Attach the filter: no new handshake completes on `sock`; queued connections stay."""
    program = b"".join(struct.pack("HBBI", *ins) for ins in _DROP_NEW_HANDSHAKES)
    buffer = ctypes.create_string_buffer(program)
    # struct sock_fprog {unsigned short len; struct sock_filter *filter;}; the kernel copies the
    # program during the call, so the buffer need not outlive it.
    fprog = struct.pack("HP", len(_DROP_NEW_HANDSHAKES), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


def accept_queue_length(sock: socket.socket) -> int:
    """Connections whose handshake is complete and that nobody has accepted yet."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_UNACKED.size)
    return int(_TCP_INFO_UNACKED.unpack_from(info)[0])


def listening_sockets() -> list[socket.socket]:
    """Duplicates of this process's listening TCP sockets, one per socket (the caller closes
    them)."""
    found = []
    seen = set()  # a descriptor made here, or a second one of the same socket, is listed once
    for name in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # closed meanwhile (e.g. the descriptor that listed the folder)
            continue
        if not link.startswith("socket:") or link in seen:
            continue
        seen.add(link)
        try:
            dup = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        if (
            dup.family in (socket.AF_INET, socket.AF_INET6)
            and dup.type == socket.SOCK_STREAM
            and dup.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        ):
            found.append(dup)
        else:
            dup.close()
    return found


def held_by_parent(sock: socket.socket) -> bool:
    """Whether the parent process holds this socket too; True when that cannot be read."""
    parent = os.getppid()
    if parent == 0:  # the first process of a container without an init
        return False
    target = f"socket:[{os.fstat(sock.fileno()).st_ino}]"
    try:
        names = os.listdir(f"/proc/{parent}/fd")
    except OSError:
        return True
    for name in names:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{parent}/fd/{name}") == target:
                return True
    return False


async def quiesce_listeners(
    max_wait_s: float = 0.5, settle_s: float = 0.05, poll_s: float = 0.01
) -> QuiesceResult:
    """Stop new handshakes on this process's own listening sockets, then let the running event
    loop accept what is queued: until the queues are empty, for at most `max_wait_s`.

    Waits at least `settle_s`, so that a handshake already in flight when the filter was
    attached (its final ACK still on the way) lands in the queue and is accepted too. Both are
    counted in turns of `poll_s`, not on the clock: after a stall of the whole process (a
    starved CPU) the loop still gets its turns to accept.
    """
    if not supported():
        return QuiesceResult(0, 0, 0, 0)
    sockets = listening_sockets()
    try:
        own = []
        for sock in sockets:
            if held_by_parent(sock):
                continue
            refuse_new_connections(sock)
            own.append(sock)
        queued_at_start = sum(accept_queue_length(sock) for sock in own)
        settle_turns, max_turns = round(settle_s / poll_s), round(max_wait_s / poll_s)
        left = queued_at_start
        turns = 0
        while own:
            left = sum(accept_queue_length(sock) for sock in own)
            if (left == 0 and turns >= settle_turns) or turns >= max_turns:
                break
            await asyncio.sleep(poll_s)
            turns += 1
        return QuiesceResult(len(own), len(sockets) - len(own), queued_at_start, left)
    finally:
        # Only the duplicates: the server closes its own descriptors.
        for sock in sockets:
            sock.close()
