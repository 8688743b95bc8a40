"""The instructor-side grader of the hackathon (architecture and trust model: docs/explanation/architecture.md).

- `cli`: the ``autograder`` command (``grade``, ``leaderboard``, ``secret rotate``); one batch per course (`locks`);
- `runner`: the `Grader`: stage a submission, run nbgrader against a live service, store the judge's row;
- `layout`: the course's folders from nbgrader's `CourseDirectory`; which student ids nbgrader can grade;
- `runfolder`: the typed private folder of one run; stale ones of a killed grader are removed;
- `safefs`: file access for root that never follows a link a participant could plant;
- `sandbox`: the allow-list bubblewrap kernelspec and its `Limits`; `launch`: starts one kernel with them;
- `worker`: nbgrader's long-lived worker and its client (output cap, dies with the grader);
- `service`: the annotation service, the only process of a run that holds labels;
- `prepare`: a batch's grading data (merged labels, shuffled with the assignment's `secret`) and the service's truth;
- `judge`: ledger + executed notebook + nbgrader's outcome -> one row;
- `store`: one row per (student, assignment) in ``grades.db`` (migrations, retries on a locked database), ledgers beside it;
- `leaderboard`: CSV, HTML and PNG of an assignment; `clean`: participant text made safe to store and print.
- `spreadsheet`: the one CSV formula guard (`safe_cell`) of every CSV written; `threads`: each kernel's share of the cores.
"""
