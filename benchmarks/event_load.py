"""Load on the live event server: N participants annotating and submitting at once, on loopback.

Targets (issue 14): 50 simulated participants, each joining, annotating in small batches
and submitting, concurrently for 60 s: p99 latency of an annotate request under 100 ms on
the 2-core machine, no error that is not the client's fault; with ``--kill-at S`` the
server is killed with SIGKILL after S seconds and restarted on the same store, and every
participant's count must equal their own tally afterwards (the clients retry the request
the crash cut off: annotating the same indices again is free, so a retry never double-charges),
every submission that got a reply must be stored with the accuracy the client was told, and the
board must show them all again. Before the load, every participant downloads the event's pool
at once (as a room does when the event starts): its size and the time per participant.
An error is any reply but 200 to these well-formed requests (the clients make none that is
their fault: each buys new indices, submits once, and the rate limit is lifted); a request cut
off by the kill is retried, not counted. The exit status is 0 when every target is met.

It creates an event (reads MNIST: set COURSE_DATA_DIR), starts ``autograder serve`` on
127.0.0.1 in a subprocess, times one pool download, then runs the participants as threads
(threads in a few client processes, one keep-alive connection each, a think time between requests). Everything is
bounded: the run time, the requests per participant, the restart wait.

    python -m benchmarks.event_load                       # 50 participants, 60 s
    python -m benchmarks.event_load --kill-at 30          # and a kill -9 + restart half-way
    python -m benchmarks.event_load -n 10 --seconds 10    # a quick look
    python -m benchmarks.event_load --op-cost             # and one request's server work as a count grows
    python -m benchmarks.event_load --no-downloads        # skip the concurrent pool downloads
"""

from __future__ import annotations

import argparse
import multiprocessing
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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


def _worker(ids: list[int], cfg: dict, down, results) -> None:
    """One client process: its participants as threads, each on its own keep-alive connection."""
    import httpx

    out = {"latencies": [], "server_times": [], "errors": {}, "clients": []}
    lock = threading.Lock()

    def participant(k: int) -> None:
        rng = random.Random(k)
        me = {"name": f"p{k:03d}", "tally": 0, "submitted": None, "retries": 0}
        mine = cfg["c_all"][k::cfg["n"]]
        headers: dict = {}
        with httpx.Client(base_url=cfg["url"], timeout=30) as client:
            def request(path: str, body: dict):
                retried = False
                while time.time() < cfg["end"] + 60:  # bounded: retry through a restart
                    if down.is_set():
                        time.sleep(0.05)
                        continue
                    try:
                        t = time.perf_counter()
                        response = client.post(path, json=body, headers=headers)
                        elapsed = time.perf_counter() - t
                    except httpx.TransportError:
                        me["retries"] += 1
                        retried = True
                        time.sleep(0.05)
                        continue
                    timing = response.headers.get("server-timing", "")
                    if retried:  # a request cut off by the kill is no latency
                        return response, None, None
                    return response, elapsed, float(timing.split("dur=")[1]) / 1000 if "dur=" in timing else None
                raise RuntimeError("the server did not come back")

            me["token"] = cfg["tokens"].get(k)  # joined already when the room downloaded the pool
            if me["token"] is None:
                reply, _, _ = request(f"/api/events/{cfg['code']}/join", {"name": me["name"]})
                me["token"] = reply.json()["result"]["token"]
            headers = {"Authorization": f"Bearer {me['token']}"}
            for b in range(MAX_REQUESTS):
                if time.time() >= cfg["end"]:
                    break
                batch = [int(i) for i in mine[b * BATCH:(b + 1) * BATCH]]
                r, elapsed, inside = request(f"/api/events/{cfg['code']}/op", {"op": "annotate", "indices": batch})
                with lock:
                    if elapsed is not None:
                        out["latencies"].append(elapsed)
                    if inside is not None:
                        out["server_times"].append(inside)
                    if r.status_code != 200:
                        out["errors"][str(r.status_code)] = out["errors"].get(str(r.status_code), 0) + 1
                if r.status_code == 200:
                    me["tally"] = r.json()["result"]["count"]
                time.sleep(rng.expovariate(1 / cfg["think"]) if cfg["think"] > 0 else 0)
            r, _, _ = request(f"/api/events/{cfg['code']}/op",
                              {"op": "score", "split": "private", "predictions": cfg["private"]})
            with lock:
                if r.status_code == 200:
                    me["submitted"] = r.json()["result"]
                else:
                    out["errors"][f"submit {r.status_code}"] = out["errors"].get(f"submit {r.status_code}", 0) + 1
                out["clients"].append(me)

    threads = [threading.Thread(target=participant, args=(k,), daemon=True) for k in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(cfg["seconds"] + 180)
    results.put(out)


def downloads(url: str, code: str, n: int) -> dict:
    """`n` participants join and download the event's pool at once: seconds per participant, and
    their tokens (the load's participants are these people: a room joins once, then works)."""
    import httpx

    times: list[float] = []
    tokens: dict[int, str] = {}
    failures: list[str] = []
    sizes: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(n)

    def one(k: int) -> None:
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                token = client.post(f"/api/events/{code}/join", json={"name": f"p{k:03d}"}).json()["result"]["token"]
                tokens[k] = token
                start.wait(60)
                t0 = time.perf_counter()
                r = client.get(f"/api/events/{code}/pool", headers={"Authorization": f"Bearer {token}"})
                elapsed = time.perf_counter() - t0
            with lock:
                (times.append(elapsed), sizes.append(len(r.content))) if r.status_code == 200 \
                    else failures.append(str(r.status_code))
        except Exception as exc:  # counted: a download that did not come back is the server's failure
            with lock:
                failures.append(type(exc).__name__)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    wall = time.perf_counter() - t0
    return {"participants": n, "mb_each": round(max(sizes, default=0) / 1e6, 2),
            "p50_s": round(percentile(times, 50), 2), "max_s": round(max(times, default=float("nan")), 2),
            "all_done_s": round(wall, 2), "failures": failures, "tokens": tokens}


def op_cost(db: Path, code: str, requests: int = 2000) -> dict:
    """In-process, no HTTP: the server's work for one annotate request of 5 new labels while one
    participant's count grows from 0 to 5 x `requests` (a request's cost must not grow with the count)."""
    import shutil

    from autograder.event import store
    from autograder.event import server as event_server

    copy = db.with_name("op-cost.db")
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db}{suffix}").exists():
            shutil.copyfile(f"{db}{suffix}", f"{copy}{suffix}")
    events = store.Store(copy)
    server = event_server.EventServer(events, rate=1e9, burst=10**9)
    truth = server.truth(code)
    c_all = np.flatnonzero(np.isin(truth["pool_digits"], truth["track"]))
    me = events.participant(code, server.join(code, {"name": "op cost"})["result"]["token"])
    times = []
    for b in range(requests):
        batch = [int(i) for i in c_all[b * 5:(b + 1) * 5]]
        t0 = time.perf_counter()
        status, _ = server.op(me, {"op": "annotate", "indices": batch})
        times.append(1000 * (time.perf_counter() - t0))
        assert status == 200
    events.dispose()
    return {"requests": requests, "first_200_p50_ms": round(percentile(times[:200], 50), 3),
            "last_200_p50_ms": round(percentile(times[-200:], 50), 3), "p99_ms": round(percentile(times, 99), 3)}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--participants", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--think", type=float, default=0.25, help="mean pause between a participant's requests (s)")
    parser.add_argument("--kill-at", type=float, default=None, help="kill -9 the server after S s, then restart")
    parser.add_argument("--processes", type=int, default=5, help="client processes (the participants are spread)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--no-downloads", action="store_true",
                        help="skip the phase where every participant downloads the pool at once")
    parser.add_argument("--op-cost", action="store_true",
                        help="first measure one annotate request's server work in-process as a count grows to 10,000")
    args = parser.parse_args(argv)
    if args.kill_at is not None and not 0 < args.kill_at < args.seconds:
        parser.error(f"--kill-at {args.kill_at:g} must be within the run (0 < S < --seconds {args.seconds:g})")

    import httpx

    from autograder.event import cli, pool, store

    with tempfile.TemporaryDirectory(prefix="event-load-") as tmp:
        db, log = Path(tmp) / "events.db", Path(tmp) / "server.log"
        t0 = time.perf_counter()
        code, admin = cli.create(str(db), "7,1", "03_clustering")
        create_s = time.perf_counter() - t0
        truth = pool.read_truth(store.Store(db).blob(code, "truth"))
        cost = op_cost(db, code) if args.op_cost else None
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
        crowd = None if args.no_downloads else downloads(url, code, args.participants)

        cfg = {"url": url, "code": code, "seconds": args.seconds, "think": args.think, "n": args.participants,
               "c_all": c_all, "private": truth["private_digits"].tolist(),
               "tokens": crowd.pop("tokens") if crowd else {}}
        context = multiprocessing.get_context("fork")
        down, results = context.Event(), context.Queue()
        start = time.monotonic()
        cfg["end"] = time.time() + args.seconds  # wall clock: shared by the worker processes
        ids = list(range(args.participants))
        workers = [context.Process(target=_worker, args=(ids[w::args.processes], cfg, down, results), daemon=True)
                   for w in range(args.processes)]
        for w in workers:
            w.start()
        restart_s = None
        if args.kill_at is not None:
            time.sleep(max(0.0, start + args.kill_at - time.monotonic()))
            down.set()
            os.kill(server.pid, signal.SIGKILL)
            server.wait(10)
            t0 = time.perf_counter()
            server = start_server(db, port, log)
            restart_s = time.perf_counter() - t0
            down.clear()
        latencies, server_times, errors, clients = [], [], {}, []
        for _ in workers:
            part = results.get(timeout=args.seconds + 240)
            latencies += part["latencies"]
            server_times += part["server_times"]
            clients += part["clients"]
            for key, value in part["errors"].items():
                errors[key] = errors.get(key, 0) + value
        for w in workers:
            w.join(30)
        wall = time.monotonic() - start

        view = httpx.get(f"{url}/api/admin/{code}", headers={"Authorization": f"Bearer {admin}"}, timeout=60).json()
        stored = {p["name"]: p for p in view["participants"]}
        mismatches = [c["name"] for c in clients if c["name"] not in stored
                      or stored[c["name"]]["annotations"] != c["tally"]
                      or (c["submitted"] is not None and stored[c["name"]]["accuracy"] != c["submitted"]["accuracy"])]
        board = httpx.get(f"{url}/api/events/{code}/board", timeout=60).json()
        on_board = sum(r["accuracy"] is not None for r in board["rows"])
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()

    ms = [1000 * x for x in latencies]
    result = {
        "participants": args.participants, "client_processes": args.processes, "seconds": args.seconds,
        "think_s": args.think,
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
        "board_submitted_after": board["submitted"], "board_rows_with_submission": on_board,
        "event_create_s": round(create_s, 1), "pool_mb": round(pool_bytes / 1e6, 2),
        "pool_download_s": round(download_s, 3), "downloads_at_once": crowd, "cpus": os.cpu_count(),
        "op_cost": cost,
    }
    board_back = on_board == result["submitted"]
    ok = (result["p99_ms"] < TARGET_P99_MS and not errors and not mismatches and board_back
          and not (crowd and crowd["failures"]))
    result["met"] = ok
    print(json.dumps(result, indent=1))
    crowd_line = "" if crowd is None else (f", pool {crowd['mb_each']} MB to {crowd['participants']} at once: "
                                           f"p50 {crowd['p50_s']} s, max {crowd['max_s']} s each"
                                           f"{', failures ' + str(crowd['failures']) if crowd['failures'] else ''}")
    print(f"p99 annotate {result['p99_ms']} ms (target < {TARGET_P99_MS:g}), "
          f"{result['annotate_requests']} annotate requests, errors {errors or 'none'}, "
          f"count mismatches {len(mismatches)}, board {on_board}/{result['submitted']} submissions back"
          f"{crowd_line}: {'MET' if ok else 'NOT MET'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["met"] else 1)
