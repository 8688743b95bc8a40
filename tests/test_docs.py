"""The docs site: it builds with ``mkdocs build --strict``, its measured numbers come from the
results files under ``benchmarks/results/`` (rendered by ``docs/hooks/results.py``, never typed
by hand), and no file names a folder of the machine a benchmark ran on.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
RESULTS = REPO / "benchmarks" / "results"
PAGES = sorted(DOCS.rglob("*.md"))


def _hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", DOCS / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    """Every page as the site shows it: placeholders of both hooks filled."""
    results, cli = _hook("results"), _hook("cli")
    return {str(p.relative_to(DOCS)): cli.render(results.render(p.read_text(encoding="utf-8"), str(p)))
            for p in PAGES}


@pytest.mark.slow
def test_the_site_builds_strict(tmp_path):
    """`mkdocs build --strict`: no broken link, no page outside the nav, no unknown placeholder."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.fail('mkdocs is not installed: pip install -e ".[docs]" (part of ".[dev]")')
    done = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()
    assert (tmp_path / "site" / "assets" / "learning_curves.png").exists()


def test_every_placeholder_renders(rendered):
    """No page keeps a `{{ ... }}`: each names a value a results file or the code has."""
    left = {page: re.findall(r"\{\{.*?\}\}", text) for page, text in rendered.items()}
    assert not {p: found for p, found in left.items() if found}


def test_the_command_reference_has_every_command_and_option(rendered):
    """The CLI page is generated from the parsers: every subcommand and every option is on it."""
    cli = _hook("cli")
    page = rendered["reference/cli.md"]
    for words, _, parser in cli.commands(cli.parser()):
        assert f"## `autograder {' '.join(words)}`" in page
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert re.search(r"`[^`\n]*(?<![\w-])" + re.escape(flag) + r"(?![\w-])", page), (words, flag)


def test_the_docs_numbers_match_the_results_files(rendered):
    """Figures the pages show, computed here straight from the results files."""
    # grading throughput: per submission = wall clock / graded, per mode
    throughput = json.loads((RESULTS / "throughput" / "throughput.json").read_text())
    for mode, run in throughput["results"].items():
        per = f"{run['wall_s'] / run['graded']:.1f} s"
        assert per in rendered["how-to/large-course.md"], (mode, per)
    serial = throughput["results"]["serial"]
    workshop = rendered["how-to/workshop.md"]
    assert f"{serial['wall_s'] / serial['graded']:.1f} s per submission" in workshop
    assert f"about\n{30 * serial['wall_s'] / serial['graded'] / 60:.0f} minutes" in workshop
    # event latency: p99 of every participant count of every run
    for path in sorted((RESULTS / "event_load").glob("*.json")):
        for count in json.loads(path.read_text())["counts"]:
            assert f"**{count['p99_ms']} ms**" in rendered["how-to/live-event.md"], (path.name, count["participants"])
    # the full run (results.json): notebook rows graded in exam mode, the median annotations over seeds
    full = json.loads((RESULTS / "results.json").read_text())
    table = rendered["reference/notebooks.md"].split("## Annotations and accuracy, exam mode", 1)[1]
    for track, block in full["tracks"].items():
        for notebook, runs in block.get("reference", {}).items():
            assert {r["mode"] for r in runs} == {"exam"}, (notebook, track)
            median = statistics.median(r["annotations"] for r in runs if r.get("annotations") is not None)
            row = next(line for line in table.splitlines() if line.startswith(f"| `{notebook}` |"))
            assert f"**{median:g}**" in row, (notebook, track, row)
    breakfast = rendered["tutorials/code-breakfast.md"]
    runs = full["tracks"]["7,1"]["reference"]
    for notebook, words in (("02_baseline", "its reference solution needs {} annotations"),
                            ("03_clustering", "its reference solution needs on 7,1: {})")):
        median = statistics.median(r["annotations"] for r in runs[notebook] if r.get("annotations") is not None)
        assert words.format(f"{median:g}") in breakfast, notebook
    # the peers' label-free stops: per track and peer the median annotations and accuracy at the stop
    benchmarks = rendered["explanation/benchmarks.md"]
    for track, block in full["tracks"].items():
        section = benchmarks.split(f"**Track {track}**", 1)[1].split("**Track", 1)[0]
        for method, stops in block["stops"].items():
            ann = statistics.median(s["annotations"] for s in stops.values())
            acc = statistics.median(s["accuracy"] for s in stops.values())
            row = next(line for line in section.splitlines() if line.startswith(f"| {method} |"))
            assert f"| {ann:g} (" in row and f"| {100 * acc:.1f} (" in row, (track, method, row)
        assert "limit reference" in section, track
    assert not list(RESULTS.glob("exam-mode*")), "the notebook rows live in results.json; exam-mode*/ is superseded"
    # the track-difficulty table and the install size
    tracks = json.loads((RESULTS / "tracks" / "results.json").read_text())
    for track, block in tracks["tracks"].items():
        for notebook, run in block["notebooks"].items():
            assert f"{run['annotations']} / {100 * run['accuracy']:.1f}" in rendered["how-to/competition.md"]
    for row in json.loads((RESULTS / "install_size" / "install_size.json").read_text())["rows"]:
        assert f"{row['venv_gb']:.1f} GB" in rendered["how-to/cpu-only-install.md"]


# A measured figure typed into a page: a number with a unit of time, size, speed-up or count.
MEASURE = re.compile(r"(?<![\w.\-/`<])(\d[\d,]*(?:\.\d+)?)\s?(ms|s|sec|seconds|min|minutes|hours|GB|MB|KB|kB|MiB|GiB|"
                     r"x|%|annotations?)(?![\w])")
# rules, not measurements: the 90% target, the 99% mark, the notebooks' stopping rules, and the
# zero or one annotation of the attacks the trust model describes
RULES = {("90", "%"), ("99", "%"), ("96", "%"), ("0.5", "%"), ("0", "annotations"), ("0", "annotation"),
         ("1", "annotation")}
# what an attack did in a test, told as its story (not a benchmark's measurement): page -> figures
ATTACK_STORIES = {"docs/reference/limits.md": {"192 MB"}}
# published figures of others, written next to their citation (not ours to measure): page -> figures
CITED = {"docs/explanation/benchmarks.md": {"99.2 %"}}  # IIC, Ji et al. 2019, all ten MNIST digits


def _prose(text: str) -> str:
    """`text` without code blocks, inline code and placeholders (what the hooks render)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"\{\{.*?\}\}", "", text)
    return re.sub(r"`[^`\n]*`", "", text)


@pytest.mark.parametrize("page", [REPO / "README.md", *PAGES], ids=lambda p: str(p.relative_to(REPO)))
def test_no_measured_number_is_typed_by_hand(page):
    """README and docs state measured figures only through `{{ results.* }}` placeholders."""
    told = ATTACK_STORIES.get(str(page.relative_to(REPO)), set()) | CITED.get(str(page.relative_to(REPO)), set())
    typed = [f"{m.group(1)} {m.group(2)}" for m in MEASURE.finditer(_prose(page.read_text(encoding="utf-8")))
             if (m.group(1), m.group(2)) not in RULES and f"{m.group(1)} {m.group(2)}" not in told]
    assert not typed, f"{page.relative_to(REPO)} types measured figures by hand: {typed}; render them from " \
                      "benchmarks/results/ with {{ results.NAME }} (python docs/hooks/results.py lists the names)"


# a folder of the machine a benchmark or a developer ran on
# (spelled in pieces, so that this file does not name such a folder itself)
_MACHINE_FOLDERS = ("work/", "home/\\w", "Users/\\w", "root/\\.", "scratch/", "tmp/pytest-")
MACHINE_PATH = re.compile("(" + "|".join("/" + folder for folder in _MACHINE_FOLDERS) + r"|C:\\\\Users)")


def test_no_path_of_a_machine_appears():
    """README, docs and the results files name no folder of the machine they were made on."""
    files = [REPO / "README.md", *DOCS.rglob("*"), *RESULTS.rglob("*")]
    found = []
    for path in files:
        if not path.is_file() or path.suffix not in (".md", ".json", ".csv", ".txt", ".yml", ".py"):
            continue
        for match in MACHINE_PATH.finditer(path.read_text(encoding="utf-8", errors="replace")):
            found.append(f"{path.relative_to(REPO)}: {match.group(0)}")
    assert not found, found


def test_the_readme_is_a_landing_page():
    """Short, with the install and test commands CI runs and the three entry points on its first screen."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    lines = readme.splitlines()
    assert len(lines) <= 250
    assert 'pip install -e ".[dev]"' in readme and "pytest -n 2 --dist loadfile" in readme
    first_screen = "\n".join(lines[:20])
    for entry in ("Participant", "Instructor", "Live event"):
        assert f"(#{entry.lower().replace(' ', '-')})" in first_screen, entry
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install --progress-bar off -e ".[dev]"' in ci and "pytest -n 2 --dist loadfile" in ci
