"""MkDocs hook: the CLI reference generated from autograder's argparse parsers (skeleton)."""
