"""What the browser tests share: Debian's Chromium and its flags, and a real `hemicare serve` process to drive."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "correct horse battery"
REQUIRED = os.environ.get("HEMICARE_REQUIRE_BROWSER") == "1"

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not REQUIRED, reason="Debian's chromium is not installed (CI installs it)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def hemicare(*args: str, db: str, stdin: str | None = None) -> None:
    """Run the command line against ``db``; a failure fails the test with its output."""
    subprocess.run(
        [sys.executable, "-m", "hemicare.cli", *args, "--db", db],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
    )


def add_user(db: str, username: str, role: str, patient: str | None = None) -> None:
    """An account with the shared test password (a patient's account sees ``patient``)."""
    linked = ["--patient", patient] if patient else []
    full_name = username.replace(".", " ").title()
    hemicare(
        "users", "add", "--username", username, "--full-name", full_name, "--role", role, *linked, "--password-stdin",
        db=db, stdin=PASSWORD + "\n",
    )  # fmt: skip


@contextmanager
def served(db: str) -> Iterator[str]:
    """`hemicare serve` on a free loopback port; yields its base address and stops it afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hemicare.cli", "serve", "--port", str(port), "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        raise AssertionError("the server did not start: " + (process.stdout.read() if process.stdout else ""))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=10)


def sign_in(page: Any, username: str) -> None:
    """Fill in and send the sign-in form on the page the browser is at."""
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")


def click_twice(page: Any, selector: str) -> Callable[[], int]:
    """Click a form's submit button and click it again at once, as an impatient double click does: the second click
    sends the form again while the first is on its way. Returns a count of the forms the page sent since, to check
    after the answer has arrived that the browser did send both."""
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if request.method == "POST" else None)
    page.evaluate("s => { const b = document.querySelector(s); b.click(); setTimeout(() => b.click(), 0); }", selector)
    return lambda: len(sent)
