"""What every trusted grader imports, imported once by ``course grade``'s fork server (~4 s of CPU saved per notebook).

Only libraries and the trusted ``course`` modules: no student code, no grader file, and nothing that starts
computing (forked children then start their own torch thread pools).
"""

import gc
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # import-time notes (e.g. torch.jit's deprecation) would print once per batch
    import fastai.callback.hook  # noqa: F401
    import fastai.callback.schedule  # noqa: F401
    import fastai.learner  # noqa: F401
    import hypothesis  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import nbformat  # noqa: F401
    import numpy  # noqa: F401
    import pytest  # noqa: F401
    import torch  # noqa: F401
    import torch.fx.experimental.symbolic_shapes  # noqa: F401  (the first backward() imports it and sympy, ~0.5 s)

    import course.dataloaders  # noqa: F401
    import course.grading.submission  # noqa: F401

# Everything imported so far lives as long as the server: out of the collector's reach, the graders' collections
# (pytest's and hypothesis's explicit ones, ~0.25 s each over this heap) look only at what they made themselves,
# and the forked children keep sharing these pages instead of copying them when the collector touches them.
gc.freeze()
