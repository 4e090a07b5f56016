"""nbgrader configuration: the repository root is the course directory.

Sources live in solutions/ (not nbgrader's default source/), releases in exercises/ (not release/).
Run nbgrader commands from the repository root, e.g. `nbgrader generate_assignment 01_kernels --no-db`;
`course release` does this for every assignment and post-processes the result.
"""

c = get_config()  # noqa: F821  (injected by traitlets when nbgrader loads this file)
c.CourseDirectory.course_id = "deep-dive-convolutions"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
