"""How much disk an install takes, and how much of it is PyTorch's CUDA libraries.

    python -m benchmarks.install_size [--venv .venv] [--label developer] [--out benchmarks/results/install_size]

Measures an existing venv (``du`` of the folder; the CUDA part is the ``nvidia*`` and ``triton``
folders of its site-packages, which a CPU-only course never uses) and records the installed
torch and Python versions. Adds or replaces the row of ``--label`` in
``install_size.json``; the docs render the table from that file.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "results" / "install_size"


def du_bytes(*paths: Path) -> int:
    """Disk usage of `paths` together, in bytes (``du -sbc``)."""
    existing = [str(p) for p in paths if p.exists()]
    if not existing:
        return 0
    done = subprocess.run(["du", "-scb", *existing], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1].split()[0])


def measure(venv: Path) -> dict:
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    cuda = [p for p in site.iterdir() if p.is_dir() and (p.name.startswith("nvidia") or p.name == "triton")]
    versions = subprocess.run([str(python), "-c", "import platform, torch; print(platform.python_version(), "
                               "torch.__version__)"], capture_output=True, text=True, check=True).stdout.split()
    return {"venv_gb": round(du_bytes(venv) / 1e9, 2), "cuda_gb": round(du_bytes(*cuda) / 1e9, 2),
            "torch_gb": round(du_bytes(site / "torch") / 1e9, 2), "python": versions[0], "torch": versions[1]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.install_size", description=__doc__.split("\n\n")[0])
    p.add_argument("--venv", type=Path, default=REPO / ".venv")
    p.add_argument("--label", default="developer", help="the row: participant, instructor, developer, ...")
    p.add_argument("--command", default='pip install -e ".[dev]"', help="the install command the venv was made with")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    row = {"label": args.label, "command": args.command, **measure(args.venv),
           "machine": f"{platform.system()} {platform.machine()}",
           "when": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    path = args.out / "install_size.json"
    rows = [r for r in (json.loads(path.read_text())["rows"] if path.exists() else []) if r["label"] != args.label]
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rows": rows + [row]}, indent=1) + "\n")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
