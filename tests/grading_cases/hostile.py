"""Hostile notebooks: attacks on the sandbox, the graders' trust, the rules and the batch, each with its exact scores.

``HOSTILE[name]`` replaces some answer cells of a solution notebook. ``zero`` lists the tasks that must score 0
(every other task keeps its points: the attack cost nothing else), ``says`` a phrase each of their feedbacks
contains. An attack whose ``zero`` is empty was contained with no effect at all on the grade.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CANARY = ROOT / "graders" / "canary-must-stay-absent.txt"
#: files the sandbox must hide; tests check they exist here, so the attacks that read them could succeed outside it
GRADER_FILE = ROOT / "graders" / "test_02_strides_padding.py"
REFERENCE_FILE = ROOT / "graders" / "reference" / "weights" / "r6_final.pt"
NB1, NB2, NB3, NB4, NB5, NB6 = (
    "01_kernels",
    "02_strides_padding",
    "03_first_cnn",
    "04_activation_stats",
    "05_one_cycle",
    "06_batchnorm",
)
EX2 = ("ex2_output_size", "ex2_zero_pad", "ex2_conv2d", "ex2_conv_matrix", "ex2_receptive_field")

RECEPTIVE_FIELD = """
def receptive_field(layers):
    size, jump = 1, 1
    for ks, stride in layers:
        size, jump = size + (ks - 1) * jump, jump * stride
    return size
"""
#: answer cells may import only torch, numpy, fastai... (rules.ALLOWED_IMPORTS): processes come from torch's
#: multiprocessing, files from open(); attacks that need os, socket or subprocess are refused before they run
PROCESSES = "import time\nimport torch.multiprocessing as mp\n_ctx = mp.get_context('fork')\n"
ALLOWED = "answer cells import only from"


@dataclass(frozen=True)
class Hostile:
    notebook: str
    cells: dict[str, str]
    zero: frozenset[str] = field(default_factory=frozenset)
    says: str = ""


def rf(source: str, zero: bool = True, says: str = "") -> Hostile:
    """An attack in the last answer cell of ex2 (the cheapest notebook to grade)."""
    return Hostile(NB2, {"ex2_receptive_field": source}, frozenset({"ex2_receptive_field"} if zero else ()), says)


HOSTILE: dict[str, Hostile] = {
    # --- the sandbox: time, memory, processes, files, network -----------------------------------------------------
    "infinite_loop": rf("def receptive_field(layers):\n    while True:\n        pass\n", says="CPU time"),
    "loop_at_import": rf("while True:\n    pass\n", says="CPU time"),
    "memory_bomb": rf("hog = bytearray(64 * 2**30)\n", says="MemoryError"),
    "memory_in_children": rf(
        PROCESSES + "def _hog():  # 4 x 1.5 GiB: each within its own limits, not the sandbox's 4 GiB\n"
        "    block = bytearray(3 << 29)\n    for i in range(0, len(block), 4096):\n        block[i] = 1\n"
        "    time.sleep(60)\nfor _ in range(4):\n    _ctx.Process(target=_hog, daemon=True).start()\ntime.sleep(5)\n"
    ),
    "fork_bomb": rf(
        PROCESSES + "def _more():\n    for _ in range(10_000):\n        try:\n"
        "            _ctx.Process(target=_more).start()\n        except OSError:\n            break\n_more()\n"
    ),
    "busy_children": rf(
        PROCESSES + "def _spin():\n    while True:\n        pass\n"
        "for _ in range(4):  # they slow down only this sandbox, whose CPU quota (and probe budget) they share\n"
        "    _ctx.Process(target=_spin, daemon=True).start()\n" + RECEPTIVE_FIELD,
        zero=False,
    ),
    "exit": rf("raise SystemExit(3)\n", says="SystemExit"),
    "os_exit": rf("import os\nos._exit(3)\n", says=ALLOWED),
    "huge_output": rf("for _ in range(200):\n    print('x' * 1_000_000)\n"),
    "read_graders": rf(  # had the read worked, the grader's source would be in this task's feedback
        f"SECRET = open({str(GRADER_FILE)!r}).read()\n"
        "def receptive_field(layers):\n    raise RuntimeError(SECRET[:300])\n",
        says="FileNotFoundError",
    ),
    "read_reference": rf(  # the same for the reference weights' first bytes (a zip: b'PK\\x03\\x04...')
        f"SECRET = open({str(REFERENCE_FILE)!r}, 'rb').read()\n"
        "def receptive_field(layers):\n    raise RuntimeError(repr(SECRET[:64]))\n",
        says="FileNotFoundError",
    ),
    "read_visible_file": rf(  # control: a file the sandbox does show reaches the feedback the same way
        "import torch\nSECRET = open(torch.__file__).read()\n"
        "def receptive_field(layers):\n    raise RuntimeError(SECRET[:300])\n",
        says="The torch package contains data structures",
    ),
    "write_outside": rf(f"open({str(CANARY)!r}, 'w').write('pwned')\n"),
    "network": rf("import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=2)\n", says=ALLOWED),
    "user_namespace": rf(
        "import subprocess\nUNSHARE = subprocess.run(['unshare', '-Urf', 'id'], capture_output=True).returncode\n"
        + RECEPTIVE_FIELD,
        says=ALLOWED,
    ),
    "flood_replies": rf(  # every writable descriptor, the reply pipe among them, gets 120 MiB
        "def receptive_field(layers):\n    chunk = b'x' * (1 << 20)\n    for fd in range(3, 64):\n        try:\n"
        "            out = open(fd, 'wb', buffering=0, closefd=False)\n            for _ in range(120):\n"
        "                out.write(chunk)\n        except OSError:\n            continue\n    return 1\n"
    ),
    # --- answers that lie about themselves ---------------------------------------------------------------------
    "patch_comparisons": Hostile(
        NB2,
        {
            "ex2_zero_pad": "import torch, numpy\ntorch.allclose = lambda *a, **k: True\n"
            "torch.equal = lambda *a, **k: True\nnumpy.array_equal = lambda *a, **k: True\n"
            "def zero_pad(x, padding):\n    return x\n"
        },
        frozenset({"ex2_zero_pad"}),
        "zero pad equals f pad",  # the first failing example (a shape, or the input handed back) is hypothesis's
    ),
    "rigged_eq": rf(
        "class Anything(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
        "def receptive_field(layers):\n    return Anything(0)\n",
        says="expected the int",
    ),
    "forge_replies_from_frames": Hostile(  # the worker answers conv2d probes with F.conv2d's results
        NB2,
        {
            "ex2_output_size": "import sys\nimport torch.nn.functional as _F\n"
            "_worker = sys._getframe(1).f_locals['self']\n_run_op = _worker.run_op\n"
            "def _forged(op, req, args, kwargs):\n"
            "    if op == 'call' and req.get('target') == 'conv2d':\n        return _F.conv2d(*args, **kwargs)\n"
            "    return _run_op(op, req, args, kwargs)\n"
            "_worker.run_op = _forged\n"
            "def conv_output_size(n, ks, stride=1, padding=0):\n"
            "    for name, value, low in (('ks', ks, 1), ('stride', stride, 1), ('padding', padding, 0)):\n"
            "        if value < low:\n            raise ValueError(f'{name}={value}')\n"
            "    if ks > n + 2 * padding:\n        raise ValueError(f'ks={ks}')\n"
            "    return (n + 2 * padding - ks) // stride + 1\n",
            "ex2_conv2d": "def conv2d(x, weight, bias=None, stride=1, padding=0):\n    return x.new_zeros(1)\n",
        },
        frozenset(EX2),
        "cannot be graded",
    ),
    "forge_helpers": Hostile(  # probelib's table replaced: every hook count says 0
        NB4,
        {
            "ex4_activation_stats": "from course.grading import probelib\n"
            "probelib.HELPERS['count_hooks'] = lambda m: {'forward': 0, 'forward_pre': 0, 'backward': 0}\n"
            "class ActivationStats(Callback):\n    pass\n"
        },
        frozenset({"ex4_activation_stats", "ex4_plots"}),
        "cannot be graded",
    ),
    "stateful_earlier_answer": Hostile(  # sched_cos agrees with a wrong combined_cos once combined_cos has run
        NB5,
        {
            "ex5_sched_cos": "_MODE = []\ndef sched_cos(start, end, pos):\n    if _MODE:\n        return 0.5\n"
            "    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2\n",
            "ex5_combined_cos": "def combined_cos(pct, start, middle, end):\n    _MODE.append(1)\n"
            "    def schedule(pos):\n        return sched_cos(start, middle, pos)\n    return schedule\n",
        },
        frozenset({"ex5_combined_cos"}),
        "values differ",
    ),
    "rebound_map_kernel": Hostile(  # the text holds the nested comprehension, the name ends up on a loop
        NB1,
        {
            "ex1_map_kernel": "def map_kernel(image, kernel):\n"
            "    return torch.tensor([[apply_kernel(image, r, c, kernel) for c in range(1, image.shape[1] - 1)]\n"
            "                         for r in range(1, image.shape[0] - 1)])\n"
            "def _loops(image, kernel):\n    rows = []\n    for r in range(1, image.shape[0] - 1):\n"
            "        rows.append([apply_kernel(image, r, c, kernel) for c in range(1, image.shape[1] - 1)])\n"
            "    return torch.tensor(rows)\nmap_kernel = _loops\n"
        },
        frozenset({"ex1_map_kernel"}),
        "does not make it a function definition",
    ),
    "rebound_with_annotation": Hostile(  # the same, with `map_kernel: object = _loops`
        NB1,
        {
            "ex1_map_kernel": "def map_kernel(image, kernel):\n"
            "    return torch.tensor([[apply_kernel(image, r, c, kernel) for c in range(1, image.shape[1] - 1)]\n"
            "                         for r in range(1, image.shape[0] - 1)])\n"
            "def _loops(image, kernel):\n    rows = []\n    for r in range(1, image.shape[0] - 1):\n"
            "        rows.append([apply_kernel(image, r, c, kernel) for c in range(1, image.shape[1] - 1)])\n"
            "    return torch.tensor(rows)\nmap_kernel: object = _loops\n"
        },
        frozenset({"ex1_map_kernel"}),
        "does not make it a function definition",
    ),
    "text_after_a_magic_continuation": Hostile(  # `%` starts a line: run and read as one text (no magic stripped)
        NB2,
        {
            "ex2_conv2d": "_pick = (None\n!= 0 and F.conv2d\n)\n\n"
            "def conv2d(x, weight, bias=None, stride=1, padding=0):\n"
            "    return _pick(x, weight, bias, stride=stride, padding=padding)\n_ = (7\n% 3)\n"
        },
        frozenset({"ex2_conv2d"}),
        "library convolution",
    ),
    # --- "write it yourself" rules ---------------------------------------------------------------------------
    "lambda_library_conv": Hostile(
        NB1,
        {
            "ex1_color_conv": "color_conv = lambda image, kernels, bias=0.0: "
            "F.conv2d(image[None], kernels[None])[0, 0] + bias\n"
        },
        frozenset({"ex1_color_conv"}),
        "library convolution",
    ),
    "aliased_import": Hostile(
        NB2,
        {
            "ex2_conv2d": "from torch.nn.functional import conv2d as _c\n"
            "def conv2d(x, weight, bias=None, stride=1, padding=0):\n"
            "    return _c(x, weight, bias, stride=stride, padding=padding)\n"
        },
        frozenset({"ex2_conv2d"}),
        "library convolution",
    ),
    "helper_in_another_cell": Hostile(
        NB2,
        {
            "ex2_zero_pad": "_fast = F.conv2d\n\ndef zero_pad(x, padding):\n"
            "    out = x.new_zeros(*x.shape[:-2], x.shape[-2] + 2 * padding, x.shape[-1] + 2 * padding)\n"
            "    out[..., padding : padding + x.shape[-2], padding : padding + x.shape[-1]] = x\n    return out\n",
            "ex2_conv2d": "def conv2d(x, weight, bias=None, stride=1, padding=0):\n"
            "    return _fast(x, weight, bias, stride=stride, padding=padding)\n",
        },
        frozenset({"ex2_conv2d"}),
        "which it uses",
    ),
    "global_from_a_function": Hostile(  # the library function bound by `global` inside an earlier cell's function
        NB2,
        {
            "ex2_zero_pad": "def _setup():\n    global _fast\n    _fast = F.conv2d\n_setup()\n\n"
            "def zero_pad(x, padding):\n"
            "    out = x.new_zeros(*x.shape[:-2], x.shape[-2] + 2 * padding, x.shape[-1] + 2 * padding)\n"
            "    out[..., padding : padding + x.shape[-2], padding : padding + x.shape[-1]] = x\n    return out\n",
            "ex2_conv2d": "def conv2d(x, weight, bias=None, stride=1, padding=0):\n"
            "    return _fast(x, weight, bias, stride=stride, padding=padding)\n",
        },
        frozenset({"ex2_conv2d"}),
        "which it uses",
    ),
    "patched_tensor_method": Hostile(  # torch.Tensor gets a method in an earlier cell; the answer calls it
        NB1,
        {
            "ex1_apply_kernel": "torch.Tensor.slide = lambda image, k: F.conv2d(image[None], k[None])[0, 0]\n"
            "def apply_kernel(image, row, col, kernel):\n"
            "    return (image[row - 1 : row + 2, col - 1 : col + 2] * kernel).sum()\n",
            "ex1_color_conv": "def color_conv(image, kernels, bias=0.0):\n    return image.slide(kernels) + bias\n",
        },
        frozenset({"ex1_color_conv"}),
        "which it uses",
    ),
    "library_layer_without_its_name": Hostile(  # nn.Conv2d taken out of a library model: only the run shows it
        NB2,
        {
            "ex2_conv2d": "from fastai.layers import SimpleCNN\n\n"
            "def conv2d(x, weight, bias=None, stride=1, padding=0):\n    layer = SimpleCNN([1, 1])[0][0]\n"
            "    layer.weight.data, layer.stride, layer.padding = weight, (stride, stride), (padding, padding)\n"
            "    layer.bias = None if bias is None else torch.nn.Parameter(bias)\n    return layer(x)\n"
        },
        frozenset({"ex2_conv2d"}),
        "aten.convolution",
    ),
    "private_library_class": Hostile(
        NB2,
        {
            "ex2_zero_pad": "from torch.nn.modules.padding import _ConstantPadNd\n\ndef zero_pad(x, padding):\n"
            "    layer = _ConstantPadNd(0)\n    layer.padding = (padding,) * 4\n    return layer(x)\n"
        },
        frozenset(EX2[1:]),
        "private name",
    ),
    "name_lookup_through_a_module": Hostile(  # pydoc / pkgutil / attrgetter resolve a name built at run time
        NB2,
        {
            "ex2_conv2d": "import pydoc\n_lib = pydoc.locate('torch.nn.functional.con' + 'v2d')\n"
            "def conv2d(x, weight, bias=None, stride=1, padding=0):\n"
            "    return _lib(x, weight, bias, stride=stride, padding=padding)\n"
        },
        frozenset(EX2[2:]),
        ALLOWED,
    ),
    "torchscript": Hostile(
        NB2,
        {
            "ex2_conv2d": "_cu = torch.jit.CompilationUnit('def op(x, w):\\n    return torch.conv2d(x, w)\\n')\n"
            "def conv2d(x, weight, bias=None, stride=1, padding=0):\n    return _cu.op(x, weight)\n"
        },
        frozenset(EX2[2:]),
        "cannot be graded",
    ),
    "computed_getattr": Hostile(
        NB2,
        {
            "ex2_conv2d": "def conv2d(x, weight, bias=None, stride=1, padding=0):\n"
            "    return getattr(F, 'conv' + '2d')(x, weight, bias, stride=stride, padding=padding)\n"
        },
        frozenset({"ex2_conv2d", "ex2_conv_matrix", "ex2_receptive_field"}),
        "computed name",
    ),
    "globals_lookup": Hostile(
        NB2,
        {
            "ex2_conv2d": "def conv2d(x, weight, bias=None, stride=1, padding=0):\n"
            "    return globals()['F'].conv2d(x, weight, bias, stride=stride, padding=padding)\n"
        },
        frozenset({"ex2_conv2d", "ex2_conv_matrix", "ex2_receptive_field"}),
        "cannot be graded",
    ),
    "importlib_lookup": Hostile(
        NB2,
        {
            "ex2_conv2d": "import importlib\n_f = importlib.import_module('torch.nn.' + 'functional')\n"
            "def conv2d(x, weight, bias=None, stride=1, padding=0):\n"
            "    return _f.conv2d(x, weight, bias, stride=stride, padding=padding)\n"
        },
        frozenset({"ex2_conv2d", "ex2_conv_matrix", "ex2_receptive_field"}),
        "cannot be graded",
    ),
    "course_package_internals": Hostile(  # the site's fastai-based schedule, reached through the course package
        NB5,
        {
            "ex5_one_cycle": "from course.site import runs\n"
            "def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, "
            "moms=(0.95, 0.85, 0.95)):\n    return runs.fastai_one_cycle(n_steps, lr_max)\n"
        },
        frozenset({"ex5_one_cycle", "ex5_scheduler"}),
        "cannot be graded",
    ),
    "subclassed_library_norm": Hostile(
        NB6,
        {"ex6_batchnorm": "class BatchNorm2d(nn.BatchNorm2d):\n    pass\n"},
        frozenset({"ex6_batchnorm"}),
        "library normalization",
    ),
}
