"""What every trusted grader imports, imported once by ``course grade``'s fork server (~4 s of CPU saved per notebook).

Only libraries and the trusted ``course`` modules: no student code, no grader file, and nothing that starts
computing (forked children then start their own torch thread pools).
"""

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

    import course.dataloaders  # noqa: F401
    import course.grading.submission  # noqa: F401
