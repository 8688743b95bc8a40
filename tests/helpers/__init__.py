"""Helpers shared by the tests (and the grading benchmark)."""
