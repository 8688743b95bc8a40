"""The instructor-side grader of the hackathon (architecture and trust model: docs/explanation/architecture.md).

- `cli`: the ``autograder`` command, a thin layer over the rooms below; `layout`: the course's folders;
- `sandbox`: the kernel's sandbox and its limits (bubblewrap arguments, the launcher, run folders, link-safe
  file access, threads, the memory limit's row);
- `grading`: grading a batch (`grading.batch`), one submission (`grading.tasks`, `grading.runner`), nbgrader's
  worker, the executors (serial, `parallel`, `cluster`), the annotation service, the judge, tracks, the dry run;
- `results`: the results store, the leaderboard, nbgrader's gradebook merged, inert pages, clean text;
- `event`: the live event server (routers per audience), its store and its commands.
"""

import sys

# jsonschema (imported by nbformat, so by every grading process) imports rfc3987_syntax when it is installed
# (jupyter-events' extra brings it), and that compiles 39 grammars at import: seconds in every process, tens of
# seconds on a busy machine. It only adds the "iri" formats, which no schema of nbformat or nbgrader uses; a None
# entry makes that optional import fail at once. (Only the grader's processes: a participant's kernel never
# imports autograder.)
sys.modules.setdefault("rfc3987_syntax", None)
