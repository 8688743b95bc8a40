"""``autograder serve``, ``autograder event create`` and ``autograder verify``: added to ``autograder``.

    autograder event create --track 7,1 --assignment 03_clustering [--db PATH_OR_URL] [--roster names.txt]
    autograder event export CODE [--format csv|json] [--output PATH] [--db PATH_OR_URL]
    autograder serve [--db PATH_OR_URL] [--host 127.0.0.1] [--port 8000] [--rate 20] [--burst 40]
                     [--trusted-proxy ADDR ...] [--public-url http://10.0.0.5:8000] [--workers N]
    autograder verify CODE --top 3 --course DIR [--notebooks DIR] [--db PATH_OR_URL] [--hidden-track 2,5]

``--db`` is a path to an SQLite file (WAL mode) or any SQLAlchemy URL; default
``.autograder/events.db`` in the current folder (git-ignored: it holds the labels). Files with real
names or personal codes (the invites, an export) go to ``.autograder/events/<CODE>/`` by default
(git-ignored too), never into the repository's root.

The board shows the address participants join, with a QR code of it: ``--public-url``, else the
machine's LAN address (the one its default route leaves from), never 127.0.0.1; ``serve`` prints it.

Every per-address limit (`autograder.event.limits`) keys on the TCP peer's address: proxy headers
(``X-Forwarded-For``) are ignored, whoever sends them, unless the server runs behind a reverse proxy
named with ``--trusted-proxy`` (an address or network, e.g. ``127.0.0.1`` for nginx on the same
machine); only then is the client the address that proxy puts in the header.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_DB = os.path.join(".autograder", "events.db")
EVENT_FILES = os.path.join(".autograder", "events")  # <CODE>/invites.csv, <CODE>/results.csv: git-ignored
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
    serve.add_argument("--burst", type=int, default=40, help="requests a participant may make at once (default 40)")
    serve.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDR", type=trusted_proxy,
                       help="a reverse proxy in front of this server (an IP address or network, e.g. 127.0.0.1 or "
                            "10.0.0.0/24; repeat for several): X-Forwarded-For is believed from it only. Default: "
                            "none, the header is ignored (else anyone could pose as any number of addresses and "
                            "pass every per-address limit)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="server processes (default 1): more than one needs a PostgreSQL --db, where they share "
                            "participants, rate limits, board streams and the board (for an event larger than one "
                            "process holds)")
    serve.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL",
                       help="SQLite durability: NORMAL survives a crash or kill -9 of the server (default), "
                            "FULL a power loss too (an fsync per request: slower)")
    serve.add_argument("--public-url", default=None, type=public_url, metavar="URL",
                       help="the address participants join, shown on the board with a QR code, e.g. "
                            "http://10.0.0.5:8000 (default: this machine's LAN address and --port; behind a reverse "
                            "proxy, the proxy's address)")
    event = commands.add_parser("event", help="create a live event, export its results")
    actions = event.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create an event; prints its join code and admin token")
    create.add_argument("--track", required=True, help='e.g. "7,1"')
    create.add_argument("--assignment", required=True, help="e.g. 03_clustering")
    create.add_argument("--db", default=None, help=db_help)
    create.add_argument("--roster", type=Path, default=None,
                        help="a text file with one participant name per line: the event becomes invite-only, "
                             "each name gets a personal join code (printed and written to --invites)")
    create.add_argument("--invites", type=Path, default=None,
                        help=f"where to write the personal codes as CSV (default: {EVENT_FILES}/<CODE>/invites.csv, "
                             "git-ignored)")
    create.add_argument("--no-baseline", action="store_true",
                        help="leave the baseline checkpoint out of the participants' pool download (then each "
                             "participant without it in their cache trains it, minutes); by default it is trained "
                             "once here if this machine has none, the same one `autograder grade` uses")
    create.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)  # tests only
    export = actions.add_parser("export", help="write an event's results (ranking, counts, verification) as CSV "
                                               "or JSON")
    export.add_argument("code", help="the event's join code")
    export.add_argument("--format", choices=["csv", "json"], default="csv")
    export.add_argument("--output", "-o", type=Path, default=None,
                        help=f"the file to write, atomically (default: {EVENT_FILES}/<CODE>/results.<format>, "
                             "git-ignored: it holds real names); - for standard output")
    export.add_argument("--db", default=None, help=db_help)
    verify = commands.add_parser("verify", help="re-run the top N of a live event's board in the sandboxed grader")
    verify.add_argument("code", help="the event's join code")
    verify.add_argument("--top", type=int, default=3, help="how many of the live ranking to verify (default 3)")
    verify.add_argument("--course", type=Path, required=True, help="the nbgrader course the event's assignment is in")
    verify.add_argument("--notebooks", type=Path, default=None,
                        help="collected notebooks: DIR/p<id>-<slug>.ipynb (as a MISSING line names it), or "
                             "DIR/<join name>.ipynb or its safe form if no other participant shares it "
                             "(default: the participants' uploads)")
    verify.add_argument("--db", default=None, help=db_help)
    verify.add_argument("--timeout", type=float, default=None, help="seconds per notebook (default: the grader's)")
    verify.add_argument("--tolerance", type=float, default=0.005,
                        help="how far the re-run's accuracy may be from the live one, for training that is not "
                             "bit-for-bit reproducible (default 0.005; the count and pass/fail must match exactly)")
    verify.add_argument("--hidden-track", default=None,
                        help="a notebook that matches on the event's data is graded on this pair too; it is marked "
                             "for review if it fails there or needs far more annotations (default: a pair about as "
                             "hard as the event's track sharing no digit with it, 2,5 for 7,1; `none`: the event's "
                             "track only, which a notebook of memorised labels passes)")


def trusted_proxy(value: str) -> str:
    """An address or network for ``--trusted-proxy`` (argparse type): not ``*``, which would trust anyone."""
    import ipaddress

    value = value.strip()
    try:
        (ipaddress.ip_network if "/" in value else ipaddress.ip_address)(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an IP address or network; name the reverse proxy's own address, e.g. 127.0.0.1 "
            "(a proxy on this machine) or 10.0.0.5") from None
    return value


def public_url(value: str) -> str:
    """An http(s) address for ``--public-url`` (argparse type), without a trailing slash."""
    from urllib.parse import urlsplit

    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"{value!r} is not an address participants can join; give the scheme, "
                                         "host and port, e.g. http://10.0.0.5:8000")
    return value


def lan_address() -> str | None:
    """This machine's address on its network: the source address of its default route (a UDP socket's
    connect sends nothing), else its host name's address; None when only a loopback address is found."""
    import ipaddress
    import socket

    found = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere, and nothing is sent
            found.append(probe.getsockname()[0])
    except OSError:
        pass
    try:
        found.append(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    for address in found:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_unspecified):
            return address
    return None


def shown_url(host: str, port: int, given: str | None = None) -> tuple[str, str]:
    """(the address the board shows, why that one): `given` (--public-url), else the host listened on when it
    is a real address, else the LAN address; a note says when participants could not reach it."""
    import ipaddress

    if given:
        return given, "--public-url"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and not (ip.is_loopback or ip.is_unspecified):
        shown = f"[{host}]" if ip.version == 6 else host
        return f"http://{shown}:{port}", "the address it listens on"
    lan = lan_address()
    if lan is None:
        return f"http://{host if ip is None else '127.0.0.1'}:{port}", (
            "no network address found: only this machine can join; give --public-url")
    why = "this machine's LAN address"
    if ip is not None and ip.is_loopback:
        why += (f"; but the server listens on {host} only, so participants cannot reach it: start it with "
                "--host 0.0.0.0")
    return f"http://{lan}:{port}", why


def _db(args) -> str:
    return args.db or os.environ.get(DB_ENV) or DEFAULT_DB


def create(db: str, track: str, assignment: str, seed: int | None = None,
           baseline: bool = True) -> tuple[str, str]:
    """Create an event in `db`; returns (join code, admin token).

    With `baseline` the participants' pool file also carries the track's baseline checkpoint
    (`with_baseline`), so nobody trains it on the day."""
    from autograder.event import pool, store
    from course import data

    digits = data.parse_track(track)
    seed, pool_file, truth = pool.build(digits, seed)
    if baseline:
        pool_file = with_baseline(pool_file, digits)
    return store.Store(db).create_event(digits, assignment, str(seed), pool_file, truth)


def baseline_checkpoint(track: tuple[int, ...]) -> tuple[str, bytes]:
    """(file name, bytes) of the track's baseline checkpoint: the grader's own (`autograder.grading.prepare.checkpoint`,
    trained once on this machine if missing). It saw only merged labels, so participants may have it."""
    from autograder.grading import prepare

    path = prepare.checkpoint(tuple(track))
    return path.name, path.read_bytes()


def with_baseline(pool_file: bytes, track: tuple[int, ...]) -> bytes:
    """The pool file (an npz) with the baseline checkpoint added: ``baseline`` (its bytes, uint8) and
    ``baseline_file`` (its file name in the model cache). `course.event_client` puts it in the participant's
    cache when the pool is downloaded; `course.data` reads only its own keys."""
    import io
    import zipfile

    import numpy as np

    name, blob = baseline_checkpoint(track)
    buffer = io.BytesIO(pool_file)
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_STORED) as archive:  # the checkpoint does not compress
        for key, array in (("baseline", np.frombuffer(blob, dtype=np.uint8)), ("baseline_file", np.asarray(name))):
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


def read_roster(path: Path) -> list[str]:
    """Names from a roster file: one per line; blank lines and lines starting with # are skipped."""
    from autograder.event.store import MAX_NAME

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"cannot read the roster {path}: {exc}") from None
    names = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    bad = [n for n in names if len(n) > MAX_NAME or any(not ch.isprintable() for ch in n)]
    if bad:
        raise SystemExit(f"roster {path}: names must be 1 to {MAX_NAME} printable characters: {bad[0]!r}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SystemExit(f"roster {path}: {twice[0]!r} appears more than once; one line per person.")
    if not names:
        raise SystemExit(f"roster {path} has no name (one name per line).")
    return names


def serve(db: str, host: str = "127.0.0.1", port: int = 8000, rate: float = 20.0,
          synchronous: str = "NORMAL", burst: int = 40, trusted_proxies: list[str] | None = None,
          public: str | None = None, workers: int = 1) -> None:
    """Run the event server; X-Forwarded-For is read only from `trusted_proxies` (none by default); the board
    shows `public` as the join address; `workers` processes (more than one: a PostgreSQL `db`, `shared`)."""
    import json

    import uvicorn

    from autograder.event import app, shared, store

    shared.check(store.database_url(db), workers)
    if workers > 1:  # each worker builds its app from these settings (`app.from_env`)
        os.environ[app.SERVE_ENV] = json.dumps({"db": db, "rate": rate, "burst": burst, "public_url": public,
                                                "synchronous": synchronous, "workers": workers})
        store.Store(db).dispose()  # the tables made once, before the workers race to make them
        application = "autograder.event.app:from_env"
    else:
        application = app.create_app(store.Store(db, synchronous=synchronous), rate=rate, burst=burst,
                                     public_url=public)
    trusted = list(trusted_proxies or [])
    # uvicorn's defaults believe X-Forwarded-For from 127.0.0.1 (and $FORWARDED_ALLOW_IPS): never implicitly
    uvicorn.run(application, factory=workers > 1, host=host, port=port, workers=workers, timeout_graceful_shutdown=2,
                log_level="warning", access_log=False, proxy_headers=bool(trusted),
                forwarded_allow_ips=",".join(trusted) if trusted else "")


def run(args) -> int:
    if args.command == "serve":
        from autograder.event.shared import NeedsPostgres

        proxies = f"; X-Forwarded-For believed from {', '.join(args.trusted_proxy)} only" if args.trusted_proxy else ""
        shown, why = shown_url(args.host, args.port, args.public_url)
        print(f"event server on http://{args.host}:{args.port} (board: /board, admin: /admin), store {_db(args)}"
              f"{proxies}\nthe board shows the join address {shown} ({why})", flush=True)
        try:
            serve(_db(args), args.host, args.port, args.rate, args.synchronous, args.burst, args.trusted_proxy, shown,
                  args.workers)
        except NeedsPostgres as exc:  # --workers on SQLite
            print(f"autograder serve: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "verify":
        return _verify(args)
    if args.action == "export":
        return _export(args)
    names = read_roster(args.roster) if args.roster is not None else None
    code, admin = create(_db(args), args.track, args.assignment, args.seed, baseline=not args.no_baseline)
    from autograder.event.export import board_link

    here = f"http://{lan_address() or '<this machine>'}:8000"
    print(f"event created for {args.assignment} on track {args.track}"
          f"{' (no baseline in the pool: participants train it)' if args.no_baseline else ''}\n"
          f"join code:   {code}\n"
          f"admin token: {admin}   (keep it secret; the admin page is /admin)\n"
          f"board link:  {here}{board_link(code, admin)}   (for the projector: never "
          "refused, whatever the room opens; it opens the board only)")
    if names is None:
        print(f"participants: course.event.join(\"{here}\", \"{code}\", \"their name\")\n"
              "an open event: anyone with the code joins under any name (one person can join under several); "
              "--roster names.txt makes it invite-only")
        return 0
    from autograder.event import export, store

    invites = store.Store(_db(args)).add_invites(code, names)
    target = args.invites or Path(EVENT_FILES) / code / "invites.csv"
    write_private(target, export.invites_csv([{"name": n, "code": c, "participant": None} for n, c in invites.items()]))
    print(f"invite-only: {len(invites)} personal codes, one per name (also in {target}; the admin page "
          "exports them again). Each participant joins with their own code:\n"
          f"    course.event.join(\"{here}\", \"<personal code>\")")
    width = max(len(n) for n in invites)
    for name, personal in invites.items():
        print(f"  {name:<{width}}  {personal}")
    return 0


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically (a temp file beside it, then a rename), readable by its owner only
    (mode 600: real names, personal codes); its folder is made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from course.files import temp_beside

    tmp = temp_beside(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _export(args) -> int:
    from autograder.event import export, store

    code = args.code.strip().upper()
    held = store.Store(_db(args))
    try:
        if held.event(code) is None:
            print(f"autograder event export: there is no event {code} in {_db(args)}", file=sys.stderr)
            return 2
        doc = export.results(held, code)
    finally:
        held.dispose()
    text = export.results_csv(doc) if args.format == "csv" else export.results_json(doc)
    if str(args.output) == "-":
        sys.stdout.write(text)
        return 0
    target = args.output or Path(EVENT_FILES) / code / f"results.{args.format}"
    write_private(target, text)
    print(f"{len(doc['participants'])} participants of event {code} written to {target}")
    return 0


def _verify(args) -> int:
    from autograder.event import verify

    try:
        checks = verify.verify(_db(args), args.code.strip().upper(), args.course, args.top, args.notebooks,
                               timeout=args.timeout, tolerance=args.tolerance, hidden_track=args.hidden_track)
    except verify.VerifyError as exc:
        print(f"autograder verify: {exc}", file=sys.stderr)
        return 2
    counts = {s: sum(c.status == s for c in checks) for s in ("verified", "differs", "review", "missing")}
    print(f"{counts['verified']} verified, {counts['differs']} differ, {counts['review']} to review, "
          f"{counts['missing']} missing (stored in the event: the board and the admin page show them)")
    return 0 if counts["verified"] == len(checks) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autograder")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
