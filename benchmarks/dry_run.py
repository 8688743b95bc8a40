"""The instructor's dry run, timed: what ``autograder dry-run`` prints and how long it takes.

    python -m benchmarks.dry_run [--assignment 03_clustering] [--out benchmarks/results/dry_run]

Runs ``autograder dry-run <assignment>`` in this repository (a throw-away course in a temp
folder), and writes what it printed (the temp folder shown as ``DRY-RUN/``) to ``output.txt`` and
its wall time, exit code and machine to ``meta.json`` in ``--out``. The code-breakfast tutorial
quotes the wall time (docs/hooks/results.py: ``dry_run.*``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "results" / "dry_run"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.dry_run", description=__doc__.split("\n\n")[0])
    p.add_argument("--assignment", default="03_clustering")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dry-run-bench-") as tmp:
        where = Path(tmp) / "run"
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "autograder.cli", "dry-run", args.assignment, "--dir", str(where)],
                              cwd=REPO, capture_output=True, text=True,
                              env={k: v for k, v in os.environ.items() if k != "COLUMNS"})
        seconds = time.perf_counter() - start
    text = done.stdout.replace(str(where.resolve()), "DRY-RUN").replace(str(where), "DRY-RUN")
    text = re.sub(r"dry run took \d+ s", f"dry run took {seconds:.0f} s", text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "output.txt").write_text(text)
    meta = {"assignment": args.assignment, "exit_code": done.returncode, "wall_s": round(seconds, 1),
            "cores": os.cpu_count(), "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average": round(os.getloadavg()[0], 1)}
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(text)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
