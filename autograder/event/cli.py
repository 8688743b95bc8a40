"""``autograder serve`` and ``autograder event create``: added to the ``autograder`` command.

    autograder event create --track 7,1 --assignment 03_clustering [--db PATH_OR_URL]
    autograder serve [--db PATH_OR_URL] [--host 127.0.0.1] [--port 8000] [--rate 20]

``--db`` is a path to an SQLite file (WAL mode) or any SQLAlchemy URL; default
``.autograder/events.db`` in the current folder (git-ignored: it holds the labels).
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_DB = os.path.join(".autograder", "events.db")
DB_ENV = "AUTOGRADER_EVENT_DB"


def add_commands(commands) -> None:
    """Add ``serve`` and ``event`` to the ``autograder`` subparsers."""
    db_help = f"SQLite file or SQLAlchemy URL (default: ${DB_ENV} or {DEFAULT_DB})"
    serve = commands.add_parser("serve", help="run the live event server (board, admin page, participant API)")
    serve.add_argument("--db", default=None, help=db_help)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 for participants on the network)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--rate", type=float, default=20.0, help="requests per second per participant (default 20)")
    serve.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL",
                       help="SQLite durability: NORMAL survives a crash or kill -9 of the server (default), "
                            "FULL a power loss too (an fsync per request: slower)")
    event = commands.add_parser("event", help="create a live event")
    actions = event.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create an event; prints its join code and admin token")
    create.add_argument("--track", required=True, help='e.g. "7,1"')
    create.add_argument("--assignment", required=True, help="e.g. 03_clustering")
    create.add_argument("--db", default=None, help=db_help)
    create.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)  # tests only


def _db(args) -> str:
    return args.db or os.environ.get(DB_ENV) or DEFAULT_DB


def create(db: str, track: str, assignment: str, seed: int | None = None) -> tuple[str, str]:
    """Create an event in `db`; returns (join code, admin token)."""
    from autograder.event import pool, store
    from course import data

    digits = data.parse_track(track)
    seed, pool_file, truth = pool.build(digits, seed)
    return store.Store(db).create_event(digits, assignment, str(seed), pool_file, truth)


def serve(db: str, host: str = "127.0.0.1", port: int = 8000, rate: float = 20.0,
          synchronous: str = "NORMAL") -> None:
    import uvicorn

    from autograder.event import app, store

    application = app.create_app(store.Store(db, synchronous=synchronous), rate=rate)
    uvicorn.run(application, host=host, port=port, workers=1, timeout_graceful_shutdown=2,
                log_level="warning", access_log=False)


def run(args) -> int:
    if args.command == "serve":
        print(f"event server on http://{args.host}:{args.port} (board: /board, admin: /admin), store {_db(args)}",
              flush=True)
        serve(_db(args), args.host, args.port, args.rate, args.synchronous)
        return 0
    code, admin = create(_db(args), args.track, args.assignment, args.seed)
    print(f"event created for {args.assignment} on track {args.track}\n"
          f"join code:   {code}\n"
          f"admin token: {admin}   (keep it secret; the admin page is /admin)\n"
          f"participants: course.event.join(\"http://<this machine>:8000\", \"{code}\", \"their name\")")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autograder")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
