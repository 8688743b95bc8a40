"""Execute one notebook in a fresh kernel and print its wall time and peak memory.

    python -m benchmarks.execute NOTEBOOK.ipynb [--timeout S]

Prints one line ``RESULT {"seconds": ..., "kernel_peak_mb": ..., "errors": ...}``.
Run it as a child process: the kernel is this process's child, so once it is shut
down and reaped, ``RUSAGE_CHILDREN``'s max RSS is the kernel's peak memory. The
notebook runs in a temporary copy of its folder; the original is not modified.
The environment (``COURSE_TRACK``, ``COURSE_SEED``, ``COURSE_CACHE_DIR``, ...)
passes through to the kernel.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_TIMEOUT_S = 900


def execute(path: Path, timeout: int = DEFAULT_TIMEOUT_S) -> dict:
    """Run every cell of `path` (errors allowed) and measure it."""
    import nbformat
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="bench-nb-") as tmp:
        work = Path(tmp) / path.parent.name
        shutil.copytree(path.parent, work)
        nb = nbformat.read(work / path.name, as_version=4)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(work)}})
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    errors = [f"{o.get('ename')}: {o.get('evalue', '')[:120]}" for c in nb.cells
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    return {"seconds": round(seconds, 2),
            "kernel_peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "errors": errors}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.execute", description=__doc__.split("\n\n")[0])
    p.add_argument("notebook", type=Path)
    p.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds per cell")
    args = p.parse_args()
    if not args.notebook.is_file():
        p.error(f"{args.notebook} is not a file; pass the path of a .ipynb notebook.")
    print("RESULT " + json.dumps(execute(args.notebook.resolve(), args.timeout)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
