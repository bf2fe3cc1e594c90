"""Several server processes on one port, each accepting on its own listening socket (Linux SO_REUSEPORT).

When server processes share one listening socket, a burst of new connections goes to whichever process wakes first,
and it accepts most of them: the load benchmark saw 50 connections split 41/9 and 42/8, and once 50/0, and the
process holding most connections answered each of them up to twice as slowly as an even split would. With one
socket per process in a SO_REUSEPORT group, the kernel spreads connections over the processes by a hash of their
addresses, as nginx's ``reuseport`` does. Where the platform has no SO_REUSEPORT, ``serve`` falls back to uvicorn's
shared socket.

The supervisor checks that the address is free before it binds (a port another server holds is refused, never
shared), starts one process per socket, replaces a process that dies, and stops them all on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from types import FrameType
from typing import Any

LOG = logging.getLogger("hemicare.web")
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
STEADY_SECONDS = 10.0  # a process that dies sooner than this after starting is not restarted: something is wrong
SUPPORTED = hasattr(socket, "SO_REUSEPORT")


class AddressError(Exception):
    """The server cannot listen where it was asked to; ``option`` names the command-line option at fault."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


class WorkerFailed(Exception):
    """A server process died soon after it started (for example, it could not load the app)."""


def _address(host: str, port: int) -> tuple[socket.AddressFamily, Any]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AddressError("--host", f"{host!r} is not a name or address this machine can resolve") from exc
    family, _, _, _, address = found[0]
    return family, address


def check_free(host: str, port: int) -> None:
    """Raise AddressError when a plain socket cannot listen on ``host:port``: the port is taken (another server
    holds it), needs privileges, or the host is not an address of this machine."""
    family, address = _address(host, port)
    probe = socket.socket(family, socket.SOCK_STREAM)
    # As the server's own sockets do: connections of a server just stopped, closing (TIME_WAIT, up to a minute), do
    # not hold the port; a socket listening on it still does.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressError("--port", f"{host}:{port} is in use") from exc
        if exc.errno == errno.EACCES:
            raise AddressError("--port", f"{port} needs privileges this user does not have") from exc
        raise AddressError("--host", f"cannot listen on {host!r}: {exc.strerror}") from exc
    finally:
        probe.close()


def _listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    family, address = _address(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _stop_with(supervisor: int) -> None:
    """Ask Linux to send this process SIGTERM when its supervisor dies, even by SIGKILL, so that no orphaned server
    keeps the port; exit at once if the supervisor is already gone."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the supervisor's own shutdown is all there is
        return
    if os.getppid() != supervisor:
        raise SystemExit(0)


def _serve_one(sock: socket.socket, options: dict[str, Any], supervisor: int) -> None:
    """One server process: the app from the environment, served on its own socket."""
    import uvicorn

    _stop_with(supervisor)

    config = uvicorn.Config("hemicare.web.app:app_from_environment", factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


def run(*, host: str, port: int, workers: int, backlog: int = 2048, **options: Any) -> None:
    """Serve on ``host:port`` with ``workers`` processes until stopped; ``options`` go to uvicorn.Config."""
    check_free(host, port)
    sockets = [_listening_socket(host, port, backlog) for _ in range(workers)]
    options = {"host": host, "port": port, **options}
    context = multiprocessing.get_context("spawn")
    processes: list[Any] = [None] * workers
    started = [0.0] * workers
    stopping = False

    def start(index: int) -> None:
        process = context.Process(
            target=_serve_one, args=(sockets[index], options, os.getpid()), name=f"hemicare-{index}"
        )
        process.start()
        processes[index] = process
        started[index] = time.monotonic()

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process is not None and process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight, then exits

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index in range(workers):
            start(index)
        while not stopping:
            multiprocessing.connection.wait([p.sentinel for p in processes])
            for index, process in enumerate(processes):
                if not stopping and not process.is_alive():
                    if time.monotonic() - started[index] < STEADY_SECONDS:
                        raise WorkerFailed(f"a server process exited with code {process.exitcode} as it started")
                    LOG.warning(
                        "server process %s exited with code %s; starting another", process.pid, process.exitcode
                    )
                    start(index)
    finally:
        stop(signal.SIGTERM, None)
        for process in processes:
            if process is not None:
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
        for sock in sockets:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
