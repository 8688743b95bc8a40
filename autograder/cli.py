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
again: the saved rows are kept, the others graded (`autograder.grading.batch`, `autograder.grading.journal`).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from autograder import layout, sandbox
from autograder.grading import batch, dryrun, locks, runner, secret
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
                       help="torch/OpenMP/BLAS threads of each kernel (default: $AUTOGRADER_THREADS_PER_KERNEL, "
                            "else the machine's cores divided by the gradings at once on it: --jobs, or a Dask "
                            "machine's worker threads)")
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
    """Each kernel's threads: --threads-per-kernel, else $AUTOGRADER_THREADS_PER_KERNEL, else its machine's cores
    shared by the gradings at once."""
    given = args.threads_per_kernel if args.threads_per_kernel is not None else threads.from_env()
    if given is not None:
        return given
    return threads.share(1) if backend is None else backend.kernel_threads()


def _grade(args) -> int:
    course_dir = args.course.resolve()
    if not course_dir.is_dir():
        print(f"autograder: no course folder {course_dir}", file=sys.stderr)
        return 2
    try:  # bad --jobs / --scheduler, or no dask: say so before anything else
        if args.jobs < 1 or (args.scheduler and args.jobs != 1):
            _runner(args)
        threads.check(args.threads_per_kernel)
        threads.from_env()
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
        grader.kernel_threads = _kernel_threads(args, backend)  # before the batch's spec is made (batch.settings)
        status = batch.run(grader, args.assignment, students, backend, db=args.db)
        if status != batch.OK:
            return status
        return _report(grader.course_dir, args.assignment, args.db)


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
