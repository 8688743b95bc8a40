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

# Notebooks train small models on CPU: give the slowest (cold cache) room to spare.
c.ExecutePreprocessor.timeout = 600
c.Execute.timeout = 600
