"""What grading leaves behind: the results store, the leaderboard, nbgrader's gradebook
merged, and every page or file a human reads made inert (`inert`, `csp`, `clean`,
`spreadsheet`)."""
