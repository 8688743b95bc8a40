"""The instructor-side grader of the hackathon (see docs/architecture.md, "The trust model").

- `service`: the annotation service, the only process of a run that holds labels;
- `prepare`: per-run grading data (merged labels, secretly shuffled) and the service's truth;
- `sandbox`: the bubblewrap kernelspec that hides labels and grader files from the kernel;
- `runner`: stage a submission, run nbgrader against a live service, judge the outcome;
- `store`: one row per (student, assignment) in ``grades.db``, ledgers beside it;
- `leaderboard`: CSV, HTML and PNG of an assignment;
- `cli`: the ``autograder`` command (``grade``, ``leaderboard``).
"""
