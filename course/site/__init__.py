"""The course site's build-time helpers, imported by ``docs/hooks/site_hooks.py``.

- :mod:`course.site.quiz` — the self-check question bank (``docs/data/quiz.yml``): load, validate, render.
- :mod:`course.site.figures` — the figure registry: inputs, captions, drawing, content-hash cache
  (:mod:`course.site.cache`); the drawings themselves are in :mod:`course.site.diagrams`.
- :mod:`course.site.runs` — reference-run artifacts (``graders/reference/``): their format, loaders,
  ``plot_layer_stats``/``color_dim`` figures and the results table.
- :mod:`course.site.exercises` — exercise pages from the ``solutions/`` notebooks' nbgrader metadata.
- :mod:`course.site.hooks` — the MkDocs event handlers that put it all together.
- :mod:`course.site.build` — build and serve the site from Python (tests, scripts).
"""

__all__: list[str] = []
