"""The sandboxed worker (course.grading): probes round-trip, and hostile submissions stay contained.

Every hostile case asserts what actually happened: the error the submission saw, the status the
grader got, and on the host that nothing outside the scratch dir changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import course
from course.grading import Limits, Npy, Opaque, ProtocolError, Ref, Sandbox
from course.grading.cgroup import cgroup_problem
from course.grading.isolation import bwrap_problem
from course.grading.protocol import Budget, decode, encode

REPO = Path(course.__file__).resolve().parents[1]
BWRAP = bwrap_problem() is None
# CI installs bubblewrap (setup.sh --dev): there a sandbox that does not work fails these tests instead of skipping
GROUPS = cgroup_problem() is None
AUTO = "auto"  # tests that hold with or without bwrap; those about bwrap itself ask for it
needs_bwrap = pytest.mark.skipif(not BWRAP and not os.environ.get("CI"), reason=f"bwrap unavailable: {bwrap_problem()}")
# CI runs as root with cgroups it may create: there, sandboxes without a whole-group budget fail these tests
needs_cgroup = pytest.mark.skipif(not GROUPS and not os.environ.get("CI"), reason=f"no cgroup: {cgroup_problem()}")

IMPORTS = (
    "imports",
    "import os, sys, time\nimport numpy as np\nimport torch\nfrom torch import nn\nimport torch.nn.functional as F",
)

GOOD = {
    "ex2_conv2d": '''
        def conv2d(x, weight, bias=None, stride=1, padding=0):
            """Convolution as patches @ weights."""
            N, C_in, H, W = x.shape
            C_out, _, ks, _ = weight.shape
            H_out, W_out = (H + 2 * padding - ks) // stride + 1, (W + 2 * padding - ks) // stride + 1
            cols = F.unfold(x, ks, padding=padding, stride=stride)  # (N, C_in*ks*ks, H_out*W_out)
            out = weight.reshape(C_out, -1) @ cols  # (N, C_out, H_out*W_out)
            if bias is not None:
                out = out + bias.view(1, -1, 1)
            return out.view(N, C_out, H_out, W_out)
    ''',
    "ex2_output_size": """
        def conv_output_size(n, ks, stride=1, padding=0):
            if ks < 1 or n + 2 * padding < ks:
                raise ValueError(f"ks must be between 1 and the padded size, got ks={ks!r}")
            return (n + 2 * padding - ks) // stride + 1
    """,
    "ex1_map_kernel": """
        def apply_kernel(image, row, col, kernel):
            return (image[row - 1 : row + 2, col - 1 : col + 2] * kernel).sum()

        def map_kernel(image, kernel):
            H, W = image.shape
            return torch.stack([torch.stack([apply_kernel(image, i, j, kernel) for j in range(1, W - 1)])
                                for i in range(1, H - 1)])
    """,
    "ex3_flatten": """
        class Flatten(nn.Module):
            def forward(self, x):
                return x.view(x.shape[0], -1)
    """,
    "ex6_batchnorm": """
        class BatchNorm2d(nn.Module):
            def __init__(self, nf, eps=1e-5, momentum=0.1):
                super().__init__()
                self.eps, self.momentum = eps, momentum
                self.weight, self.bias = nn.Parameter(torch.ones(nf)), nn.Parameter(torch.zeros(nf))
                self.register_buffer("running_mean", torch.zeros(nf))
                self.register_buffer("running_var", torch.ones(nf))
                self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

            def forward(self, x):
                if self.training:
                    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
                    n = x.numel() / x.shape[1]
                    with torch.no_grad():
                        self.running_mean.lerp_(mean, self.momentum)
                        self.running_var.lerp_(var * n / (n - 1), self.momentum)
                        self.num_batches_tracked += 1
                else:
                    mean, var = self.running_mean, self.running_var
                x = (x - mean[:, None, None]) / (var[:, None, None] + self.eps).sqrt()
                return x * self.weight[:, None, None] + self.bias[:, None, None]
    """,
    "ex4_plots": """
        import matplotlib.pyplot as plt

        def plot_means(means):
            fig, ax = plt.subplots()
            ax.plot(means)
            ax.set_title("mean")
            return fig

        class HookCount:
            def __init__(self, model):
                self.model, self.handles = model, []
            def __enter__(self):
                self.handles = [m.register_forward_hook(lambda *a: None) for m in self.model.modules()]
                return self
            def __exit__(self, *exc):
                for h in self.handles:
                    h.remove()
    """,
    "printer": "print('hello from a cell')",
}


def cells(**sources: str) -> list[tuple[str, str]]:
    return [IMPORTS] + [(gid, textwrap.dedent(src)) for gid, src in sources.items()]


@pytest.fixture(scope="module")
def good():
    sandbox = Sandbox(Limits(spill_bytes=64 << 10, probe_seconds=30), isolation=AUTO)
    with sandbox.session(cells(**GOOD)) as s:
        yield s


# --- a normal submission ---------------------------------------------------------------------------
def test_cells_run_and_report_isolation(good):
    assert [c.status for c in good.cells] == ["ok"] * (len(GOOD) + 1)
    res = good.result()
    # CI always has bwrap (setup.sh installs it): there only "bwrap" passes; elsewhere the weaker mode says so
    assert res.isolation == ("bwrap" if BWRAP or os.environ.get("CI") else "rlimits-only")
    assert any(e.startswith("cpu time") for e in res.enforced)
    assert "hello from a cell" in res.stdout
    assert good.startup_seconds > 0


@pytest.mark.parametrize(
    "shape, c_out, ks, stride, padding",
    [((2, 3, 9, 9), 4, 3, 1, 0), ((1, 2, 8, 11), 5, 3, 2, 1), ((3, 1, 7, 7), 2, 5, 1, 2), ((8, 3, 64, 64), 4, 3, 2, 1)],
)
def test_conv2d_round_trip_matches_f_conv2d(good, shape, c_out, ks, stride, padding):
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(*shape, generator=g), torch.randn(c_out, shape[1], ks, ks, generator=g), torch.randn(c_out)
    res = good.call("conv2d", x, w, b, stride=stride, padding=padding)  # the last x (393 KiB) goes via an .npy file
    assert res.ok, res.detail
    assert type(res.value) is torch.Tensor and res.value.dtype == torch.float32
    torch.testing.assert_close(res.value, F.conv2d(x, w, b, stride=stride, padding=padding), rtol=1e-4, atol=1e-4)


def test_errors_come_back_as_text_without_host_paths(good):
    res = good.call("conv_output_size", 3, 5)
    assert res.status == "error" and res.raised("ValueError") and not res.raised("TypeError")
    assert "ks=5" in res.error.message
    assert "<cell ex2_output_size>" in res.error.traceback and "raise ValueError" in res.error.traceback
    for host_path in (str(REPO), sys.prefix, sys.base_prefix):
        assert host_path not in res.error.traceback + res.error.message
    assert good.call("conv_output_size", 28, 3, stride=2, padding=1).value == 14
    missing = good.call("not_defined_anywhere", 1)
    assert missing.raised("NameError") and "not_defined_anywhere" in missing.error.message


def test_stateful_module_probes_match_nn_batchnorm(good):
    ref = nn.BatchNorm2d(4)
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(5, 4, 6, 6, generator=g) * 3 + 1 for _ in range(3)]
    bn = good.store("bn", "BatchNorm2d", 4)
    assert bn.ok and bn.value == Ref("$bn", "BatchNorm2d")
    for x in xs:
        out = good.call("$bn", x)
        torch.testing.assert_close(out.value, ref(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(good.get("$bn.running_mean").value, ref.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(good.get("$bn.running_var").value, ref.running_var, rtol=1e-5, atol=1e-6)
    state = good.call("$bn.state_dict").value
    assert set(state) == set(ref.state_dict()) and int(state["num_batches_tracked"]) == 3
    fresh = {k: v * 0 + i for i, (k, v) in enumerate(ref.state_dict().items())}
    assert good.call("$bn.load_state_dict", fresh).ok
    assert good.probe({"op": "call", "target": "$bn.eval", "discard": True}).value is None
    assert good.get("$bn.training").value is False
    ref.load_state_dict(fresh)
    ref.eval()
    torch.testing.assert_close(good.call("$bn", xs[0]).value, ref(xs[0]), rtol=1e-4, atol=1e-5)
    assert good.call("$bn.running_mean.numel").value == 4
    assert good.probe({"op": "set", "target": "$bn.momentum", "value": 0.5}).ok
    assert good.get("$bn.momentum").value == 0.5
    gone = good.get("$nothing_stored.momentum")
    assert gone.raised("LookupError") and "no stored object $nothing_stored" in gone.error.message
    with pytest.raises(ValueError, match="probe op must be one of"):
        good.probe({"op": "names"})  # ops no grader uses are not there for a submission to drive


def test_cells_run_only_when_asked():
    """A grader checks a task right after its own cell: the cells after it have not run yet."""
    srcs = {"first": "def f():\n    return 1", "later": "def f():\n    return 2\nLATER = True"}
    s = Sandbox(isolation=AUTO).session(cells(**srcs))
    try:
        assert [c.grade_id for c in s.start(upto=2)] == ["imports", "first"]
        assert s.call("f").value == 1 and s.get("LATER").raised("NameError")
        s.new_task()
        assert [c.status for c in s.advance(3)] == ["ok", "ok", "ok"]
        assert s.call("f").value == 2 and s.get("LATER").value is True
    finally:
        s.close()


def test_helpers_are_bound_before_the_submission_runs():
    patch = """
        from course.grading import probelib
        probelib.HELPERS["count_hooks"] = lambda m: {"forward": 0, "forward_pre": 0, "backward": 0}
        probelib.count_hooks = probelib.HELPERS["count_hooks"]
        from fastcore.foundation import L
        model = nn.Linear(2, 2)
        model.register_forward_hook(lambda *a: None)
        STATS = L([L([1.0, 2.0]), L([3.0])])
    """
    with Sandbox(isolation=AUTO).session(cells(patch=patch)) as s:
        assert s.helper("count_hooks", Ref("model")).value == {"forward": 1, "forward_pre": 0, "backward": 0}
        assert s.get("STATS").value == [[1.0, 2.0], [3.0]]  # fastcore's L travels as a list


def test_helpers_describe_grads_figures_and_hooks(good):
    assert good.store("fl", "Flatten").ok
    d = good.helper("describe", Ref("$fl")).value
    assert d["type"] == "Flatten" and "Module" in d["mro"] and d["n_parameters"] == 0
    x = torch.randn(3, 2, 4, 5)
    assert good.call("$fl", x).value.shape == (3, 40)

    ref, gout = nn.BatchNorm2d(2), torch.randn(3, 2, 4, 5)
    assert good.store("bn2", "BatchNorm2d", 2).ok
    fb = good.helper("forward_backward", Ref("$bn2"), [x], gout).value
    xr = x.clone().requires_grad_(True)
    ref(xr).backward(gout)
    torch.testing.assert_close(fb["input_grads"][0], xr.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fb["param_grads"]["weight"], ref.weight.grad, rtol=1e-4, atol=1e-5)

    each = good.helper("apply_each", Ref("conv_output_size"), [[28, 3], [5, 7], [28, 3, 2, 1]]).value
    assert each[0] == {"value": 26} and each[1]["error"]["type"] == "ValueError" and each[2] == {"value": 14}

    fig = good.helper("figure_summary", Ref("plot_means"))
    assert fig.raised("TypeError")  # a function is not a figure: the helper says so, nothing crashes
    assert good.store("fig", "plot_means", [1.0, 2.0, 3.0]).ok
    summary = good.helper("figure_summary", Ref("$fig")).value
    assert summary["axes"][0]["title"] == "mean"
    np.testing.assert_array_equal(summary["axes"][0]["lines"][0], [1.0, 2.0, 3.0])

    assert good.probe({"op": "helper", "name": "sequential", "args": [[["Linear", 4, 3], ["ReLU"]]], "store": "m"}).ok
    assert good.store("hc", "HookCount", Ref("$m")).ok
    ctx = good.helper("run_in_context", Ref("$hc"), Ref("$m"), [torch.randn(2, 4)] * 3, raise_at=1).value
    assert ctx == {"raised": True, "batches": 2, "hooks_after": {"forward": 0, "forward_pre": 0, "backward": 0}}


def test_inputs_files_and_no_pickle(good):
    arr = np.arange(12, dtype=np.int64).reshape(3, 4)
    npy = good.put("grid", arr)
    assert npy == Npy("grid.npy", "ndarray")
    res = good.probe({"op": "call", "target": "np.transpose", "args": [npy]})
    assert type(res.value) is np.ndarray and (res.value == arr.T).all()
    np.save(good.inputs / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    refused = good.probe({"op": "call", "target": "len", "args": [Npy("pickled.npy")]})
    assert refused.raised("ValueError") and "allow_pickle" in refused.error.message


def test_protocol_rejects_malformed_values():
    ok = encode(torch.arange(6, dtype=torch.int16).view(2, 3))
    assert decode(json.loads(json.dumps(ok))).tolist() == [[0, 1, 2], [3, 4, 5]]
    bad = [
        {**ok, "dtype": "object"},
        {**ok, "shape": [2, 4]},
        {**ok, "__array__": "!!!" + ok["__array__"][3:]},
        {**ok, "extra": 1},
        {"__npy__": "a.npy"},
        {"__ref__": "os.system; rm", "type": ""},
        {"__tuple__": [1], "__object__": "x"},
        {"__dict__": [[[1, 2], 3]]},
        json.loads("[" * 40 + "]" * 40),
    ]
    for value in bad:
        with pytest.raises(ProtocolError):
            decode(value)
    with pytest.raises(ProtocolError, match="too large"):
        decode(encode(np.zeros(1000)), Budget(array_bytes=4000))
    with pytest.raises(TypeError):
        encode(object())
    assert decode({"__object__": "Rigged"}) != Opaque("Other") and decode({"__object__": "R"}) == Opaque("R")


# --- hostile submissions ---------------------------------------------------------------------------
HOSTILE = {
    "patch": """
        torch.allclose = torch.equal = np.allclose = np.array_equal = lambda *a, **k: True
        torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)

        def conv2d(x, weight, bias=None, stride=1, padding=0):
            return torch.zeros(1)
    """,
    "rigged": """
        class Rigged:
            def __eq__(self, other):
                return True
            __hash__ = object.__hash__

        class EvilTensor(torch.Tensor):
            def __eq__(self, other):
                return True
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                return torch.ones(3)

        class EvilArray(np.ndarray):
            def __eq__(self, other):
                return np.ones(self.shape, bool)

        class EvilFloat(float):
            def __eq__(self, other):
                return True
            __hash__ = float.__hash__

        class EvilInt(int):
            def __int__(self):
                return 42
            __index__ = __int__

        class EvilTuple(tuple):
            def __len__(self):
                return 99
            def __iter__(self):
                return iter(range(99))

        class FakeTensor:
            @property
            def __class__(self):
                return torch.Tensor

        cyclic = []
        cyclic.append(cyclic)
        RESULTS = {
            "rigged": Rigged(), "tensor": torch.zeros(3).as_subclass(EvilTensor), "array": np.zeros(3).view(EvilArray),
            "float": EvilFloat(0.5), "int": EvilInt(7), "tuple": EvilTuple((1, 2)), "fake": FakeTensor(),
            "tagged": {"__array__": "AAAA", "dtype": "float32", "shape": [1]}, "cyclic": cyclic,
        }
        def result(name):
            return RESULTS[name]
    """,
    "env": """
        ENV = dict(os.environ)
        WHO = (os.getuid(), open("/proc/self/status").read().split("CapEff:")[1].split()[0])
    """,
    "mem_huge": "x = bytearray(20 * 2**30)",
    "mem_tensors": "keep = [torch.empty(2**28) for _ in range(64)]  # 64 GiB, untouched",
    "spam": "print('y' * 5_000_000)\nfor _ in range(20_000): sys.stderr.write('z' * 100)",
    "fsize": "open('big.bin', 'wb').write(b'x' * (65 << 20))",
    "fine": "def double(x):\n    return x * 2",
    "replies": """
        import json
        import fcntl, stat

        def _reply_fd():  # /proc/self/fd is closed to the worker: try the descriptors one by one
            for fd in range(3, 256):
                try:
                    st = os.fstat(fd)
                except OSError:
                    continue
                if stat.S_ISFIFO(st.st_mode) and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
                    return fd

        def _request():
            f = sys._getframe()
            while "req" not in f.f_locals or not isinstance(f.f_locals["req"], dict):
                f = f.f_back
            return f.f_locals["req"]

        def stray():
            os.write(_reply_fd(), b'garbage\\n{"id": "m1", "status": "ok"}\\n')
            return 1

        def partial():
            os.write(_reply_fd(), b'{"partial')
            return 2

        def forge(value):
            req = _request()
            line = {"id": req["id"], "nonce": req["nonce"], "status": "ok", "value": value}
            os.write(_reply_fd(), json.dumps(line).encode() + b"\\n")
            return 3

        def flood():
            os.write(_reply_fd(), b"x" * (3 << 20))
            return 4

        def big():
            return torch.zeros(1_000_000)
    """,
}


@pytest.fixture(scope="module")
def hostile():
    os.environ["COURSE_SANDBOX_CANARY"] = "host secret"
    try:
        sandbox = Sandbox(Limits(output_bytes=4096, cell_seconds=20, reply_bytes=1 << 20), isolation=AUTO)
        with sandbox.session(cells(**HOSTILE)) as s:
            yield s
    finally:
        os.environ.pop("COURSE_SANDBOX_CANARY")


def test_monkeypatching_stays_inside_the_worker(hostile):
    x, w = torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3)
    inside = hostile.call("torch.allclose", torch.zeros(2), torch.ones(2))
    assert inside.value is True  # the patch is real in the worker...
    got = hostile.call("conv2d", x, w).value
    assert type(got) is torch.Tensor
    assert got.shape != (1, 1, 3, 3)  # ...but the trusted side compares data with its own functions
    assert torch.allclose(torch.zeros(2), torch.ones(2)) is False and not np.array_equal([0], [1])


def test_rigged_objects_arrive_as_plain_data_or_type_names(hostile):
    def res(name):
        r = hostile.call("result", name)
        return r.value if r.ok else r

    assert res("rigged") == Opaque("Rigged") and res("rigged") != 1
    t = res("tensor")
    assert type(t) is torch.Tensor and t.tolist() == [0.0, 0.0, 0.0]
    a = res("array")
    assert type(a) is np.ndarray and not (a == 1).any()
    f, i, tup = res("float"), res("int"), res("tuple")
    assert (type(f), f, type(i), i, type(tup), tup) == (float, 0.5, int, 7, tuple, (1, 2))
    assert res("fake") == Opaque("FakeTensor")
    assert res("tagged") == {"__array__": "AAAA", "dtype": "float32", "shape": [1]}  # a dict, not an array
    cyc = res("cyclic")
    assert cyc.status == "invalid" and "deeper" in cyc.detail


def test_environment_is_scrubbed_and_root_is_dropped(hostile):
    env = hostile.get("ENV").value
    assert "COURSE_SANDBOX_CANARY" not in env and "COURSE_DATA" not in env and "COURSE_SANDBOX_CONFIG" not in env
    assert set(env) <= {*Sandbox(isolation=AUTO).environment("", "", ""), "PWD"}
    uid, cap_eff = hostile.get("WHO").value
    if BWRAP:
        assert uid != 0 and int(cap_eff, 16) == 0


def test_memory_bombs_fail_fast_and_the_worker_survives(hostile):
    res = hostile.result()
    huge, many = res.cell("mem_huge"), res.cell("mem_tensors")
    assert huge.status == "error" and huge.error.is_a("MemoryError") and "memory limit" in huge.detail
    assert many.status == "error" and "allocate" in many.error.message and many.seconds < 5
    fsize = res.cell("fsize")
    assert fsize.status == "error" and fsize.error.is_a("OSError") and "File too large" in fsize.error.message
    assert hostile.call("double", 21).value == 42


def test_output_is_capped(hostile):
    res = hostile.result()
    assert res.output_truncated
    assert res.stdout.startswith("y" * 4000) and "more bytes not kept" in res.stdout
    assert res.stdout == "y" * 4096 + "\n[... 4,995,905 more bytes not kept]"
    assert res.stderr.count("z") <= 4096 and "more bytes not kept" in res.stderr


DATA = Path(os.environ.get("COURSE_DATA", REPO.parent / "shared" / "data"))
COURSE_INIT = REPO / "course" / "__init__.py"


@pytest.fixture(scope="module")
def escapes(tmp_path_factory):
    """One bwrap run of every escape attempt: hidden paths, writes outside scratch, network."""
    canary = tmp_path_factory.mktemp("canary") / "canary.txt"
    canary.write_text("unchanged")
    before = hashlib.sha256(COURSE_INIT.read_bytes()).hexdigest()
    assert (REPO / "pyproject.toml").exists() and (REPO / "solutions").is_dir() and DATA.is_dir()
    attempts = {
        "read_repo": f"open({str(REPO / 'pyproject.toml')!r}).read()",
        "list_solutions": f"os.listdir({str(REPO / 'solutions')!r})",
        "list_graders": f"os.listdir({str(REPO / 'graders')!r})",
        "list_data": f"os.listdir({str(DATA)!r})",
        "read_course_src": f"open({str(COURSE_INIT)!r}).read()",
        "write_canary": f"open({str(canary)!r}, 'w').write('changed')",
        "write_repo": f"open({str(REPO / 'sandbox_canary.txt')!r}, 'w').write('x')",
        "write_course": "open('/sandbox/lib/course/__init__.py', 'a').write('x')",
        "write_venv": "open(os.path.join(sys.prefix, 'sandbox_canary.txt'), 'w').write('x')",
        "write_inputs": "open('/sandbox/inputs/new.npy', 'w').write('x')",
        "write_scratch": "open('scratch_file.txt', 'w').write('ok')\nSCRATCH = os.path.abspath('scratch_file.txt')",
    }
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        attempts["net_host"] = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)"
        attempts["net_outside"] = "import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=3)"
        attempts["net_dns"] = "import socket\nsocket.getaddrinfo('pypi.org', 443)"
        res = Sandbox(isolation="bwrap").run(cells(**attempts), [{"id": "where", "op": "get", "target": "SCRATCH"}])
        server.setblocking(False)
        try:
            server.accept()[0].close()
            reached = True
        except BlockingIOError:
            reached = False
    return res, canary, before, reached


@needs_bwrap
def test_hidden_paths_are_invisible_and_writes_outside_scratch_fail(escapes):
    res, canary, before, _ = escapes
    for cell in res.cells[1:]:
        if cell.grade_id != "write_scratch":
            assert cell.status == "error" and cell.error.is_a("OSError"), cell
    assert res.cell("list_solutions").error.is_a("FileNotFoundError")
    assert res.cell("list_data").error.is_a("FileNotFoundError")
    where = res["where"].value  # the scratch folder, or a forked worker's own folder in it
    assert res.cell("write_scratch").ok and re.fullmatch(r"/sandbox/scratch(/w\d+-[0-9a-f]+)?/scratch_file\.txt", where)
    assert canary.read_text() == "unchanged"
    assert not (REPO / "sandbox_canary.txt").exists() and not Path(sys.prefix, "sandbox_canary.txt").exists()
    assert hashlib.sha256(COURSE_INIT.read_bytes()).hexdigest() == before
    assert not Path("/sandbox").exists()


@needs_bwrap
def test_network_is_unreachable(escapes):
    res, _, _, reached = escapes
    assert not reached  # no connection ever got to the host's listening socket
    assert res.cell("net_host").error.is_a("ConnectionRefusedError")  # its own empty loopback
    assert res.cell("net_outside").error.is_a("OSError") and res.cell("net_dns").error.is_a("OSError")


@needs_bwrap
def test_processes_a_cell_leaves_behind_are_stopped_when_it_ends():
    orphan = """
        if os.fork() == 0:  # a double fork: the grandchild is orphaned, and adopted by the worker (subreaper)
            if os.fork() == 0:
                time.sleep(120)
            os._exit(0)
        os.wait()
        left = len([p for p in os.listdir("/proc") if p.isdigit()])
    """
    with Sandbox(Limits(), isolation="bwrap").session(cells(orphan=orphan)) as s:
        base = 2 + s.launched  # bwrap's init and the worker (and the launcher that forked it)
        assert s.get("left").value == base + 1  # while the cell ran: and the grandchild
        assert _processes_in(s.worker_info["pidns"]) == base  # after it: the grandchild was killed


@needs_bwrap
def test_fork_bomb_is_capped_and_fully_killed():
    bomb = """
        kids, err = 0, None
        for _ in range(5000):
            try:
                if os.fork() == 0:
                    time.sleep(120)
                    os._exit(0)
                kids += 1
            except OSError as e:
                err = type(e).__name__
                break
    """
    sandbox = Sandbox(Limits(processes=32), isolation="bwrap")
    with sandbox.session(cells(bomb=bomb)) as s:
        kids, err = s.get("kids").value, s.get("err").value
        ns = s.worker_info["pidns"]
        during = _processes_in(ns)
    sandbox.close()
    after = _processes_in(ns)
    assert err == "BlockingIOError" and 20 <= kids <= 32
    # the cell's children died when it ended: bwrap's init and the worker remain (and the launcher that forked it)
    assert during <= 2 + s.launched and after == 0


@needs_bwrap
@needs_cgroup
def test_workers_forked_in_one_sandbox_keep_their_own_uid_cgroup_and_folders():
    sandbox = Sandbox(Limits(), isolation="bwrap", preload=("torch.nn.functional",))
    keep = "HOME, UID = os.environ['HOME'], os.getuid()\nopen('mine.txt', 'w').write('secret')"
    with sandbox.session(cells(keep=keep)) as a:
        home = a.get("HOME").value
        peek = f"try:\n    SEEN = open({home!r} + '/mine.txt').read()\nexcept OSError as e:\n    SEEN = e.strerror"
        with sandbox.session(cells(peek=peek)) as b:
            assert a.launched == b.launched == (os.geteuid() == 0)  # CI and the graders run as root
            if not a.launched:
                pytest.skip("workers are forked only when grading as root")
            assert a.worker_info["pidns"] == b.worker_info["pidns"]  # one sandbox
            assert a.get("UID").value != os.getuid() != b.call("os.getuid").value != a.get("UID").value
            assert a.group.dirs != b.group.dirs
            assert b.get("SEEN").value == "Permission denied"  # another worker's folder is closed to it
            a.restart()  # a new worker for a (its first one's folders go with it); b's goes on
            assert b.call("os.path.exists", home).value is False and b.restarts == 0
            assert a.get("HOME").value != home
    sandbox.close()


def _processes_in(pidns: str) -> int:
    n = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/{pid}/ns/pid") == pidns
    return n


def test_timeouts_kill_and_restart_the_worker():
    sandbox = Sandbox(Limits(cell_seconds=1, probe_seconds=1), isolation=AUTO)
    srcs = {"loop": "while True:\n    pass", "after": "def f():\n    return 1\ndef spin():\n    while True: pass"}
    with sandbox.session(cells(**srcs)) as s:
        imports, loop, after = s.cells
        assert imports.ok and after.ok and s.restarts == 1
        assert loop.status == "timeout" and loop.detail == "timeout after 1 s of CPU time"
        assert s.call("f").value == 1
        spun = s.call("spin")
        assert spun.status == "timeout" and spun.detail == "timeout after 1 s of CPU time" and 0.9 < spun.seconds < 3
        later = s.call("f")
        assert later.status == "skipped" and "timeout after 1 s of CPU time in probe" in later.detail


def test_a_worker_out_of_restarts_reports_what_stopped_it():
    sandbox = Sandbox(Limits(probe_seconds=1, max_restarts=1), isolation=AUTO)
    with sandbox.session(cells(spin="def spin():\n    while True: pass\ndef f():\n    return 1")) as s:
        assert s.call("spin").status == "timeout"
        assert s.restart() and s.call("f").value == 1  # the one restart
        assert s.call("spin").status == "timeout"
        assert not s.restart()
        skipped = s.call("f")
        assert skipped.status == "skipped" and "timeout after 1 s of CPU time in probe" in skipped.detail
        assert "no restart is left" in skipped.detail and "restarted by the grader" not in skipped.detail


def test_crashes_are_reported_with_their_cause():
    sandbox = Sandbox(Limits(probe_seconds=10), isolation=AUTO)
    with sandbox.session(cells(crash="import ctypes\ndef segfault():\n    return ctypes.string_at(0)")) as s:
        exited = s.call("os._exit", 3)
        assert exited.status == "crashed" and exited.detail == "worker exited with code 3"
        assert s.call("len", [1]).status == "skipped"
        assert s.restart()
        seg = s.call("segfault")
        assert seg.status == "crashed" and "SIGSEGV" in seg.detail


def test_cpu_limit():
    sandbox = Sandbox(Limits(cpu_seconds=1, cell_seconds=30, max_restarts=0), isolation=AUTO)
    res = sandbox.run(cells(burn="while True:\n    pass", after="X = 1"), [{"id": "x", "op": "get", "target": "X"}])
    assert res.cell("burn").status == "crashed" and res.cell("burn").detail == "CPU time limit (1 s)"
    assert res.cell("burn").seconds < 10
    assert res.cell("after").status == "skipped" and "no restart is left" in res.cell("after").detail
    assert res["x"].status == "skipped"


def test_broken_replies_fail_only_their_probe(hostile):
    assert hostile.call("stray").value == 1
    bad = hostile.call("partial")
    assert bad.status == "invalid" and "not valid protocol" in bad.detail
    assert hostile.call("stray").value == 1
    lying = hostile.call("forge", {"__array__": "AAAA", "dtype": "float32", "shape": [1000], "kind": "tensor"})
    assert lying.status == "invalid" and "does not match" in lying.detail
    assert hostile.call("forge", {"__npy__": "x.npy"}).status == "invalid"
    assert hostile.call("forge", {"__object__": "x", "more": 1}).status == "invalid"
    flooded = hostile.call("flood")
    assert flooded.status == "invalid" and "larger than 1 MiB" in flooded.detail
    too_big = hostile.call("big")
    assert too_big.status == "invalid" and "cannot be sent" in too_big.detail
    assert hostile.call("stray").value == 1 and hostile.alive


def test_without_bwrap_limits_still_hold_and_the_report_says_so():
    sandbox = Sandbox(Limits(probe_seconds=1, output_bytes=1000), isolation="rlimits")
    srcs = {"mem": "x = bytearray(20 * 2**30)", "spam": "print('y' * 100_000)"}
    res = sandbox.run(cells(**srcs), [{"id": "spin", "op": "call", "target": "time.sleep", "args": [30]}])
    assert res.isolation == "rlimits-only"
    assert any("network: not blocked" in w for w in res.weaker) and any("exposed" in w for w in res.weaker)
    assert [c.status for c in res.cells] == ["ok", "error", "ok"]
    # a sleeping worker uses no CPU: the wall-clock backstop (2 x 1 s + 5 s) stops it
    assert res["spin"].status == "timeout" and res["spin"].detail == "timeout after 7 s" and res["spin"].seconds < 9
    assert res.cell("mem").error.is_a("MemoryError") and res.output_truncated and len(res.stdout) < 1100


def test_a_worker_that_cannot_start_fails_every_task_with_the_reason():
    sandbox = Sandbox(Limits(startup_seconds=0.05), isolation=AUTO)
    res = sandbox.run(cells(x="X = 1"), [{"id": "x", "op": "get", "target": "X"}])
    assert [c.status for c in res.cells] == ["skipped", "skipped"] and res["x"].status == "skipped"
    assert "worker did not start: timeout after 0.05 s" in res.cells[0].detail


@pytest.mark.slow
def test_run_time_limit_stops_the_rest():
    sandbox = Sandbox(Limits(run_seconds=10, probe_seconds=8), isolation=AUTO)
    probes = [{"id": f"s{i}", "op": "call", "target": "time.sleep", "args": [3]} for i in range(5)]
    res = sandbox.run(cells(), probes)
    statuses = [res[f"s{i}"].status for i in range(5)]
    assert statuses[0] == "ok" and "timeout" in statuses and statuses[-1] == "skipped"
    stopped = next(res[f"s{i}"] for i in range(5) if statuses[i] == "timeout")
    assert stopped.detail == "run time limit (10 s) reached" and res.seconds < 14


@pytest.mark.slow
def test_fit_helper_trains_the_submissions_model_without_test_labels():
    from course.data import load_mnist_sample

    data = load_mnist_sample()
    (xt, yt), (xv, yv) = data.tensors("train"), data.tensors("valid")
    pick = torch.randperm(len(yt), generator=torch.Generator().manual_seed(0))[:3000]
    xt, yt = xt[pick], yt[pick]
    net = """
        def make_net():
            return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(16, 2, 7), Flatten())
    """
    with Sandbox(isolation=AUTO).session(cells(ex3_flatten=GOOD["ex3_flatten"], net=net)) as s:
        x_train, y_train, x_test = s.put("x_train", xt), s.put("y_train", yt), s.put("x_test", xv)
        res = s.probe(
            {
                "op": "helper",
                "name": "fit",
                "args": [Ref("make_net"), x_train, y_train, x_test],
                "kwargs": {"epochs": 1, "lr": 0.01, "bs": 64},
                "timeout": 120,
            }
        )
    assert res.ok, res.detail
    logits = res.value["logits"]
    assert logits.shape == (len(yv), 2) and len(res.value["lrs"]) == 3000 // 64
    assert max(res.value["lrs"]) == pytest.approx(0.01, rel=0.05)
    assert (logits.argmax(1) == yv).float().mean() > 0.9


# --- limits for the whole sandbox, and no way around them ------------------------------------------------------------
WHOLE = """
    import ctypes, errno, os, subprocess, time
    libc = ctypes.CDLL(None, use_errno=True)

    def refused(rc):
        return rc == -1 and ctypes.get_errno() == errno.EPERM

    USERNS = refused(libc.unshare(0x10000000))  # CLONE_NEWUSER
    USERNS_TOOL = subprocess.run(["unshare", "-U", "true"], capture_output=True).returncode
    SYSV_SHM = refused(libc.shmget(0, 1 << 20, 0o1000 | 0o600))  # IPC_PRIVATE, IPC_CREAT
    MEMFD = refused(libc.memfd_create(b"x", 0))
    DUMPABLE = refused(libc.prctl(4, 1, 0, 0, 0))  # PR_SET_DUMPABLE back on
    try:
        open("/proc/self/mem", "rb").close()
        PROC_MEM = "opened"
    except OSError as e:
        PROC_MEM = type(e).__name__
    try:
        for i in range(5):  # 5 files of 20 MiB: each under the file-size limit, together over /dev/shm's 64 MiB
            with open(f"/dev/shm/big{i}", "wb") as f:
                f.write(b"x" * (20 << 20))
        DEV_SHM = "written"
    except OSError as e:
        DEV_SHM = errno.errorcode.get(e.errno, str(e.errno))

    def children(n, mb):
        pids, ready = [], []
        for _ in range(n):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    block = bytearray(mb << 20)
                    for i in range(0, len(block), 4096):
                        block[i] = 1
                    os.write(w, b"1")  # all its memory is in use now
                    time.sleep(60)
                finally:
                    os._exit(0)
            os.close(w)
            pids.append(pid)
            ready.append(r)
        for r in ready:  # each child says it holds its memory, or dies trying (then the read sees the pipe's end)
            os.read(r, 1)
        time.sleep(1)
        return [os.waitpid(p, os.WNOHANG)[0] == 0 for p in pids]
"""


@needs_bwrap
@needs_cgroup
def test_the_whole_sandbox_shares_one_memory_budget_and_no_namespace_escapes():
    with Sandbox(Limits(memory_bytes=1 << 30, probe_seconds=30), isolation="bwrap").session(cells(whole=WHOLE)) as s:
        assert s.cells[-1].ok, s.cells[-1]
        keys = ("USERNS", "USERNS_TOOL", "SYSV_SHM", "MEMFD", "DEV_SHM", "DUMPABLE", "PROC_MEM")
        got = {k: s.get(k).value for k in keys}
        assert got == {
            "USERNS": True,
            "USERNS_TOOL": 1,
            "SYSV_SHM": True,
            "MEMFD": True,
            "DEV_SHM": "ENOSPC",
            "DUMPABLE": True,
            "PROC_MEM": "PermissionError",
        }
        # seven children of 150 MiB each are within every per-process limit, not within the sandbox's 1 GiB
        alive = s.call("children", 7, 150)
        assert alive.status == "crashed" or (alive.ok and alive.value.count(True) < 7), alive
        assert s.group is not None and s.group.oom_kills() >= 1
        res = s.result()
    assert any(e.startswith("whole sandbox (cgroup") for e in res.enforced)
    assert any(e.startswith("system calls (seccomp)") for e in res.enforced)


@needs_cgroup
def test_a_busy_neighbour_gets_one_cpu_and_costs_another_sandbox_nothing():
    noisy = "import os\nfor _ in range(8):\n    if os.fork() == 0:\n        while True:\n            pass"
    burn = (
        "import time\ndef burn(seconds):\n    t = time.process_time()\n"
        "    while time.process_time() - t < seconds:\n        pass\n    return True"
    )
    with (
        Sandbox(Limits(cpus=1), isolation=AUTO).session(cells(noisy=noisy)) as loud,
        Sandbox(Limits(probe_seconds=3), isolation=AUTO).session(cells(burn=burn)) as quiet,
    ):
        t0, c0 = time.monotonic(), loud.group.cpu_seconds()
        assert quiet.call("burn", 2.0).value is True  # 2 s of CPU within its 3 s, next to 8 busy processes
        rate = (loud.group.cpu_seconds() - c0) / (time.monotonic() - t0)
        assert rate < 1.15, f"the busy sandbox used {rate:.2f} CPUs, its quota is 1"


def test_a_worker_that_floods_the_reply_pipe_is_stopped(hostile):
    limits = Limits(reply_bytes=1 << 20, session_reply_bytes=8 << 20, output_bytes=4096)
    with Sandbox(limits, isolation=AUTO).session(cells(replies=HOSTILE["replies"])) as s:
        statuses = [s.call("flood").status for _ in range(4)]  # 3 MiB each, over a budget of 8 MiB
        assert statuses[:2] == ["invalid", "invalid"] and "crashed" in statuses
        assert any("more than 8 MiB of replies" in stop for stop in s.stops)


def test_weak_isolation_must_be_asked_for(monkeypatch):
    import course.grading.sandbox as sandbox_module

    monkeypatch.setattr(sandbox_module, "bwrap_problem", lambda: "bwrap is not installed")
    with pytest.raises(RuntimeError, match="bwrap isolation is required but bwrap is not installed; install"):
        Sandbox()
    assert Sandbox(isolation="auto").mode == "rlimits-only"
