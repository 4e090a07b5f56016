"""Hidden graders of the course (never shipped to students)."""
