"""Web load benchmark: POST /api/v1/plans and the patient page, beside a trivial endpoint of the same app.

Starts HemiCare (uvicorn, one process) on loopback with a demo clinic, then drives it from this second process with
a fixed number of concurrent clients for a fixed number of requests per endpoint, and prints requests per second,
p50 and p99 latency and errors for each, and the ratio of the plan endpoint's throughput to the trivial one's.
Targets: plan endpoint at least half the trivial endpoint's throughput; p99 under 50 ms at 50 clients; no errors.

    python bench/web_load.py [--clients 50] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import yaml

from hemicare.engine import load_default
from hemicare.synthetic import cohort as synthetic_cohort

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "benchmark password"


def _cli(*args: str, db: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hemicare.cli", *args, "--db", db],
        input=stdin,
        text=True,
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    return done.stdout.strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _drive(client: httpx.AsyncClient, requests: list[dict[str, Any]], clients: int, total: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            request = requests[remaining % len(requests)]
            start = time.perf_counter()
            try:
                response = await client.request(**request)
                if response.status_code >= 400:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(ordered) * 1000,
        "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        "errors": errors,
        "count": len(latencies),
    }


async def _run(base: str, token: str, cookie: str, clients: int, total: int) -> dict[str, dict[str, Any]]:
    # Distinct synthetic patients (500 of them, cycled), so the engine meets varied input, not one case.
    kb = load_default()
    cohort = [yaml.safe_load((ROOT / "examples" / "demo-001.yaml").read_text())]
    cohort += synthetic_cohort(499, kb, today=dt.date.today())
    plan_headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    page_headers = {"cookie": f"hemicare_session={cookie}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        requests = {
            "trivial GET /api/v1/health": [{"method": "GET", "url": "/api/v1/health"}],
            "POST /api/v1/plans": [
                {
                    "method": "POST",
                    "url": "/api/v1/plans",
                    "content": json.dumps(a, default=str),
                    "headers": plan_headers,
                }
                for a in cohort
            ],
            "GET /patients/demo-001 (page)": [{"method": "GET", "url": "/patients/demo-001", "headers": page_headers}],
        }
        for batch in requests.values():  # warm up each path once
            await client.request(**batch[0])
        return {name: await _drive(client, batch, clients, total) for name, batch in requests.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--server-workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{Path(folder) / 'load.db'}"
        _cli("db", "upgrade", db=db)
        _cli("demo", "--patients", "10", db=db)
        _cli(
            "users",
            "add",
            "--username",
            "bench",
            "--full-name",
            "Bench",
            "--role",
            "neurologist",
            "--password-stdin",
            db=db,
            stdin=PASSWORD + "\n",
        )
        token = _cli("users", "token", "--username", "bench", "--name", "load benchmark", db=db)
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hemicare.cli",
                "serve",
                "--port",
                str(port),
                "--db",
                db,
                "--insecure-cookies",
                "--workers",
                str(args.server_workers),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    httpx.get(f"{base}/api/v1/health", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            signed = httpx.post(
                f"{base}/login", data={"username": "bench", "password": PASSWORD}, follow_redirects=False
            )
            cookie = signed.cookies.get("hemicare_session") or ""
            results = asyncio.run(_run(base, token, cookie, args.clients, args.requests))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(
        f"{args.clients} concurrent clients, {args.requests} requests per endpoint, "
        f"server: {args.server_workers} uvicorn process(es)"
    )
    for name, result in results.items():
        print(
            f"{name:<32} {result['rps']:8.0f} req/s  p50 {result['p50']:6.1f} ms  p99 {result['p99']:6.1f} ms  "
            f"errors {result['errors']}"
        )
    trivial = results["trivial GET /api/v1/health"]
    plans = results["POST /api/v1/plans"]
    ratio = plans["rps"] / trivial["rps"]
    print(f"ratio, plan endpoint / trivial endpoint throughput: {ratio:.2f}")
    ok_ratio = ratio >= 0.5
    ok_p99 = plans["p99"] < 50
    ok_errors = all(r["errors"] == 0 for r in results.values())
    print(f"target plan throughput >= half the trivial endpoint's: {'met' if ok_ratio else 'MISSED'}")
    print(f"target plan p99 < 50 ms at {args.clients} clients: {'met' if ok_p99 else 'MISSED'}")
    print(f"target zero errors: {'met' if ok_errors else 'MISSED'}")
    return 0 if ok_ratio and ok_p99 and ok_errors else 1


if __name__ == "__main__":
    sys.exit(main())
