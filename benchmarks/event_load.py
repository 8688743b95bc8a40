"""Load on the live event server: N participants annotating and submitting at once, on loopback.

Targets (issues 14 and 24): 50, and 500, simulated participants, each joining, annotating in small
batches and submitting, concurrently for 60 s: p99 latency of an annotate request under 100 ms on the
2-core machine, no error that is not the client's fault. One run measures several counts in turn
(``--participants 50 500``, each on a fresh event of the same store and server) and writes one results
file: per count p50/p95/p99/max, errors, the server's CPU (every process of it: ``--workers``), the
machine's load average and cores. With ``--kill-at S`` the server is killed with SIGKILL S seconds into
each count's run and restarted on the same store, and every participant's count must equal their own
tally afterwards (the clients retry the request the crash cut off: annotating the same indices again is
free, so a retry never double-charges), every submission that got a reply must be stored with the
accuracy the client was told, and the board must show them all again. Before the load, every participant
downloads the event's pool at once (as a room does when the event starts): its size and the time per
participant. An error is any reply but 200 to these well-formed requests (the clients make none that is
their fault: each buys new indices, submits once, and the rate limit is lifted); a request cut off by
the kill is retried, not counted. The exit status is 0 when every target is met.

Then the board's stream (``--streams 100 400``, skipped with ``--streams``): while one participant
annotates (a new board every tick), that many board pages hold the stream open; the server's CPU with 1
open page and with each count, per open page: CPU per update, bytes per update, and the share of a core.

Each participant connects from its own loopback address (127.1.x.y: the per-address limits are a room's,
`autograder.event.limits`) over one keep-alive connection, with a think time between requests. The
clients are asyncio coroutines speaking plain HTTP/1.1 (a few client processes): a thread per participant
would spend more of the 2 cores than the server. Everything is bounded: the run time, the requests per
participant, the restart wait.

    python -m benchmarks.event_load -n 50 500 --json benchmarks/results/event_load/run_50_500.json
    python -m benchmarks.event_load --kill-at 30          # and a kill -9 + restart half-way
    python -m benchmarks.event_load -n 10 --seconds 10    # a quick look
    python -m benchmarks.event_load --op-cost             # and one request's server work as a count grows
    python -m benchmarks.event_load --no-downloads        # skip the concurrent pool downloads
    python -m benchmarks.event_load --db postgresql+psycopg://... --workers 2   # several server processes

It creates an event (reads MNIST: set COURSE_DATA_DIR) and starts ``autograder serve`` on 127.0.0.1 in
a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
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
TIMEOUT_S = 30.0  # one request
STREAM_SECONDS = 10.0  # each stream-cost measurement
TICK_S = 0.2  # the stream phase's annotating participant: one request per tick (the server's SSE_POLL_S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def address(k: int) -> str:
    """Participant k's own loopback address (127.1.x.y; Linux answers all of 127/8 on lo)."""
    return f"127.1.{k // 250}.{k % 250 + 1}"


def start_server(db: str, port: int, log: Path, workers: int = 1, idle: bool = True) -> subprocess.Popen:
    """``autograder serve`` on `port`, once it answers (and with `idle`, once its start-up work is done)."""
    import httpx

    process = subprocess.Popen(
        [sys.executable, "-m", "autograder.event.cli", "serve", "--db", db, "--port", str(port),
         "--rate", "1000", *(["--workers", str(workers)] if workers > 1 else [])],
        cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}); see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                if idle:
                    settle(process.pid)
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not start; see {log}")


def settle(pid: int, limit_s: float = 30.0) -> None:
    """Wait (bounded) until the server is idle: its start-up work (every worker's imports, the nbformat warm-up
    in the background) is no part of any measurement."""
    deadline = time.monotonic() + limit_s
    last = server_cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = server_cpu_s(pid)
        if now - last < 0.05:
            return
        last = now


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of the server: every process of its session (its workers too)."""
    return server_usage(pid)[0]


def server_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, seconds its threads waited for a core while runnable) of the server's processes (its
    session: the server starts a new one); the wait is the machine's other work, not the server's."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu, waited = 0, 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != pid:  # its session id
                continue
            cpu += int(fields[11]) + int(fields[12])
            for task in os.listdir(f"/proc/{entry}/task"):
                with open(f"/proc/{entry}/task/{task}/schedstat") as f:
                    waited += int(f.read().split()[1])  # ns on a run queue, waiting for a core
        except (OSError, IndexError, ValueError):
            continue
    return cpu / tick, waited / 1e9


# --- a minimal HTTP/1.1 client (asyncio): requests of a few hundred bytes, replies with a Content-Length ---

class Connection:
    def __init__(self, port: int, local: str):
        self.port, self.local = port, local
        self.reader = self.writer = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(self.local, 0))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"", token: str | None = None,
                      sink: bool = False) -> tuple[int, dict, bytes]:
        """(status, headers, body); `sink`: the body is read and counted, not kept. Raises OSError when the
        connection broke (the caller reconnects)."""
        if self.writer is None:
            await self.open()
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
                + (f"Authorization: Bearer {token}\r\n" if token else "")
                + ("Content-Type: application/json\r\n" if body else "") + "\r\n")
        try:
            self.writer.write(head.encode() + body)
            await self.writer.drain()
            status_line = await self.reader.readline()
            if not status_line:
                raise ConnectionResetError("closed")
            headers = {}
            while True:
                line = await self.reader.readline()
                if line in (b"\r\n", b""):
                    break
                key, _, value = line.decode("latin-1").partition(":")
                headers[key.strip().lower()] = value.strip()
            n = int(headers.get("content-length", 0))
            if sink:
                left = n
                while left:
                    chunk = await self.reader.read(min(left, 1 << 20))
                    if not chunk:
                        raise ConnectionResetError("closed")
                    left -= len(chunk)
                data = b""
            else:
                data = await self.reader.readexactly(n)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.close()
            raise ConnectionResetError(str(exc)) from exc
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(status_line.split()[1]), headers, data


def _worker(ids: list[int], cfg: dict, down, results) -> None:
    """One client process: its participants as coroutines, each on its own keep-alive connection."""
    out = asyncio.run(_participants(ids, cfg, down))
    times = os.times()
    out["cpu_s"] = times.user + times.system
    results.put(out)


async def _participants(ids: list[int], cfg: dict, down) -> dict:
    out = {"latencies": [], "server_times": [], "errors": {}, "clients": [], "sent": []}

    async def participant(k: int) -> None:
        rng = random.Random(k)
        me = {"name": f"p{k:03d}", "tally": 0, "submitted": None, "retries": 0}
        mine = cfg["c_all"][k::cfg["n"]]
        conn = Connection(cfg["port"], address(k))

        async def request(path: str, body: dict, token: str | None, timeout: float = TIMEOUT_S):
            raw = json.dumps(body).encode()
            retried = False
            while time.time() < cfg["end"] + 60:  # bounded: retry through a restart
                if down.is_set():
                    await asyncio.sleep(0.05)
                    continue
                try:
                    t = time.perf_counter()
                    status, headers, data = await asyncio.wait_for(conn.request("POST", path, raw, token), timeout)
                    elapsed = time.perf_counter() - t
                except (ConnectionResetError, asyncio.TimeoutError):
                    conn.close()
                    me["retries"] += 1
                    retried = True
                    await asyncio.sleep(0.05)
                    continue
                timing = headers.get("server-timing", "")
                reply = json.loads(data) if data else {}
                if retried:  # a request cut off by the kill is no latency
                    return status, reply, None, None
                return status, reply, elapsed, float(timing.split("dur=")[1]) / 1000 if "dur=" in timing else None
            raise RuntimeError("the server did not come back")

        token = cfg["tokens"].get(k)  # joined already when the room downloaded the pool
        if token is None:
            status, reply, _, _ = await request(f"/api/events/{cfg['code']}/join", {"name": me["name"]}, None,
                                                120.0)  # a room joining at once waits; a retry would find the name taken
            if status != 200:
                out["errors"][f"join {status}"] = out["errors"].get(f"join {status}", 0) + 1
                out.setdefault("messages", {})[f"join {status}"] = str(reply.get("message"))[:300]
                conn.close()
                return
            token = reply["result"]["token"]
        await asyncio.sleep(rng.random() * cfg["think"])  # not all in the same millisecond
        for b in range(MAX_REQUESTS):
            if time.time() >= cfg["end"]:
                break
            batch = [int(i) for i in mine[b * BATCH:(b + 1) * BATCH]]
            status, reply, elapsed, inside = await request(f"/api/events/{cfg['code']}/op",
                                                           {"op": "annotate", "indices": batch}, token)
            if elapsed is not None:
                out["latencies"].append(elapsed)
                out["sent"].append(time.time() - elapsed)
                if b == 0:  # it opened the participant's connection
                    out.setdefault("first", []).append(elapsed)
            if inside is not None:
                out["server_times"].append(inside)
            if status != 200:
                out["errors"][str(status)] = out["errors"].get(str(status), 0) + 1
                out.setdefault("messages", {})[str(status)] = str(reply.get("message"))[:300]
            else:
                me["tally"] = reply["result"]["count"]
            await asyncio.sleep(rng.expovariate(1 / cfg["think"]) if cfg["think"] > 0 else 0)
        status, reply, _, _ = await request(f"/api/events/{cfg['code']}/op",
                                            {"op": "score", "split": "private", "predictions": cfg["private"]}, token)
        if status == 200:
            me["submitted"] = reply["result"]
        else:
            out["errors"][f"submit {status}"] = out["errors"].get(f"submit {status}", 0) + 1
        conn.close()
        out["clients"].append(me)

    await asyncio.gather(*(participant(k) for k in ids))
    return out


async def _downloads(port: int, code: str, n: int) -> dict:
    """`n` participants join, then download the event's pool at once: seconds per participant, and their
    tokens (the load's participants are these people: a room joins once, then works)."""
    times: list[float] = []
    tokens: dict[int, str] = {}
    failures: list[str] = []
    sizes: list[int] = []
    go = asyncio.Event()
    joined = 0

    async def one(k: int) -> None:
        nonlocal joined
        conn = Connection(port, address(k))
        try:
            status, _, data = await asyncio.wait_for(conn.request(
                "POST", f"/api/events/{code}/join", json.dumps({"name": f"p{k:03d}"}).encode()), 120)
            if status != 200:
                raise RuntimeError(f"join {status}")
            tokens[k] = json.loads(data)["result"]["token"]
        except Exception as exc:  # counted: a join that did not come back is the server's failure
            failures.append(f"join {type(exc).__name__}: {exc}"[:80])
            return
        finally:
            joined += 1
            if joined == n:
                go.set()
        await go.wait()
        conn.close()  # a new connection, as `course.event` opens one per request (the join's may have idled out)
        try:
            t0 = time.perf_counter()
            status, headers, _ = await asyncio.wait_for(conn.request(
                "GET", f"/api/events/{code}/pool", token=tokens[k], sink=True), 300)
            elapsed = time.perf_counter() - t0
            if status == 200:
                times.append(elapsed)
                sizes.append(int(headers.get("content-length", 0)))
            else:
                failures.append(str(status))
        except Exception as exc:
            failures.append(type(exc).__name__)
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(n)))
    wall = time.perf_counter() - t0
    return {"participants": n, "mb_each": round(max(sizes, default=0) / 1e6, 2),
            "p50_s": round(percentile(times, 50), 2), "max_s": round(max(times, default=float("nan")), 2),
            "all_done_s": round(wall, 2), "failures": failures, "tokens": tokens}


def downloads(port: int, code: str, n: int) -> dict:
    return asyncio.run(_downloads(port, code, n))


def op_cost(db: Path, code: str, requests: int = 2000) -> dict:
    """In-process, no HTTP: the server's work for one annotate request of 5 new labels while one
    participant's count grows from 0 to 5 x `requests` (a request's cost must not grow with the count)."""
    import shutil

    from autograder.event import server as event_server
    from autograder.event import store

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


def _slices(sent: list[float], ms: list[float], start: float, width: float) -> list[float]:
    """p99 latency (ms) of the requests sent in each `width`-second slice of the run: a stall shows where."""
    slices: dict[int, list[float]] = {}
    for t, x in zip(sent, ms):
        slices.setdefault(int((t - start) // width), []).append(x)
    return [round(percentile(slices[k], 99), 1) for k in sorted(slices)]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def load_count(args, n: int, db: str, server_box: list, port: int, log: Path, events, truth, c_all,
               base_code: str, admin: str) -> dict:
    """One count's run on a fresh event (the same pool and truth as `base_code`): downloads, load, checks."""
    import httpx

    url = f"http://127.0.0.1:{port}"
    code = base_code if n == args.participants[0] else events.create_event(
        tuple(truth["track"].tolist()), "03_clustering", "0", events.blob(base_code, "pool"),
        events.blob(base_code, "truth"))[0]
    admin_of = admin if code == base_code else None
    # one participant's pool download, alone
    with httpx.Client(timeout=60) as client:
        token = client.post(f"{url}/api/events/{code}/join", json={"name": "downloader"}).json()["result"]["token"]
        t0 = time.perf_counter()
        pool_bytes = len(client.get(f"{url}/api/events/{code}/pool",
                                    headers={"Authorization": f"Bearer {token}"}).content)
        download_s = time.perf_counter() - t0
    crowd = None if args.no_downloads else downloads(port, code, n)

    cfg = {"port": port, "code": code, "seconds": args.seconds, "think": args.think, "n": n,
           "c_all": c_all, "private": truth["private_digits"].tolist(),
           "tokens": crowd.pop("tokens") if crowd else {}}
    context = multiprocessing.get_context("fork")
    down, results = context.Event(), context.Queue()
    processes = max(1, min(args.processes, n))
    start = time.monotonic()
    load_before, (cpu_before, wait_before) = os.getloadavg()[0], server_usage(server_box[0].pid)
    cfg["end"] = time.time() + args.seconds  # wall clock: shared by the client processes
    ids = list(range(n))
    workers = [context.Process(target=_worker, args=(ids[w::processes], cfg, down, results), daemon=True)
               for w in range(processes)]
    for w in workers:
        w.start()
    restart_s, cpu_killed, wait_killed = None, 0.0, 0.0
    if args.kill_at is not None:
        time.sleep(max(0.0, start + args.kill_at - time.monotonic()))
        down.set()
        cpu_killed, wait_killed = (a - b for a, b in zip(server_usage(server_box[0].pid), (cpu_before, wait_before)))
        os.killpg(server_box[0].pid, signal.SIGKILL)
        server_box[0].wait(10)
        t0 = time.perf_counter()
        server_box[0] = start_server(db, port, log, args.workers, idle=False)  # answering again: the room goes on
        restart_s = time.perf_counter() - t0
        cpu_before, wait_before = server_usage(server_box[0].pid)
        down.clear()
    latencies, server_times, errors, clients, sent, client_cpu, messages, first = [], [], {}, [], [], 0.0, {}, []
    for _ in workers:
        part = results.get(timeout=args.seconds + 240)
        latencies += part["latencies"]
        sent += part["sent"]
        first += part.get("first", [])
        client_cpu += part["cpu_s"]
        server_times += part["server_times"]
        clients += part["clients"]
        for key, value in part["errors"].items():
            errors[key] = errors.get(key, 0) + value
        messages.update(part.get("messages", {}))
    for w in workers:
        w.join(30)
    wall = time.monotonic() - start
    cpu_now, wait_now = server_usage(server_box[0].pid)
    cpu, waited = cpu_killed + cpu_now - cpu_before, wait_killed + wait_now - wait_before
    load_after = os.getloadavg()[0]

    if admin_of is not None:
        view = httpx.get(f"{url}/api/admin/{code}", headers={"Authorization": f"Bearer {admin_of}"}, timeout=60).json()
        stored = {p["name"]: p for p in view["participants"]}
    else:  # a count's own event: its admin token is not printed, so read the standings from the store
        stored = {r["name"]: {"annotations": r["count"], "accuracy": r["accuracy"]} for r in events.standings(code)}
    mismatches = [c["name"] for c in clients if c["name"] not in stored
                  or stored[c["name"]]["annotations"] != c["tally"]
                  or (c["submitted"] is not None and stored[c["name"]]["accuracy"] != c["submitted"]["accuracy"])]
    board = httpx.get(f"{url}/api/events/{code}/board", timeout=60).json()
    on_board = sum(r["accuracy"] is not None for r in board["rows"])

    ms = [1000 * x for x in latencies]
    rate = len(ms) / wall
    result = {
        "participants": n, "client_processes": processes, "seconds": args.seconds, "think_s": args.think,
        "annotate_requests": len(ms), "requests_per_s": round(rate, 1),
        "requests_per_s_per_participant": round(rate / n, 2),
        "p50_ms": round(percentile(ms, 50), 1), "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1), "max_ms": round(max(ms), 1) if ms else None,
        "server_p50_ms": round(percentile([1000 * x for x in server_times], 50), 1),
        "server_p99_ms": round(percentile([1000 * x for x in server_times], 99), 1),
        "server_cpu_s": round(cpu, 1), "server_cores_busy": round(cpu / wall, 2),
        # the server's threads waited this long for a core while runnable, per second (other work on the machine)
        "server_runqueue_wait_s_per_s": round(waited / wall, 2),
        "client_cores_busy": round(client_cpu / wall, 2),  # the simulated participants' own processes
        "p99_ms_per_10s": _slices(sent, ms, cfg["end"] - args.seconds, 10.0),
        "first_request_p99_ms": round(percentile([1000 * x for x in first], 99), 1),  # each opened a connection
        "server_cpu_ms_per_request": round(1000 * cpu / max(1, len(ms)), 3),
        # the participants one core of server holds (its CPU alone, measured) if each made one request per think
        # time, the model's pace (a participant in a notebook makes far fewer: training runs between requests)
        "participants_per_core": int(args.think * len(ms) / cpu) if cpu > 0 else None,
        "load_average_before": round(load_before, 2), "load_average": round(load_after, 2),
        "errors": errors, "error_messages": messages, "submitted": sum(c["submitted"] is not None for c in clients),
        "annotations_total": sum(c["tally"] for c in clients),
        "kill_at": args.kill_at, "restart_s": None if restart_s is None else round(restart_s, 2),
        "retries": sum(c["retries"] for c in clients), "count_mismatches": mismatches,
        "board_submitted_after": board["submitted"], "board_rows_with_submission": on_board,
        "pool_mb": round(pool_bytes / 1e6, 2), "pool_download_s": round(download_s, 3),
        "downloads_at_once": crowd, "event": code,
    }
    result["met"] = (result["p99_ms"] < TARGET_P99_MS and not errors and not mismatches
                     and on_board == result["submitted"] and not (crowd and crowd["failures"]))
    return result


async def _stream_pages(port: int, code: str, k0: int, pages: int, seconds: float) -> dict:
    """`pages` open board streams (from their own addresses) for `seconds`: updates and bytes each got."""
    got = {"updates": [], "bytes": [], "refused": 0}

    async def page(k: int) -> None:
        conn = Connection(port, address(k))
        updates = size = 0
        try:
            await conn.open()
            conn.writer.write(f"GET /api/events/{code}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            await conn.writer.drain()
            head = await conn.reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                got["refused"] += 1
                return
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                try:
                    chunk = await asyncio.wait_for(conn.reader.read(1 << 16), left)
                except asyncio.TimeoutError:
                    break
                if not chunk:
                    break
                size += len(chunk)
                updates += chunk.count(b"data: ")
        finally:
            conn.close()
            got["updates"].append(updates)
            got["bytes"].append(size)

    await asyncio.gather(*(page(k0 + k) for k in range(pages)))
    return got


def _pages_process(port, code, k0, pages, seconds, queue) -> None:
    queue.put(asyncio.run(_stream_pages(port, code, k0, pages, seconds)))


def stream_cost(port: int, pid_of, code: str, c_all, levels: list[int]) -> dict:
    """The board stream's cost per open page: one participant annotates 5 new labels every TICK_S (the board
    changes at every tick of the server's feed) while 1, then each of `levels`, pages hold the stream open."""
    import httpx

    stop = multiprocessing.get_context("fork").Event()

    def annotate() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            token = client.post(f"/api/events/{code}/join", json={"name": "ticker"}).json()["result"]["token"]
            for b in range(100_000):
                if stop.is_set():
                    return
                client.post(f"/api/events/{code}/op", headers={"Authorization": f"Bearer {token}"},
                            json={"op": "annotate", "indices": [int(i) for i in c_all[-(b + 1) * 5:][:5]]})
                time.sleep(TICK_S)

    import threading

    ticker = threading.Thread(target=annotate, daemon=True)
    ticker.start()
    rows = []
    context = multiprocessing.get_context("fork")
    for pages in [1, *levels]:
        queue = context.Queue()
        procs = [context.Process(target=_pages_process, daemon=True,
                                 args=(port, code, 1000 + 1000 * p + part * 250, share, STREAM_SECONDS, queue))
                 for part, share in enumerate(_shares(pages, 4)) for p in [len(rows)] if share]
        for p in procs:
            p.start()
        time.sleep(2.0)  # every page connected
        cpu0, t0 = server_cpu_s(pid_of()), time.monotonic()
        time.sleep(STREAM_SECONDS - 3.0)
        cpu, wall = server_cpu_s(pid_of()) - cpu0, time.monotonic() - t0
        got = {"updates": [], "bytes": [], "refused": 0}
        for _ in procs:
            part = queue.get(timeout=60)
            got["updates"] += part["updates"]
            got["bytes"] += part["bytes"]
            got["refused"] += part["refused"]
        for p in procs:
            p.join(10)
        rows.append({"pages": pages, "refused": got["refused"], "server_cores_busy": round(cpu / wall, 3),
                     "updates_per_page": round(float(np.median(got["updates"])), 1),
                     "updates_per_s": round(float(np.median(got["updates"])) / STREAM_SECONDS, 2),
                     "kb_per_page": round(float(np.median(got["bytes"])) / 1e3, 1)})
        time.sleep(1.5)  # the streams closed
    board = httpx.get(f"http://127.0.0.1:{port}/api/events/{code}/board", timeout=30)  # what every page got
    stop.set()
    ticker.join(10)
    one, rest = rows[0], rows[1:]
    per_page = []
    for r in rest:
        extra = r["server_cores_busy"] - one["server_cores_busy"]
        pages = r["pages"] - one["pages"]
        updates = max(r["updates_per_s"], 1e-9)
        per_page.append({"pages": r["pages"], "core_share_per_page_pct": round(100 * extra / pages, 3),
                         "cpu_ms_per_update_per_page": round(1000 * extra / pages / updates, 3)})
    return {"rows": rows, "per_page": per_page, "board_rows": len(board.json()["rows"]),
            "board_kb": round(len(board.content) / 1e3, 1), "tick_s": TICK_S, "seconds": STREAM_SECONDS,
            "cpu_ms_per_update_per_page": max(p["cpu_ms_per_update_per_page"] for p in per_page) if per_page else None,
            "core_share_per_page_pct": max(p["core_share_per_page_pct"] for p in per_page) if per_page else None}


def _shares(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--participants", type=int, nargs="+", default=[50],
                        help="participant counts, measured one after the other (e.g. 50 500)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--think", type=float, default=0.25, help="mean pause between a participant's requests (s)")
    parser.add_argument("--kill-at", type=float, default=None, help="kill -9 the server after S s, then restart")
    parser.add_argument("--processes", type=int, default=4, help="client processes (the participants are spread)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--no-downloads", action="store_true",
                        help="skip the phase where every participant downloads the pool at once")
    parser.add_argument("--op-cost", action="store_true",
                        help="first measure one annotate request's server work in-process as a count grows to 10,000")
    parser.add_argument("--streams", type=int, nargs="*", default=[100, 400],
                        help="open board pages for the stream's cost (after the load; none: skipped)")
    parser.add_argument("--db", default=None, help="the event store's SQLAlchemy URL (default: SQLite in a temp folder)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (`autograder serve --workers`)")
    parser.add_argument("--postgres", action="store_true",
                        help="the store on a throw-away PostgreSQL cluster (initdb, pg_ctl: tests/helpers/postgres.py)")
    args = parser.parse_args(argv)
    if args.kill_at is not None and not 0 < args.kill_at < args.seconds:
        parser.error(f"--kill-at {args.kill_at:g} must be within the run (0 < S < --seconds {args.seconds:g})")
    if any(n < 1 or n > 1000 for n in args.participants):
        parser.error("each participant count must be 1 to 1000 (one loopback address each)")

    from autograder.event import cli, pool, store

    with tempfile.TemporaryDirectory(prefix="event-load-") as tmp, contextlib.ExitStack() as stack:
        if args.postgres:
            from tests.helpers import postgres

            args.db = postgres.new_database(stack.enter_context(postgres.cluster()))
        db, log = args.db or str(Path(tmp) / "events.db"), Path(tmp) / "server.log"
        t0 = time.perf_counter()
        code, admin = cli.create(db, "7,1", "03_clustering")
        create_s = time.perf_counter() - t0
        events = store.Store(db)
        truth = pool.read_truth(events.blob(code, "truth"))
        cost = op_cost(Path(db), code) if args.op_cost and args.db is None else None
        c_all = np.flatnonzero(np.isin(truth["pool_digits"], truth["track"]))
        port = free_port()
        box = [start_server(db, port, log, args.workers)]
        try:
            counts = [load_count(args, n, db, box, port, log, events, truth, c_all, code, admin)
                      for n in args.participants]
            streams = stream_cost(port, lambda: box[0].pid, counts[-1]["event"], c_all, args.streams) \
                if args.streams else None
            if any(c["errors"] or (c["downloads_at_once"] or {}).get("failures") for c in counts):
                print(f"the server's log ends:\n{log.read_text(errors='replace')[-4000:]}", file=sys.stderr)
        finally:
            os.killpg(box[0].pid, signal.SIGINT)
            try:
                box[0].wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(box[0].pid, signal.SIGKILL)
            events.dispose()

    result = {
        "participants": args.participants, "seconds": args.seconds, "think_s": args.think, "kill_at": args.kill_at,
        "workers": args.workers, "store": "postgresql" if str(db).startswith("postgresql") else "sqlite",
        "cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
        "event_create_s": round(create_s, 1), "pool_mb": counts[0]["pool_mb"],
        "counts": counts, "streams": streams, "op_cost": cost,
        "met": all(c["met"] for c in counts),
    }
    print(json.dumps(result, indent=1))
    for c in counts:
        crowd = c["downloads_at_once"]
        crowd_line = "" if crowd is None else (f", pool {crowd['mb_each']} MB to {crowd['participants']} at once: "
                                               f"p50 {crowd['p50_s']} s, max {crowd['max_s']} s each"
                                               f"{', failures ' + str(crowd['failures'][:3]) if crowd['failures'] else ''}")
        print(f"{c['participants']} participants: p99 annotate {c['p99_ms']} ms (target < {TARGET_P99_MS:g}), "
              f"{c['annotate_requests']} annotate requests ({c['requests_per_s']}/s), errors {c['errors'] or 'none'}, "
              f"count mismatches {len(c['count_mismatches'])}, board {c['board_rows_with_submission']}/"
              f"{c['submitted']} submissions back, server {c['server_cores_busy']} cores busy, load "
              f"{c['load_average']}{crowd_line}: {'MET' if c['met'] else 'NOT MET'}")
    if streams:
        print(f"board stream: {streams['board_kb']} kB board of {streams['board_rows']} rows; per open page "
              f"{streams['cpu_ms_per_update_per_page']} ms server CPU per update, "
              f"{streams['core_share_per_page_pct']} % of a core")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["met"] else 1)
