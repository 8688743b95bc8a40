"""The ``autograder`` command: grade the submissions of an assignment, build its leaderboard.

    autograder grade 03_clustering [--course DIR] [--student ID ...] [--timeout S] [--wait S] [--tracks 7,1 2,5 ...]
    autograder leaderboard 03_clustering [--course DIR]
    autograder secret rotate 03_clustering [--course DIR]
    autograder event create --track 7,1 --assignment 03_clustering [--db PATH_OR_URL]   (live event mode:
    autograder serve [--db PATH_OR_URL] [--host 127.0.0.1] [--port 8000]                see autograder.event)

``grade`` autogrades every ``DIR/submitted/*/<assignment>/`` with nbgrader (one
annotation service, sandboxed kernel and wall-clock limit per submission), stores
one row each in ``DIR/grades.db``, rebuilds ``DIR/leaderboard/<assignment>.*`` and
prints the table. One batch per course at a time: a second ``grade`` says so and
stops (or queues with ``--wait``). ``leaderboard`` only rebuilds the leaderboard
from the store. ``secret rotate`` draws a new shuffle secret for an assignment
(regrade everyone afterwards). ``--tracks 7,1 2,5`` grades every submission once
per track (hidden tracks, `autograder.tracks`): it passes only if it passes on every
track; the baselines and grading data of all tracks are made before the first
submission.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from autograder import clean, layout, leaderboard, locks, runner, sandbox, secret, store
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
                       help=f"address-space limit of the kernel (default {runner.DEFAULT_MEMORY_GB:g} GB)")
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
    board = commands.add_parser("leaderboard", help="rebuild the leaderboard from the results store")
    board.add_argument("assignment")
    board.add_argument("--course", type=Path, default=Path("."), help="course root (default: .)")
    sec = commands.add_parser("secret", help="manage an assignment's shuffle secret")
    sec.add_argument("action", choices=["rotate"])
    sec.add_argument("assignment")
    sec.add_argument("--course", type=Path, default=Path("."), help="course root (default: .)")
    event_cli.add_commands(commands)  # serve, event create: live event mode (autograder.event)
    return parser


def _grade(args) -> int:
    course_dir = args.course.resolve()
    if not course_dir.is_dir():
        print(f"autograder: no course folder {course_dir}", file=sys.stderr)
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
                                   tracks=args.tracks)
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
        pending = 0
        try:
            if len(grader.tracks) > 1:  # every track's data and baseline before the first time limit starts
                try:
                    ready = grader.prepare()
                except Exception as exc:
                    print(f"autograder: cannot prepare the tracks' grading data: {type(exc).__name__}: "
                          f"{clean.first_line(exc)}", file=sys.stderr)
                    return 2
                for name, seconds in ready.items():
                    print(f"track {name}: grading data and baseline ready in {seconds:.0f} s", file=sys.stderr)
            bar = tqdm(students, desc=f"grading {args.assignment}", unit="submission")
            for student in bar:
                bar.set_postfix_str(clean.line(student, 40))
                outcome = grader.grade(student)
                row = outcome.row
                pending += not outcome.saved
                bar.write(f"{clean.line(row.student, 60)}: {row.status} ({row.runtime:.0f} s) {clean.line(row.detail)}"
                          + ("" if outcome.saved else " [results database locked: row kept as pending]"))
                for part in outcome.track_rows:
                    bar.write(f"    track {part.track}: {'passed' if part.passed else part.status} "
                              f"({part.runtime:.0f} s) {clean.line(part.detail, 120)}")
        finally:
            grader.close()
        if pending:
            try:
                store.flush_pending(grader.course_dir)
            except store.StoreUnavailable:
                print(f"autograder: {pending} row(s) could not be written to {store.db_path(grader.course_dir)} "
                      f"(locked); they are kept in {grader.course_dir / store.PENDING} and written by the next "
                      "`autograder grade`.", file=sys.stderr)
                return 1
        return _report(grader.course_dir, args.assignment)


def _report(course_dir: Path, assignment: str) -> int:
    rows = store.load(course_dir, assignment)
    if not rows:
        print(f"autograder: no graded submissions of {assignment} in {store.db_path(course_dir)}; "
              f"run `autograder grade {assignment}` first.", file=sys.stderr)
        return 2
    paths = leaderboard.build(course_dir, assignment)
    graded_on = sorted({row.track for row in rows})
    if len(graded_on) > 1:  # rows of different track sets are not comparable
        print(f"autograder: the rows of {assignment} were graded on different tracks ({'; '.join(graded_on)}); "
              "regrade everyone with the same --tracks before publishing.", file=sys.stderr)
    print(leaderboard.table(leaderboard.rank(rows), per_track=leaderboard.per_track_rows(course_dir, assignment)))
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
    if args.command in ("serve", "event", "verify"):
        return event_cli.run(args)
    return _report(args.course.resolve(), args.assignment)


if __name__ == "__main__":
    sys.exit(main())
