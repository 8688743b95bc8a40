"""Label-efficiency and speed benchmarks (instructor-side, trusted code).

`python -m benchmarks.run` compares the course's reference notebooks, run through
the autograder, with peer query strategies on the same features; the docs site renders
their results files (docs/explanation/benchmarks.md). Nothing in `course` or `autograder` imports this package.
"""
