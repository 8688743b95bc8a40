"""The ``autograder`` command: grade the submissions of an assignment, build its leaderboard.

    autograder grade 03_clustering [--course DIR] [--student ID ...] [--timeout S] [--wait S] [--tracks 7,1 2,5 ...]
                                   [--jobs N | --scheduler tcp://HOST:8786] [--threads-per-kernel K] [--db URL]
    autograder leaderboard 03_clustering [--course DIR] [--db URL]
    autograder secret rotate 03_clustering [--course DIR]
    autograder dry-run [03_clustering] [--course DIR] [--dir DIR] [--open]   (a rehearsal: autograder.grading.dryrun)
    autograder event create --track 7,1 --assignment 03_clustering [--db PATH_OR_URL]   (live event mode:
    autograder serve [--db PATH_OR_URL] [--host 127.0.0.1] [--port 8000]                see autograder.event)

``grade`` autogrades every ``DIR/submitted/*/<assignment>/`` with nbgrader (one
annotation service, sandboxed kernel and wall-clock limit per submission), stores
one row each in ``DIR/grades.db``, rebuilds ``DIR/leaderboard/<assignment>.*`` and
prints the table. One batch per course at a time: a second ``grade`` says so and
stops (or queues with ``--wait``). ``leaderboard`` only rebuilds the leaderboard
from the store. ``secret rotate`` draws a new shuffle secret for an assignment
(regrade everyone afterwards). ``--tracks 7,1 2,5`` grades every submission once
per track (hidden tracks, `autograder.grading.tracks`): it passes only if it passes on every
track; the baselines and grading data of all tracks are made before the first
submission. ``--jobs N`` grades N submissions at once on this machine
(`autograder.grading.parallel`), ``--scheduler`` on the workers of a Dask cluster
(`autograder.grading.cluster`); either way this process alone writes the course, and each kernel
gets the cores of its machine divided by the gradings at once there (`autograder.sandbox.threads`,
or ``--threads-per-kernel``). A batch
killed in the middle (``kill -9``, power cut) resumes when the same command runs
again: the saved rows are kept, the others graded (`autograder.grading.journal`).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from tqdm.auto import tqdm

from autograder import layout, sandbox
from autograder.grading import dryrun, journal, locks, runner, secret
from autograder.results import clean, leaderboard, store
from autograder.sandbox import threads
from autograder.event import cli as event_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autograder", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("grade", help="autograde the submissions of an assignment")
    grade.add_argument("assignment", help="e.g. 03_clustering")
    grade.add_argument("--course", type=Path, default=Path("."), help="course root (default: .)")
    grade.add_argument("--student", action="append", metavar="ID",
                       help="grade only this student (repeat for several); default: everyone")
    grade.add_argument("--timeout", type=float, default=runner.DEFAULT_TIMEOUT_S, metavar="S",
                       help=f"wall-clock limit per submission in seconds (default {runner.DEFAULT_TIMEOUT_S:g})")
    grade.add_argument("--memory", type=float, default=runner.DEFAULT_MEMORY_GB, metavar="GB",
                       help=f"memory limit of the kernel (default {runner.DEFAULT_MEMORY_GB:g} GB): with cgroups, of all its "
                            "processes together (RAM disk included); without, of each process's address space")
    limits = sandbox.Limits()
    grade.add_argument("--max-processes", type=int, default=limits.max_processes, metavar="N",
                       help=f"processes and threads of the kernel (default {limits.max_processes})")
    grade.add_argument("--tmp-mb", type=float, default=limits.tmp_bytes / 2**20, metavar="MB",
                       help=f"size of the kernel's RAM disk /tmp (default {limits.tmp_bytes / 2**20:g} MB)")
    grade.add_argument("--max-file-mb", type=float, default=limits.max_file_bytes / 2**20, metavar="MB",
                       help=f"largest file the kernel may write (default {limits.max_file_bytes / 2**20:g} MB)")
    grade.add_argument("--max-output-mb", type=float, default=runner.DEFAULT_OUTPUT_MB, metavar="MB",
                       help=f"outputs kept in an executed notebook (default {runner.DEFAULT_OUTPUT_MB:g} MB)")
    grade.add_argument("--wait", type=float, default=0.0, metavar="S",
                       help="wait up to S seconds for another batch on this course to finish (default: stop)")
    grade.add_argument("--track", default=None, help='track to grade, e.g. "7,1" (default: $COURSE_TRACK or 7,1)')
    grade.add_argument("--tracks", nargs="+", default=None, metavar="TRACK",
                       help="grade on several tracks, the course track first, e.g. --tracks 7,1 2,5 "
                            "(hidden tracks: name them only now; a submission passes only on all of them)")
    grade.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="grade N submissions at once on this machine (default 1; each needs a core)")
    grade.add_argument("--scheduler", default=None, metavar="URL",
                       help="grade on a Dask cluster, e.g. tcp://HOST:8786 (workers: `dask worker URL --nthreads 1`)")
    grade.add_argument("--threads-per-kernel", type=int, default=None, metavar="K",
                       help="torch/OpenMP/BLAS threads of each kernel (default: the machine's cores divided by "
                            "the gradings at once on it: --jobs, or a Dask machine's worker threads)")
    grade.add_argument("--db", default=None, metavar="URL",
                       help="results store: a SQLAlchemy URL or a path (default: $AUTOGRADER_DB, else <course>/grades.db)")
    board = commands.add_parser("leaderboard", help="rebuild the leaderboard from the results store")
    board.add_argument("assignment")
    board.add_argument("--course", type=Path, default=Path("."), help="course root (default: .)")
    board.add_argument("--db", default=None, metavar="URL",
                       help="results store: a SQLAlchemy URL or a path (default: $AUTOGRADER_DB, else <course>/grades.db)")
    sec = commands.add_parser("secret", help="manage an assignment's shuffle secret")
    sec.add_argument("action", choices=["rotate"])
    sec.add_argument("assignment")
    sec.add_argument("--course", type=Path, default=Path("."), help="course root (default: .)")
    dryrun.add_command(commands)  # dry-run: a throw-away batch graded and checked (autograder.grading.dryrun)
    event_cli.add_commands(commands)  # serve, event create: live event mode (autograder.event)
    return parser


def _runner(args):
    """None (here, one at a time), a local process pool, or a Dask cluster; raises ValueError/ClusterError."""
    if args.scheduler and args.jobs != 1:
        raise ValueError("give --jobs (this machine) or --scheduler (a Dask cluster), not both; "
                         "on a cluster, start one `dask worker --nthreads 1` per submission to grade at once")
    if args.scheduler:
        from autograder.grading import cluster

        return cluster.DaskRunner(args.scheduler)
    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1 (got {args.jobs}): the number of submissions graded at once "
                         "on this machine, e.g. --jobs 2; each needs a core and a few GB of memory")
    if args.jobs == 1:
        return None
    from autograder.grading import parallel

    return parallel.LocalPool(args.jobs)


def _kernel_threads(args, backend) -> int | None:
    """Each kernel's threads: --threads-per-kernel, else its machine's cores shared by the gradings at once."""
    if args.threads_per_kernel is not None:
        return args.threads_per_kernel
    return threads.share(1) if backend is None else backend.kernel_threads()


def _settings(args, grader: runner.Grader, students: list[str]) -> dict:
    """What makes two `grade` commands the same batch (a batch journal's key)."""
    import hashlib

    return {"assignment": args.assignment, "students": students, "tracks": [list(t) for t in grader.tracks],
            "timeout": grader.timeout, "memory_gb": grader.memory_gb, "limits": vars(grader.limits),
            "max_output_bytes": grader.max_output_bytes, "db": args.db,
            "seeds": hashlib.sha256(repr(grader.spec.seeds).encode()).hexdigest()[:16]}


def _grade(args) -> int:
    course_dir = args.course.resolve()
    if not course_dir.is_dir():
        print(f"autograder: no course folder {course_dir}", file=sys.stderr)
        return 2
    try:  # bad --jobs / --scheduler, or no dask: say so before anything else
        if args.jobs < 1 or (args.scheduler and args.jobs != 1):
            _runner(args)
        threads.check(args.threads_per_kernel)
        if args.scheduler:
            from autograder.grading import cluster

            cluster.require()
    except Exception as exc:  # ValueError, cluster.ClusterError
        print(f"autograder: {exc}", file=sys.stderr)
        return 2
    try:
        lock = locks.CourseLock(layout.Course.open(course_dir).private("grading.lock")).acquire(args.wait)
    except locks.CourseBusy as exc:
        print(f"autograder: {exc}", file=sys.stderr)
        return 3
    with lock:
        limits = sandbox.Limits(max_processes=args.max_processes, tmp_bytes=int(args.tmp_mb * 2**20),
                                max_file_bytes=int(args.max_file_mb * 2**20))
        try:
            grader = runner.Grader(course_dir, args.assignment, track=args.track, timeout=args.timeout,
                                   memory_gb=args.memory, limits=limits, max_output_mb=args.max_output_mb,
                                   tracks=args.tracks, db_url=args.db)
        except (runner.GraderError, ValueError) as exc:
            print(f"autograder: {exc}", file=sys.stderr)
            return 2
        students = grader.students()
        if args.student:
            unknown = sorted(set(args.student) - set(students))
            if unknown:
                print(f"autograder: no submission of {args.assignment} for "
                      f"{', '.join(clean.line(u, 80) for u in unknown)} in {grader.course_dir / 'submitted'}",
                      file=sys.stderr)
                return 2
            students = [s for s in students if s in args.student]
        if not students:
            print(f"autograder: nothing to grade: no folder submitted/*/{args.assignment}/ in "
                  f"{grader.course_dir}", file=sys.stderr)
            return 2
        try:
            backend = _runner(args)
        except Exception as exc:  # ValueError, cluster.ClusterError
            print(f"autograder: {exc}", file=sys.stderr)
            return 2
        grader.kernel_threads = _kernel_threads(args, backend)  # before the batch's spec is made (_settings)
        pending = 0
        try:
            batch = journal.Journal(grader.course.private(journal.NAME), _settings(args, grader, students))
            stored = {r.student: r.graded_at for r in store.load(grader.course_dir, args.assignment, **_db(args))}
            kept = [s for s in students if stored.get(grader.row_id(s)) == batch.done.get(s, "-")]
            todo = [s for s in students if s not in kept]
            if kept:
                print(f"resuming the interrupted batch started {batch.started}: {len(kept)} of {len(students)} "
                      "submissions already graded (kept), grading the other "
                      f"{len(todo)}", file=sys.stderr)
            if len(grader.tracks) > 1 and backend is None and todo:
                try:  # every track's data and baseline before the first time limit starts
                    ready = grader.prepare()
                except Exception as exc:
                    print(f"autograder: cannot prepare the tracks' grading data: {type(exc).__name__}: "
                          f"{clean.first_line(exc)}", file=sys.stderr)
                    return 2
                for name, seconds in ready.items():
                    print(f"track {name}: grading data and baseline ready in {seconds:.0f} s", file=sys.stderr)
            bar = tqdm(total=len(students), initial=len(kept), desc=f"grading {args.assignment}", unit="submission")
            try:
                outcomes = list(_graded(grader, todo, backend, bar, batch))
            except Exception as exc:  # the pool or the cluster broke down: what is saved stays saved
                bar.close()
                print(f"autograder: grading stopped: {type(exc).__name__}: {clean.first_line(exc)}; "
                      f"{len(batch.done)} of {len(students)} submissions are saved. Run the same command again "
                      "to grade the others.", file=sys.stderr)
                return 1
            pending = sum(not o.saved for o in outcomes)
            bar.close()
            if not pending:
                batch.finish()
        finally:
            grader.close()
            if backend is not None and hasattr(backend, "close"):
                backend.close()
        if pending:
            try:
                grader.flush_pending()
            except store.StoreUnavailable:
                print(f"autograder: {pending} row(s) could not be written to the results store "
                      f"(locked); they are kept in {grader.course_dir / store.PENDING} and written by the next "
                      "`autograder grade`.", file=sys.stderr)
                return 1
        return _report(grader.course_dir, args.assignment, args.db)


def _graded(grader: runner.Grader, todo: list[str], backend, bar, batch: journal.Journal):
    """Grade `todo`, one progress bar and one line per submission; record each saved one in the journal."""
    for outcome in grader.grade_all(todo, backend):
        row = outcome.row
        bar.update(1)
        bar.set_postfix_str(clean.line(row.student, 40))
        if outcome.saved:
            batch.record(outcome.student, row.graded_at)  # the folder's own name: cleaned ids may collide
        bar.write(f"{clean.line(row.student, 60)}: {row.status} ({row.runtime:.0f} s) {clean.line(row.detail)}"
                  + ("" if outcome.saved else " [results database locked: row kept as pending]"))
        for part in outcome.track_rows:
            bar.write(f"    track {part.track}: {'passed' if part.passed else part.status} "
                      f"({part.runtime:.0f} s) {clean.line(part.detail, 120)}")
        yield outcome


def _db(args) -> dict:
    """``{"url": ...}`` for the results store when --db was given."""
    return {"url": args.db} if getattr(args, "db", None) else {}


def _report(course_dir: Path, assignment: str, db: str | None = None) -> int:
    url = {"url": db} if db else {}
    if db and "url" not in inspect.signature(leaderboard.build).parameters:
        print("autograder: --db needs the SQLAlchemy results store (store and leaderboard with url=); "
              "this version reads <course>/grades.db only", file=sys.stderr)
        return 2
    rows = store.load(course_dir, assignment, **url)
    if not rows:
        where = db or store.db_path(course_dir)
        print(f"autograder: no graded submissions of {assignment} in {where}; "
              f"run `autograder grade {assignment}` first.", file=sys.stderr)
        return 2
    paths = leaderboard.build(course_dir, assignment, **url)
    graded_on = sorted({row.track for row in rows})
    if len(graded_on) > 1:  # rows of different track sets are not comparable
        print(f"autograder: the rows of {assignment} were graded on different tracks ({'; '.join(graded_on)}); "
              "regrade everyone with the same --tracks before publishing.", file=sys.stderr)
    print(leaderboard.table(leaderboard.rank(rows), per_track=leaderboard.per_track_rows(course_dir, assignment, **url)))
    print("\nleaderboard: " + ", ".join(str(p) for p in paths.values()))
    return 0


def _secret(args) -> int:
    course = layout.Course.open(args.course.resolve())
    path = secret.rotate(course.private(), args.assignment)
    print(f"new secret for {args.assignment} in {path}; regrade every submission of {args.assignment} "
          "so all rows use the same shuffle.")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "grade":
        return _grade(args)
    if args.command == "secret":
        return _secret(args)
    if args.command == "dry-run":
        return dryrun.run(args)
    if args.command in ("serve", "event", "verify"):
        return event_cli.run(args)
    return _report(args.course.resolve(), args.assignment, args.db)


if __name__ == "__main__":
    sys.exit(main())
