"""The graders' reading of answer cells (graders/rules.py, graders/recipes.py), without running anything.

Run-time lookups and reaches into the interpreter must be refused wherever they hide; the rules must follow a
library function into every earlier cell that hands it over; the training-cell reader must read what would run.
And every correct answer of the corpus (tests/grading_cases) must pass all of it: a rule is never stricter than
the notebook's words.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import nbformat
import pytest

from course.exercises import EXERCISES
from course.notebooks import nbgrader_meta
from graders.recipes import read_recipe
from graders.rules import ALLOWED_IMPORTS, RULES, tampering, violations, watched_ops
from graders.test_01_kernels import _nested_comprehension_problem
from graders.test_03_first_cnn import _training_problem
from graders.test_06_batchnorm import final_problem

ROOT = Path(__file__).resolve().parents[1]
CONV2D = "def conv2d(x, weight, bias=None, stride=1, padding=0):\n    return _lib(x, weight, bias, stride, padding)\n"

#: ways to reach F.conv2d without writing its name, each found by a red-team review; every one must be refused
LOOKUPS = {
    "pkgutil": "import pkgutil\n_lib = pkgutil.resolve_name('torch.nn.functional:con' + 'v2d')\n",
    "pydoc": "import pydoc\n_lib = pydoc.locate('torch.nn.functional.con' + 'v2d')\n",
    "sys_alias": "import sys as s\n_lib = s.modules['builtins'].eval('F.con' + 'v2d', {'F': F})\n",
    "attrgetter": "from operator import attrgetter as pick\n_lib = pick('con' + 'v2d')(F)\n",
    "operator_module": "import operator\n_lib = operator.attrgetter('con' + 'v2d')(F)\n",
    "vars_of_self": "self = F\n_lib = vars(self)['con' + 'v2d']\n",
    "dict_of_self": "self = F\n_lib = self.__dict__['con' + 'v2d']\n",
    "formatter": "import string\n_lib = string.Formatter().get_field('0.con' + 'v2d', (F,), {})[0]\n",
    "fastcore": "from fastcore.basics import nested_attr\n_lib = nested_attr(F, 'con' + 'v2d')\n",
    "file_import": "import tempfile\nopen(tempfile.mktemp(), 'w')\nfrom helper_mod import lib_op as _lib\n",
    "jit_operation": "_lib = torch._C._jit_get_operation('aten::con' + 'v2d')[0]\n",
    "torchscript": "_cu = torch.jit.CompilationUnit('def op(x, w):\\n    return torch.conv2d(x, w)\\n')\n"
    "_lib = _cu.op\n",
    "timeit": "import timeit\n_ns = {}\ntimeit.timeit('pass', setup='import torch', number=1, globals=_ns)\n",
    "inspect": "from inspect import getmembers\n_lib = dict(getmembers(F))['con' + 'v2d']\n",
    "mock": "from unittest import mock\n_lib = mock._importer('torch.nn.functional.con' + 'v2d')\n",
    "torch_sys": "_lib = torch.sys.modules['torch.nn.functional'].__dict__['con' + 'v2d']\n",
    "module_from_package": "from fastcore.imports import sys\n_lib = sys.modules['torch.nn.functional']\n",
    "star_import": "from fastai.vision.all import *\n_lib = nested_attr(F, 'con' + 'v2d')\n",
    "type_hints": "import typing\ndef f(x: 'F.conv2d'): pass\n_lib = typing.get_type_hints(f, globals())['x']\n",
    "annotations": "def f(x): pass\nf.__annotations__['x'] = 'F.con' + 'v2d'\n",
    "subclasses": "_lib = [c for c in torch.nn.Module.__subclasses__() if 'Conv' in c.__name__][0]\n",
    "relative_import": "from . import helper\n_lib = helper.f\n",
    "course_internals": "import course.data\n_lib = course.grading.worker\n",
}


@pytest.mark.parametrize("name", sorted(LOOKUPS))
def test_run_time_lookups_make_the_task_ungraded(name):
    cells = [("ex2_conv2d", LOOKUPS[name] + CONV2D)]
    assert tampering(cells, "ex2_conv2d"), f"{name} was not refused"


def test_a_lookup_in_an_earlier_cell_makes_every_later_task_ungraded():
    cells = [("ex2_zero_pad", "import inspect\n"), ("ex2_conv2d", "def conv2d(x, w):\n    return x\n")]
    assert tampering(cells, "ex2_conv2d") == [
        "imports inspect; answer cells import only from " + ", ".join(ALLOWED_IMPORTS) + " (line 1 of the answer "
        "cell 'ex2_zero_pad')"
    ]


@pytest.mark.parametrize(
    "earlier, answer",
    [
        ("_fast = F.conv2d\n", "def conv2d(x, w):\n    return _fast(x, w)\n"),
        (
            "def _setup():\n    global _fast\n    _fast = F.conv2d\n_setup()\n",
            "def conv2d(x, w):\n    return _fast(x, w)\n",
        ),
        ("torch.Tensor.slide = lambda x, w: F.conv2d(x, w)\n", "def conv2d(x, w):\n    return x.slide(w)\n"),
        ("(_fast := F.conv2d)\n", "def conv2d(x, w):\n    return _fast(x, w)\n"),
        ("for _fast in [F.conv2d]:\n    pass\n", "def conv2d(x, w):\n    return _fast(x, w)\n"),
    ],
    ids=["assignment", "global_in_a_function", "patched_tensor_method", "walrus", "loop_variable"],
)
def test_rules_follow_a_library_function_through_earlier_cells(earlier, answer):
    found = violations([("ex2_zero_pad", earlier), ("ex2_conv2d", answer)], "ex2_conv2d")
    assert found and "which it uses" in found[0]


@pytest.mark.parametrize("name", ["pad", "ZeroPad2d", "constant_pad_nd", "_ConstantPadNd", "reflection_pad2d"])
def test_every_library_padding_name_is_refused(name):
    cell = f"def zero_pad(x, padding):\n    return torch.nn.{name}(x, padding)\n"
    assert violations([("ex2_zero_pad", cell)], "ex2_zero_pad")


def test_operator_rules_are_watched_at_run_time_too():
    assert watched_ops("ex2_conv2d") and watched_ops("ex2_zero_pad") and watched_ops("ex6_batchnorm")
    assert watched_ops("ex4_layer_stats") == ""  # fastai's callbacks are checked from the text only
    assert set(RULES) >= {"ex1_color_conv", "ex2_conv2d", "ex2_zero_pad", "ex6_batchnorm"}


@pytest.mark.parametrize(
    "tail",
    [
        "map_kernel = _loops\n",
        "map_kernel: object = _loops\n",
        "def _set():\n    global map_kernel\n    map_kernel = _loops\n_set()\n",
    ],
    ids=["assignment", "annotated", "global"],
)
def test_map_kernel_is_read_from_its_last_binding(tail):
    cell = (
        "def map_kernel(image, kernel):\n    return [[apply_kernel(image, r, c, kernel) for c in range(3)] for r in "
        "range(3)]\ndef _loops(image, kernel):\n    return [apply_kernel(image, r, c, kernel) for r in range(3) "
        "for c in range(3)]\n"
    )
    assert _nested_comprehension_problem(cell) is None
    assert "does not make it a function definition" in _nested_comprehension_problem(cell + tail)


TRAIN = "learn = Learner(dls, simple_cnn(), loss_func=F.cross_entropy, metrics=accuracy)\n"


@pytest.mark.parametrize(
    "cell, problem",
    [
        (TRAIN + "lr = 0.01\nlr *= 50\nlearn.fit_one_cycle(2, lr)\n", "lr_max=0.5"),
        (TRAIN + "learn.fit_one_cycle(*[10], 2, 0.01)\n", "n_epoch=10"),
        (TRAIN + "learn.fit_one_cycle(2, 0.01, **opts)\n", "**opts (which cannot be read)"),
        (TRAIN + "learn.fit(1, 0.5)\nif False:\n    learn.fit_one_cycle(2, 0.01)\n", "inside an `if` block"),
        (TRAIN + "train = learn.fit\nlearn.fit_one_cycle(2, 0.01) if False else train(1, 3.0)\n", "somewhere"),
        (TRAIN + "learn.fit(1, 0.5)\nlearn.fit_one_cycle(2, 0.01)\n", "trains 2 times"),
        (TRAIN + "learn.fit_one_cycle(2, 0.01, pct_start=0.99)\n", "pct_start=0.99"),
        (TRAIN.replace("accuracy)", "accuracy, opt_func=SGD)") + "learn.fit_one_cycle(2, 0.01)\n", "opt_func='SGD'"),
        (
            TRAIN.replace("F.cross_entropy", "lambda p, y: F.mse_loss(p, p) or F.cross_entropy") + "learn.fit(1)\n",
            "loss",
        ),
    ],
    ids=["augmented", "starred", "unread_kwargs", "dead_branch", "aliased", "twice", "pct_start", "sgd", "lambda"],
)
def test_the_training_cell_reads_as_what_it_runs(cell, problem):
    found = _training_problem(cell)
    assert found is not None and problem in found, found


def test_a_training_cell_written_out_in_full_reads_as_the_chapter_run():
    cell = (
        "loss = lambda preds, targs: F.cross_entropy(preds, targs)\nlr = 0.001\nlr *= 10\n"
        "learn = Learner(dls, simple_cnn(), loss_func=loss, metrics=[accuracy], opt_func=Adam)\n"
        "with learn.no_bar():\n    learn.fit_one_cycle(**{'n_epoch': 2}, lr_max=lr, moms=(0.95, 0.85, 0.95))\n"
    )
    assert _training_problem(cell) is None
    assert read_recipe(cell).fits[0].arg(("n_epoch",), "n_epoch") == 2


def test_the_final_recipe_needs_its_seed_where_it_runs():
    cell = "if False:\n    set_seed(42, reproducible=True)\nlearn = Learner(mnist_dls(512), simple_cnn_bn())\n"
    assert "inside an `if` block" in final_problem(cell + "learn.fit_one_cycle(5, 0.1)\n")


def _answers(nb_name: str) -> list[tuple[str, str]]:
    nb = nbformat.read(str(ROOT / "solutions" / nb_name / f"{nb_name}.ipynb"), as_version=4)
    return [(nbgrader_meta(c)["grade_id"], c.source) for c in nb.cells if nbgrader_meta(c).get("solution")]


@pytest.mark.parametrize("ex", list(EXERCISES))
def test_correct_answers_written_differently_break_no_rule(ex):
    """Every peer answer of the corpus, in place of the solution's, and every task after it: no rule broken."""
    cells = _answers(EXERCISES[ex])
    ids = [gid for gid, _ in cells]
    found = []
    for task, cases in importlib.import_module(f"tests.grading_cases.{ex}").PEERS.items():
        for case in cases:
            swapped = [(gid, case.source if gid == task else src) for gid, src in cells]
            for later in ids[ids.index(task) :]:
                upto = swapped[: ids.index(later) + 1]
                found += [f"{case.name} -> {later}: {p}" for p in tampering(upto, later) + violations(upto, later)]
    assert not found
