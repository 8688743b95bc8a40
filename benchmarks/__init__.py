"""Label-efficiency and speed benchmarks (instructor-side, trusted code).

`python -m benchmarks.run` compares the course's reference notebooks, run through
the autograder, with peer query strategies on the same features. See README.md,
section "Benchmarks". Nothing in `course` or `autograder` imports this package.
"""
