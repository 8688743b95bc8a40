"""nbgrader configuration: the repository root is the course root."""

c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.course_id = "dcai-hackathon"
c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"

# Per-cell timeout. The slowest cell is the baseline's training on a cold cache (02/03 call
# models.baseline()): about a minute on an idle 2-core machine, but a cold 02 took 11 min
# while four other jobs shared the cores. Warm, every notebook runs in under a minute.
c.ExecutePreprocessor.timeout = 1200
c.Execute.timeout = 1200

# Feedback pages (nbgrader generate_feedback) carry a Content-Security-Policy that refuses any script
# but the page's own: the second wall behind autograder.results.inert (autograder/results/csp.py).
from autograder.results import csp  # noqa: E402

csp.configure_feedback(c)
