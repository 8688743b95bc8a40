"""Load on the live event server: N participants annotating and submitting at once, on loopback.

Targets (issue 14): 50 simulated participants, each joining, annotating in small batches
and submitting, concurrently for 60 s: p99 latency of an annotate request under 100 ms on
the 2-core machine, no error that is not the client's fault; with ``--kill-at S`` the
server is killed with SIGKILL after S seconds and restarted on the same store, and every
participant's count must equal their own tally afterwards (the clients retry the request
the crash cut off: annotating the same indices again is free, so a retry never double-charges).

It creates an event (reads MNIST: set COURSE_DATA_DIR), starts ``autograder serve`` on
127.0.0.1 in a subprocess, times one pool download, then runs the participants as threads
(asyncio tasks on keep-alive HTTP connections, a think time between requests). Everything is
bounded: the run time, the requests per participant, the restart wait.

    python -m benchmarks.event_load                       # 50 participants, 60 s
    python -m benchmarks.event_load --kill-at 30          # and a kill -9 + restart half-way
    python -m benchmarks.event_load -n 10 --seconds 10    # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 100.0
MAX_REQUESTS = 2000  # per participant
BATCH = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int, log: Path) -> subprocess.Popen:
    import httpx

    process = subprocess.Popen(
        [sys.executable, "-m", "autograder.event.cli", "serve", "--db", str(db), "--port", str(port),
         "--rate", "1000"], cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not start; see {log}")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--participants", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--think", type=float, default=0.25, help="mean pause between a participant's requests (s)")
    parser.add_argument("--kill-at", type=float, default=None, help="kill -9 the server after S s, then restart")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    import httpx

    from autograder.event import cli, pool, store

    with tempfile.TemporaryDirectory(prefix="event-load-") as tmp:
        db, log = Path(tmp) / "events.db", Path(tmp) / "server.log"
        t0 = time.perf_counter()
        code, admin = cli.create(str(db), "7,1", "03_clustering")
        create_s = time.perf_counter() - t0
        truth = pool.read_truth(store.Store(db).blob(code, "truth"))
        c_all = np.flatnonzero(np.isin(truth["pool_digits"], truth["track"]))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(db, port, log)

        # one participant's pool download, alone
        with httpx.Client(timeout=60) as client:
            token = client.post(f"{url}/api/events/{code}/join", json={"name": "downloader"}).json()["result"]["token"]
            t0 = time.perf_counter()
            pool_bytes = len(client.get(f"{url}/api/events/{code}/pool",
                                        headers={"Authorization": f"Bearer {token}"}).content)
            download_s = time.perf_counter() - t0

        latencies: list[float] = []  # as the client sees it (one asyncio loop for all participants)
        server_times: list[float] = []  # inside the server's handler (its Server-Timing header)
        errors: dict[str, int] = {}
        clients: list[dict] = []
        box = {"server": server, "restart_s": None}
        start = time.monotonic()
        end = start + args.seconds

        async def run_all() -> None:
            down = asyncio.Event()
            limits = httpx.Limits(max_connections=args.participants + 10, max_keepalive_connections=args.participants)
            async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

                async def participant(k: int) -> None:
                    rng = random.Random(k)
                    me = {"name": f"p{k:03d}", "tally": 0, "submitted": None, "retries": 0}
                    mine = c_all[k::args.participants]
                    headers: dict = {}

                    async def request(path: str, body: dict) -> tuple[httpx.Response, float | None]:
                        retried = False
                        while time.monotonic() < end + 60:  # bounded: retry through a restart
                            if down.is_set():
                                await asyncio.sleep(0.05)
                                continue
                            try:
                                t = time.perf_counter()
                                response = await client.post(path, json=body, headers=headers)
                                elapsed = time.perf_counter() - t
                                timing = response.headers.get("server-timing", "")
                                if "dur=" in timing and not retried:
                                    server_times.append(float(timing.split("dur=")[1]) / 1000)
                                return response, None if retried else elapsed  # a cut-off request is no latency
                            except httpx.TransportError:
                                me["retries"] += 1
                                retried = True
                                await asyncio.sleep(0.05)
                        raise RuntimeError("the server did not come back")

                    reply, _ = await request(f"/api/events/{code}/join", {"name": me["name"]})
                    me["token"] = reply.json()["result"]["token"]
                    headers = {"Authorization": f"Bearer {me['token']}"}
                    clients.append(me)
                    for b in range(MAX_REQUESTS):
                        if time.monotonic() >= end:
                            break
                        batch = [int(i) for i in mine[b * BATCH:(b + 1) * BATCH]]
                        r, elapsed = await request(f"/api/events/{code}/op", {"op": "annotate", "indices": batch})
                        if elapsed is not None:
                            latencies.append(elapsed)
                        if r.status_code == 200:
                            me["tally"] = r.json()["result"]["count"]
                        else:
                            errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                        await asyncio.sleep(rng.expovariate(1 / args.think) if args.think > 0 else 0)
                    r, _ = await request(f"/api/events/{code}/op", {"op": "score", "split": "private",
                                                                   "predictions": truth["private_digits"].tolist()})
                    if r.status_code == 200:
                        me["submitted"] = r.json()["result"]
                    else:
                        errors[f"submit {r.status_code}"] = errors.get(f"submit {r.status_code}", 0) + 1

                async def killer() -> None:
                    await asyncio.sleep(max(0.0, start + args.kill_at - time.monotonic()))
                    down.set()
                    os.kill(box["server"].pid, signal.SIGKILL)
                    box["server"].wait(10)
                    t0 = time.perf_counter()
                    box["server"] = await asyncio.get_running_loop().run_in_executor(
                        None, start_server, db, port, log)
                    box["restart_s"] = time.perf_counter() - t0
                    down.clear()

                jobs = [participant(k) for k in range(args.participants)]
                if args.kill_at is not None:
                    jobs.append(killer())
                await asyncio.wait_for(asyncio.gather(*jobs), args.seconds + 180)

        asyncio.run(run_all())
        server, restart_s = box["server"], box["restart_s"]
        wall = time.monotonic() - start

        view = httpx.get(f"{url}/api/admin/{code}", headers={"Authorization": f"Bearer {admin}"}, timeout=60).json()
        stored = {p["name"]: p for p in view["participants"]}
        mismatches = [c["name"] for c in clients if stored[c["name"]]["annotations"] != c["tally"]
                      or (c["submitted"] is not None and stored[c["name"]]["accuracy"] is None)]
        board = httpx.get(f"{url}/api/events/{code}/board", timeout=60).json()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()

    ms = [1000 * x for x in latencies]
    result = {
        "participants": args.participants, "seconds": args.seconds, "think_s": args.think,
        "annotate_requests": len(ms), "requests_per_s": round(len(ms) / wall, 1),
        "p50_ms": round(percentile(ms, 50), 1), "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1), "max_ms": round(max(ms), 1) if ms else None,
        "server_p50_ms": round(percentile([1000 * x for x in server_times], 50), 1),
        "server_p99_ms": round(percentile([1000 * x for x in server_times], 99), 1),
        "load_average": os.getloadavg()[0],
        "errors": errors, "submitted": sum(c["submitted"] is not None for c in clients),
        "annotations_total": sum(c["tally"] for c in clients),
        "kill_at": args.kill_at, "restart_s": None if restart_s is None else round(restart_s, 2),
        "retries": sum(c["retries"] for c in clients), "count_mismatches": mismatches,
        "board_submitted_after": board["submitted"],
        "event_create_s": round(create_s, 1), "pool_mb": round(pool_bytes / 1e6, 2),
        "pool_download_s": round(download_s, 3), "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=1))
    ok = result["p99_ms"] < TARGET_P99_MS and not errors and not mismatches
    print(f"p99 annotate {result['p99_ms']} ms (target < {TARGET_P99_MS:g}), "
          f"{result['annotate_requests']} annotate requests, errors {errors or 'none'}, "
          f"count mismatches {len(mismatches)}: {'MET' if ok else 'NOT MET'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
