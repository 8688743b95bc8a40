"""Speed and memory of the `course` library against the targets of its issue.

Prints, each measured in a fresh Python process so that nothing is warm by accident:
- `course.data.load()` with the MNIST files already unpacked (with and without imports),
- the baseline CNN trained from scratch (seconds, public merged test accuracy),
- the baseline loaded from the checkpoint cache,
- peak memory (max RSS) of a notebook-style session: load + train + embed all of C.

Run: python benchmarks/library_speed.py   (needs COURSE_DATA_DIR or data/)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

TARGETS = {"load_s": 3.0, "train_s": 60.0, "accuracy": 0.985, "cache_load_s": 2.0, "peak_gb": 3.0}

PROBE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import torch, torchvision  # the imports a notebook session pays anyway
t1 = time.perf_counter()
from course import data, evaluate, models
out = {}
if sys.argv[1] == "load":
    t2 = time.perf_counter(); data.load(); t3 = time.perf_counter()
    out = {"load_s": t3 - t2, "load_with_imports_s": t3 - t0, "imports_s": t1 - t0}
elif sys.argv[1] == "train":
    ds = data.load()
    t2 = time.perf_counter(); model = models.baseline(retrain=True); t3 = time.perf_counter()
    emb = model.embed(ds.images[ds.c_indices])
    out = {"train_s": t3 - t2, "accuracy": evaluate.merged_accuracy(model.predict),
           "embed_shape": list(emb.shape),
           "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
elif sys.argv[1] == "cache":
    t2 = time.perf_counter(); models.baseline(); t3 = time.perf_counter()
    out = {"cache_load_s": t3 - t2}
print("RESULT " + json.dumps(out))
"""


def run(step: str, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, step], env=env, capture_output=True,
                          text=True, check=True)
    line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    import os

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, COURSE_CACHE_DIR=cache)
        run("load", env)  # first call unpacks the .gz files into the fresh cache
        results = {**run("load", env), **run("train", env), **run("cache", env)}
    print(f"{'measure':<28}{'value':>10}{'target':>10}")
    for key, value in results.items():
        target = TARGETS.get(key)
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        limit = "" if target is None else (f">= {target}" if key == "accuracy" else f"<= {target}")
        print(f"{key:<28}{shown:>10}{limit:>10}")


if __name__ == "__main__":
    main()
