"""MkDocs hooks for the course site: the work is done in :mod:`course.site.hooks` (tested there)."""

from course.site.hooks import (
    on_config,
    on_files,
    on_page_content,
    on_page_markdown,
    on_post_build,
    on_template_context,
)

__all__ = ["on_config", "on_files", "on_page_content", "on_page_markdown", "on_post_build", "on_template_context"]
