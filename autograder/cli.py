"""The ``autograder`` command: grade the submissions of an assignment, build its leaderboard.

    autograder grade 03_clustering [--course DIR] [--student ID ...] [--timeout S]
    autograder leaderboard 03_clustering [--course DIR]

``grade`` autogrades every ``DIR/submitted/*/<assignment>/`` with nbgrader (one
annotation service, sandboxed kernel and wall-clock limit per submission), stores
one row each in ``DIR/grades.db``, rebuilds ``DIR/leaderboard/<assignment>.*`` and
prints the table. ``leaderboard`` only rebuilds the leaderboard from the store.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from autograder import leaderboard, runner, store


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
    grade.add_argument("--track", default=None, help='track to grade, e.g. "7,1" (default: $COURSE_TRACK or 7,1)')
    board = commands.add_parser("leaderboard", help="rebuild the leaderboard from the results store")
    board.add_argument("assignment")
    board.add_argument("--course", type=Path, default=Path("."), help="course root (default: .)")
    return parser


def _grade(args) -> int:
    try:
        grader = runner.Grader(args.course, args.assignment, track=args.track,
                               timeout=args.timeout, memory_gb=args.memory)
    except (runner.GraderError, ValueError) as exc:
        print(f"autograder: {exc}", file=sys.stderr)
        return 2
    students = grader.students()
    if args.student:
        unknown = sorted(set(args.student) - set(students))
        if unknown:
            print(f"autograder: no submission of {args.assignment} for {', '.join(unknown)} in "
                  f"{grader.course_dir / 'submitted'}", file=sys.stderr)
            return 2
        students = [s for s in students if s in args.student]
    if not students:
        print(f"autograder: nothing to grade: no folder submitted/*/{args.assignment}/ in "
              f"{grader.course_dir}", file=sys.stderr)
        return 2
    bar = tqdm(students, desc=f"grading {args.assignment}", unit="submission")
    try:
        for student in bar:
            bar.set_postfix_str(student)
            outcome = grader.grade(student)
            bar.write(f"{student}: {outcome.row.status} ({outcome.row.runtime:.0f} s) {outcome.row.detail}")
    finally:
        grader.close()
    return _report(grader.course_dir, args.assignment)


def _report(course_dir: Path, assignment: str) -> int:
    rows = store.load(course_dir, assignment)
    if not rows:
        print(f"autograder: no graded submissions of {assignment} in {store.db_path(course_dir)}; "
              f"run `autograder grade {assignment}` first.", file=sys.stderr)
        return 2
    paths = leaderboard.build(course_dir, assignment)
    print(leaderboard.table(leaderboard.rank(rows)))
    print("\nleaderboard: " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "grade":
        return _grade(args)
    return _report(args.course.resolve(), args.assignment)


if __name__ == "__main__":
    sys.exit(main())
