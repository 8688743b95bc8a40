"""MkDocs hook: fill {{ results.* }} placeholders from benchmarks/results/ (skeleton)."""
