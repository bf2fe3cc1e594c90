"""`hemicare serve` as a clinic runs it: several server processes on one port, sharing connections, stopping cleanly;
a port another server holds is refused with a clear error."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from .browser import free_port
from .conftest import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and uses SO_REUSEPORT")


def _bench() -> Any:
    """The load benchmark's /proc tracing of which server process holds each connection."""
    spec = importlib.util.spec_from_file_location("web_load", ROOT / "bench" / "web_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("web_load", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _serve(tmp_path: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    """`hemicare serve` on ``port`` (127.0.0.1 unless ``extra`` names a --host), its output captured."""
    command = [sys.executable, "-m", "hemicare.cli", "serve", "--port", str(port), "--db", f"sqlite:///{tmp_path}/s.db"]
    return subprocess.Popen([*command, *extra], cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_until_up(port: int, server: subprocess.Popen[str], host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()
        try:
            if httpx.get(f"http://{host}:{port}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("the server did not answer within 60 s")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_refused_naming_the_option(tmp_path: Path, workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = _serve(tmp_path, port, "--workers", workers)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 2, (out, err)
    assert f"field `--port`: 127.0.0.1:{port} is in use" in err
    assert not (tmp_path / "s.db").exists(), "nothing is set up for a server that cannot start"


def test_a_port_whose_last_server_just_stopped_is_free() -> None:
    """A server that closes its connections leaves them closing on its port for up to a minute (TIME_WAIT): a
    restart then was refused as 'in use'."""
    from hemicare.web import workers

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server closes first, as a stopping server does
        with pytest.raises(workers.AddressError, match="is in use"):
            workers.check_free("127.0.0.1", port)  # still listening: taken
    client.close()
    workers.check_free("127.0.0.1", port)  # only the closing connection is left


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("no-such-host.invalid", "field `--host`: 'no-such-host.invalid' is not a name or address this machine can"),
        ("192.0.2.1", "field `--host`: cannot listen on '192.0.2.1': Cannot assign requested address"),
    ],
)
def test_an_address_this_machine_cannot_listen_on_is_refused_naming_the_host(
    tmp_path: Path, host: str, message: str
) -> None:
    server = _serve(tmp_path, free_port(), "--host", host, "--workers", "2")
    out, err = server.communicate(timeout=60)
    assert server.returncode == 2, (out, err)
    assert message in err
    assert "in use" not in err


def test_a_fault_reaches_the_server_log_without_its_message(tmp_path: Path) -> None:
    """The server's own log (uvicorn's, not only the app's) gets no traceback of a fault: its last line quotes the
    exception's message, and a database's message may quote what it was writing."""
    port = free_port()
    server = _serve(tmp_path, port)
    try:
        _wait_until_up(port, server)
        with sqlite3.connect(tmp_path / "s.db") as database:  # the database refuses to note a failed sign-in
            database.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON sign_in_failures BEGIN SELECT RAISE(ABORT, 'no'); END"
            )
        answer = httpx.post(f"http://127.0.0.1:{port}/login", data={"username": "lucia.okafor", "password": "x" * 12})
        assert answer.status_code == 500 and "(reference " in answer.text
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    # How to add the first account to this database, not to hemicare.db in whatever folder the command is typed in.
    first_user = f"hemicare users add --username dr.neuro --full-name 'Dr Neuro' --role neurologist --db sqlite:///{tmp_path}/s.db"
    assert (
        f"No users yet. In another terminal, from this folder, create one and sign in with it:\n  {first_user}\n" in out
    )
    assert re.search(r"hemicare.web POST /login failed, reference [0-9a-f]{8}: sqlalchemy.exc.IntegrityError", err), err
    assert "hemicare.web POST /login 500" in err
    assert "Traceback" not in err and "lucia" not in err and "INSERT" not in err, err


def test_the_server_log_holds_hemicare_lines_only(tmp_path: Path) -> None:
    """A printed plan is set in subsets of its fonts; the subsetter's informational log listed every letter it set,
    a patient's name among them, and thirty lines a PDF."""
    port, password = free_port(), "a long enough password"
    server = _serve(tmp_path, port, "--demo")
    try:
        _wait_until_up(port, server)
        add = ["users", "add", "--username", "dr.n", "--full-name", "Dr N", "--role", "neurologist"]
        command = [sys.executable, "-m", "hemicare.cli", *add, "--db", f"sqlite:///{tmp_path}/s.db"]
        subprocess.run(command, input=f"{password}\n{password}\n", text=True, capture_output=True, check=True)
        signed_in = httpx.post(f"http://127.0.0.1:{port}/login", data={"username": "dr.n", "password": password})
        cookie = {"cookie": f"hemicare_session={signed_in.cookies['hemicare_session']}"}
        printed = httpx.get(f"http://127.0.0.1:{port}/patients/demo-001/plan.pdf", headers=cookie, timeout=60)
        assert printed.status_code == 200 and printed.content.startswith(b"%PDF")
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert "hemicare.web GET /patients/{code}/plan.pdf 200" in err
    assert [line for line in err.splitlines() if " hemicare.web " not in line] == []


def test_serving_other_machines_says_the_sign_in_needs_https(tmp_path: Path) -> None:
    port = free_port()
    server = _serve(tmp_path, port, "--host", "0.0.0.0")
    try:
        _wait_until_up(port, server)
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=60)
    assert f"HemiCare is running at http://0.0.0.0:{port}/" in out
    assert "Browsers keep the sign-in over HTTPS only, except on this machine" in out


class Running:
    """A `hemicare serve --workers 2` on a free port, up and answering; ``stop`` sends SIGTERM and returns stderr."""

    def __init__(self, server: subprocess.Popen[str], port: int) -> None:
        self.server, self.port = server, port

    def processes(self) -> set[int]:
        """The server processes accepting on the port (the supervisor and its resource tracker do not)."""
        children = _bench()._server_processes(self.server.pid)
        return {pid for pid in children if pid != self.server.pid and _listens(pid, self.port)}

    def stop(self) -> str:
        self.server.send_signal(signal.SIGTERM)
        _, err = self.server.communicate(timeout=60)
        assert self.server.returncode == 0, err
        return err


@contextmanager
def two_server_processes(tmp_path: Path, host: str = "127.0.0.1") -> Iterator[Running]:
    port = free_port()
    server = _serve(tmp_path, port, "--host", host.strip("[]"), "--workers", "2")
    try:
        _wait_until_up(port, server, host)
        yield Running(server, port)
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate(timeout=60)  # reaps it and closes its pipes


def test_server_processes_share_connections_and_stop_together(tmp_path: Path) -> None:
    with two_server_processes(tmp_path) as running:
        # A burst of connections, as 50 clients starting together make: on one shared listening socket the first
        # process to wake accepted most of them. Each connection is hashed to a process: all 32 on one would be
        # a 1 in 2**31 chance.
        connections = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(32)]
        for connection in connections:
            connection.sendall(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
        for connection in connections:
            assert connection.recv(1024).startswith(b"HTTP/1.1 200")
        shares = Counter(_bench()._connection_owners(running.port, running.server.pid).values())
        assert sum(shares.values()) == 32
        assert len(shares) == 2 and min(shares.values()) >= 4, shares
        assert set(shares) == running.processes()
        for connection in connections:
            connection.close()
        err = running.stop()
    assert err.count("hemicare.web GET /api/v1/health 200") >= 32, "every server process logs its requests"
    assert not any(map(_alive, shares))


def test_a_server_process_that_dies_is_replaced(tmp_path: Path) -> None:
    from hemicare.web.workers import STEADY_SECONDS

    with two_server_processes(tmp_path) as running:
        serving = running.processes()
        assert len(serving) == 2
        time.sleep(STEADY_SECONDS)  # a process that dies sooner is a start-up failure, and the server stops
        victim = min(serving)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(running.processes()) != 2 or victim in running.processes()):
            time.sleep(0.2)
        now = running.processes()
        assert len(now) == 2 and victim not in now, now
        assert running.server.poll() is None
        assert httpx.get(f"http://127.0.0.1:{running.port}/api/v1/health", timeout=5).status_code == 200
        err = running.stop()
    assert f"server process {victim} exited with code -9; starting another" in err


def test_server_processes_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """A supervisor killed outright (SIGKILL, the OOM killer) must not leave orphaned servers holding the port."""
    with two_server_processes(tmp_path) as running:
        serving = running.processes()
        assert len(serving) == 2
        running.server.kill()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(map(_alive, serving)):
            time.sleep(0.2)
        assert not any(map(_alive, serving)), "orphaned server processes"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", running.port))  # the port is free again


def test_two_server_processes_listen_on_an_ipv6_address(tmp_path: Path) -> None:
    if not Path("/proc/net/tcp6").exists():
        pytest.skip("no IPv6 on this machine")
    with two_server_processes(tmp_path, "[::1]") as running:
        assert httpx.get(f"http://[::1]:{running.port}/api/v1/health", timeout=5).status_code == 200
        assert len(running.processes()) == 2
        running.stop()


def _alive(pid: int) -> bool:
    """Whether the process exists and has not exited (a zombie waiting to be reaped has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _listens(pid: int, port: int) -> bool:
    """Whether the process holds a listening socket on the port (the resource tracker, also a child, does not)."""
    inodes = set()
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    for line in (line for table in tables if table.exists() for line in table.read_text().splitlines()[1:]):
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:  # 0A: listening
            inodes.add(f"socket:[{fields[9]}]")
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False
