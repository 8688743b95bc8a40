"""Grading a batch: the runner, one submission's task, nbgrader's worker, the executors
(serial, `parallel`, `cluster`), the annotation service, the judge, secrets, tracks and the
batch's journal and lock."""
