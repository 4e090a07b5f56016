"""``course reference train|verify``: the chapter's runs with the reference implementations from ``solutions/``.

The implementations (``conv``, ``Flatten``, ``ActivationStats``, ``OneCycleScheduler``, ``BatchNorm2d``, ...)
are the solution cells of the source notebooks, executed into modules by ``load_solution_module``; nothing
here re-implements them. Artifacts go to ``graders/reference/``:

- ``manifest.json``: device, versions, seed, data hashes, every run's per-epoch table next to the book's
  number, wall times, tolerances, and the sha256 of every other file:
  ``{"environment": {"device": ..., "device_name": ...}, "seed": int, "runs": {RUN: {"epochs_table": [EPOCH, ...],
  "final_accuracy": float, ...}}, "budgets": {...}, "files": {PATH: SHA256}, ...}`` where each ``EPOCH`` is
  ``{"epoch", "train_loss", "valid_loss", "accuracy", "seconds"}`` (accuracy a fraction in [0, 1]). Everything
  reads it through :func:`load_manifest`;
- ``weights/<run>.pt``: final state dicts (load with ``torch.load(..., weights_only=True)``);
- ``traces.npz``: per-step learning rate and momentum of every run (``<run>.lr``, ``<run>.mom``);
- ``stats/<run>.npz``: activation statistics per hooked layer and training batch: ``mean``, ``std``,
  ``near_zero`` (layers, batches) and ``hist`` (layers, 40, batches) raw counts over [0, 10].

The manifest also holds ``budgets``: short CPU runs that the hidden graders repeat with a student's own
pieces (``course.training.fit``, one thread, as in the sandbox), with the reference implementation's accuracy at
the same budget, so a grader compares against a stored number instead of retraining the reference for
every submission.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from course.files import atomic_dir, file_sha256

__all__ = [
    "BUDGETS",
    "CHAPTER_RUNS",
    "ENV_REFERENCE",
    "REFERENCE_COMMAND",
    "RUNS",
    "ArtifactError",
    "GraderRun",
    "Run",
    "load_manifest",
    "load_references",
    "load_solution_module",
    "reference_dir",
    "run_budget",
    "train_reference",
    "train_run",
    "verify_reference",
]

DEFAULT_OUT = Path("graders") / "reference"
ENV_REFERENCE = "COURSE_REFERENCE_DIR"
REFERENCE_COMMAND = "course reference train"
SCHEMA = 1


@dataclass(frozen=True)
class Run:
    """One training run of the chapter's progression (``label`` R1..R6, as the site numbers them) or its further
    research; ``book_accuracy`` is what the book printed, ``setup`` how the site's tables describe the run."""

    name: str
    title: str
    model: str  # "sample" | "baseline" | "bn" | "norm:<kind>" | "relu_bn"
    bs: int
    schedule: str  # "constant" | "one_cycle"
    lr: float
    epochs: int
    book_accuracy: float | None
    stats: bool = False
    spread_seeds: tuple[int, ...] = ()  # the same recipe again with these seeds: how much of a result is the seed
    label: str = ""
    setup: str = ""


#: The chapter's runs in the order the chapter tells them (book accuracies from its printed tables), then the
#: further research.
RUNS = (
    Run(
        "r1_sample",
        "MNIST_SAMPLE simple_cnn, 1cycle 0.01, 2 epochs",
        "sample",
        64,
        "one_cycle",
        0.01,
        2,
        0.990186,
        label="R1",
        setup="3s vs 7s, `simple_cnn` (4-8-16-32-2), bs 64, `fit_one_cycle(2, 0.01)`",
    ),
    Run(
        "r2_constant_bs64",
        "MNIST simple_cnn, constant LR 0.06, bs 64",
        "baseline",
        64,
        "constant",
        0.06,
        1,
        0.1135,
        stats=True,
        label="R2",
        setup="all digits, `simple_cnn()` (8-16-32-64-10), bs 64, constant LR 0.06",
    ),
    Run(
        "r3_constant_bs512",
        "MNIST simple_cnn, constant LR 0.06, bs 512",
        "baseline",
        512,
        "constant",
        0.06,
        1,
        0.1135,
        stats=True,
        label="R3",
        setup="same, bs 512, constant LR 0.06",
    ),
    Run(
        "r4_one_cycle",
        "+ 1cycle, lr_max 0.06, bs 512",
        "baseline",
        512,
        "one_cycle",
        0.06,
        1,
        0.9743,
        stats=True,
        label="R4",
        setup="bs 512, 1cycle with `lr_max` 0.06, 1 epoch",
    ),
    Run(
        "r5_batchnorm",
        "+ BatchNorm",
        "bn",
        512,
        "one_cycle",
        0.06,
        1,
        0.9864,
        stats=True,
        label="R5",
        setup="+ batch normalization, 1cycle 0.06, 1 epoch",
    ),
    Run(
        "r6_final",
        "+ 5 epochs, lr_max 0.1",
        "bn",
        512,
        "one_cycle",
        0.1,
        5,
        0.9912,
        spread_seeds=(0, 1, 2, 3),
        label="R6",
        setup="+ batch normalization, 1cycle 0.1, 5 epochs",
    ),
    Run("fr_layernorm", "further research: LayerNorm (GroupNorm(1, nf))", "norm:layer", 512, "one_cycle", 0.1, 5, None),
    Run("fr_groupnorm", "further research: GroupNorm", "norm:group", 512, "one_cycle", 0.1, 5, None),
    Run(
        "fr_instancenorm",
        "further research: InstanceNorm (last 1x1 block without norm)",
        "norm:instance",
        512,
        "one_cycle",
        0.1,
        5,
        None,
    ),
    Run("fr_relu_bn", "further research: Conv -> ReLU -> BN (final recipe)", "relu_bn", 512, "one_cycle", 0.1, 5, None),
)
#: The chapter's progression (R1..R6) by name, as the site's tables list it.
CHAPTER_RUNS = {r.name: r for r in RUNS if r.label}


@dataclass(frozen=True)
class GraderRun:
    """A short run the graders repeat with a student's ``factory`` (from exercise ``exercise``) on CPU."""

    name: str
    title: str
    exercise: str
    factory: str
    n_train: int
    n_test: int
    bs: int
    epochs: int
    lr: float
    schedule: str = "fit_one_cycle"


BUDGETS = (
    GraderRun(
        "ex6_short_run",
        "ex6 grader: simple_cnn_bn, fit_one_cycle(2, 0.1), bs 256, first 12,288 training images, 2,000 test images",
        "ex6",
        "simple_cnn_bn",
        n_train=12288,
        n_test=2000,
        bs=256,
        epochs=2,
        lr=0.1,
    ),
)
#: How close a CPU retrain must come to the manifest (accuracy in absolute terms; traces are formulas).
TOLERANCES = {"accuracy_abs": 0.006, "trace_rtol": 1e-9}


class ArtifactError(ValueError):
    """A reference artifact exists but does not have the documented format."""


def reference_dir(root: str | os.PathLike = ".") -> Path:
    """Where the artifacts are read from: ``$COURSE_REFERENCE_DIR`` or ``<root>/graders/reference``."""
    env = os.environ.get(ENV_REFERENCE)
    return Path(env) if env else Path(root) / DEFAULT_OUT


def load_manifest(path: str | os.PathLike) -> dict:
    """Read and check ``manifest.json`` (every run has a per-epoch table of accuracies in [0, 1]).

    Raises ArtifactError naming the file and the problem.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not readable JSON ({exc}); rerun `{REFERENCE_COMMAND}`") from exc
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, dict):
        raise ArtifactError(f"{path} has no 'runs' object; rerun `{REFERENCE_COMMAND}`")
    for key, run in runs.items():
        epochs = run.get("epochs_table") if isinstance(run, dict) else None
        if not isinstance(epochs, list) or not epochs:
            raise ArtifactError(f"{path}: run {key!r} has no 'epochs_table' list")
        for e in epochs:
            acc = e.get("accuracy") if isinstance(e, dict) else None
            if not isinstance(acc, int | float) or not 0.0 <= acc <= 1.0:
                raise ArtifactError(f"{path}: run {key!r} has an epoch whose accuracy {acc!r} is not in [0, 1]")
    return data


def load_solution_module(path: str | os.PathLike, name: str | None = None):
    """Execute a source notebook's imports cell and answer cells into a fresh module; return it.

    This is how the reference implementations are obtained: straight from ``solutions/``, never from a
    second copy. Training tasks (:func:`course.exercises.trains`) are skipped.
    """
    import types

    from course.exercises import trains
    from course.notebooks import read_notebook, solution_cells

    path = Path(path)
    nb = read_notebook(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code:
        raise ValueError(f"{path} has no code cells")
    module = types.ModuleType(name or f"reference_{path.stem}")
    module.__file__ = str(path)
    answers = [(gid, src) for gid, src in solution_cells(nb).items() if not trains(gid)]
    chunks = [("imports", code[0].source), *answers]
    for gid, src in chunks:
        try:
            exec(compile(src, f"{path.name}::{gid}", "exec"), module.__dict__)  # noqa: S102 (trusted source notebook)
        except Exception as exc:
            raise RuntimeError(f"{path}: cell {gid!r} failed while loading the reference ({exc})") from exc
    return module


def load_references(root: str | os.PathLike = "."):
    """The reference modules ex3 (CNN pieces), ex4 (ActivationStats), ex5 (1cycle), ex6 (BatchNorm)."""
    from course.exercises import notebook_path

    mods = {}
    for ex in ("ex3", "ex4", "ex5", "ex6"):
        path = notebook_path(ex, root)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the reference implementations come from solutions/")
        mods[ex] = load_solution_module(path, f"reference_{ex}")
    return mods


def build_model(run: Run, refs):
    """The run's network, built only from the reference implementations."""
    from torch import nn

    ex3, ex6 = refs["ex3"], refs["ex6"]
    if run.model == "sample":
        return ex3.simple_cnn()
    widths = [(1, 8, 5), (8, 16, 3), (16, 32, 3), (32, 64, 3)]
    if run.model == "baseline":
        blocks = [ex3.conv(ni, nf, ks=ks) for ni, nf, ks in widths] + [ex3.conv(64, 10, act=False)]
    elif run.model == "bn":
        return ex6.simple_cnn_bn()
    elif run.model.startswith("norm:") or run.model == "relu_bn":
        kind = run.model.split(":", 1)[1] if ":" in run.model else "batch"
        act_first = run.model == "relu_bn"
        blocks = [ex6.conv_norm(ni, nf, ks=ks, kind=kind, act_first=act_first) for ni, nf, ks in widths]
        if kind == "instance":  # the last block's output is 1x1: per-image statistics of one value are undefined
            blocks.append(ex3.conv(64, 10, act=False))
        else:
            blocks.append(ex6.conv_norm(64, 10, act=False, kind=kind, act_first=act_first))
    else:
        raise ValueError(f"unknown model kind {run.model!r}")
    return nn.Sequential(*blocks, ex3.Flatten())


def _train(run: Run, refs, device, seed: int, progress: bool):
    import torch
    from fastai.learner import Learner
    from fastai.metrics import accuracy
    from fastai.torch_core import set_seed
    from torch.nn import functional as F

    from course.dataloaders import mnist_dls
    from course.training import hyper_trace

    set_seed(seed, reproducible=True)
    dls = mnist_dls(run.bs, sample=run.model == "sample", device=device)
    model = build_model(run, refs)
    trace = hyper_trace()
    cbs = [trace]
    stats_cb = refs["ex4"].ActivationStats(with_hist=True) if run.stats else None
    if stats_cb is not None:
        cbs.append(stats_cb)
    if run.schedule == "one_cycle":
        cbs.append(refs["ex5"].OneCycleScheduler(run.lr))
    learn = Learner(dls, model, loss_func=F.cross_entropy, metrics=accuracy, cbs=cbs)
    t0 = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fit(run.epochs, run.lr)
    seconds = time.perf_counter() - t0
    table = [
        {
            "epoch": i,
            "train_loss": float(v[0]),
            "valid_loss": float(v[1]),
            "accuracy": float(v[2]),
            "seconds": round(trace.epoch_s[i], 3),
        }
        for i, v in enumerate(learn.recorder.values)
    ]
    if progress:
        for row in table:
            print(
                f"  {run.name:<18} epoch {row['epoch']}  train {row['train_loss']:.4f}  valid "
                f"{row['valid_loss']:.4f}  accuracy {row['accuracy']:.4f}  {row['seconds']:.1f} s",
                flush=True,
            )
    state = {k: v.detach().cpu() for k, v in learn.model.state_dict().items()}
    n_params = sum(p.numel() for p in learn.model.parameters())
    stats = _stats_arrays(stats_cb) if stats_cb is not None else None
    del learn
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "table": table,
        "seconds": seconds,
        "lr": np.array(trace.lr_trace),
        "mom": np.array(trace.mom_trace),
        "state": state,
        "params": n_params,
        "stats": stats,
    }


def _seed_spread(run: Run, refs, device, seed: int, accuracy: float, progress: bool) -> dict:
    """Final accuracy of ``run`` at ``seed`` and at each of its ``spread_seeds``, with mean, std, min and max."""
    accs = {seed: accuracy}
    for other in run.spread_seeds:
        accs[other] = _train(run, refs, device, other, progress=False)["table"][-1]["accuracy"]
        if progress:
            print(f"  {run.name:<18} seed {other:<3} accuracy {accs[other]:.4f}", flush=True)
    values = np.array(list(accs.values()))
    return {
        "seeds": list(accs),
        "accuracy": [float(v) for v in values],
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def run_budget(budget: GraderRun, refs, seed: int) -> dict:
    """The reference implementation at a grader budget: ``training.fit`` on CPU, one thread, as the sandbox runs it."""
    import warnings

    import torch

    from course.data import load_mnist
    from course.dataloaders import pixel_stats
    from course.training import fit

    m = load_mnist()
    (x, y), (x_test, y_test) = m.tensors("train"), m.tensors("test")
    mean, std = pixel_stats(x)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fastai's notes, silenced as the graders silence them
            res = fit(
                getattr(refs[budget.exercise], budget.factory),
                x[: budget.n_train],
                y[: budget.n_train],
                x_test[: budget.n_test],
                epochs=budget.epochs,
                lr=budget.lr,
                bs=budget.bs,
                schedule=budget.schedule,
                mean=mean,
                std=std,
                seed=seed,
            )
    finally:
        torch.set_num_threads(threads)
    accuracy = float((res["logits"].argmax(1) == y_test[: budget.n_test]).float().mean())
    return {
        **asdict(budget),
        "seed": seed,
        "device": "cpu",
        "threads": 1,
        "accuracy": accuracy,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def train_run(name: str, refs=None, device: str = "cpu", seed: int = 42, root: str | os.PathLike = ".") -> dict:
    """Train one of ``RUNS`` in this process without writing artifacts: per-epoch ``table``, ``seconds``, ``state``."""
    import torch

    run = next((r for r in RUNS if r.name == name), None)
    if run is None:
        raise ValueError(f"unknown run {name!r}; choose from {[r.name for r in RUNS]}")
    return _train(run, refs or load_references(root), torch.device(device), seed, progress=False)


def _stats_arrays(cb) -> dict[str, np.ndarray]:
    """ActivationStats' per-batch list of per-layer dicts -> arrays (layers, batches) and (layers, 40, batches)."""
    batches = cb.stats
    out = {
        k: np.array([[float(layer[k]) for layer in b] for b in batches], np.float32).T
        for k in ("mean", "std", "near_zero")
    }
    out["hist"] = np.stack(
        [np.stack([np.asarray(layer["hist"], np.float32) for layer in b]) for b in batches], axis=-1
    )  # (layers, 40, batches)
    return out


def _data_hashes() -> dict[str, str]:
    from course.data import load_mnist

    m = load_mnist()
    return {
        k: hashlib.sha256(np.ascontiguousarray(getattr(m, k)).tobytes()).hexdigest()
        for k in ("x_train", "y_train", "x_test", "y_test")
    }


def _environment(device) -> dict:
    import fastai
    import torch

    env = {
        "device": str(device),
        "torch": torch.__version__,
        "fastai": fastai.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
    }
    env["device_name"] = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (platform.processor() or platform.machine() or "cpu")
    )
    return env


def train_reference(
    out: str | os.PathLike = DEFAULT_OUT,
    device: str | None = None,
    seed: int = 42,
    only: list[str] | None = None,
    root: str | os.PathLike = ".",
    progress: bool = True,
) -> dict:
    """Train the selected runs and write the artifacts into ``out`` atomically; return the manifest."""
    import torch

    names = {r.name for r in RUNS} | {b.name for b in BUDGETS}
    unknown = sorted(set(only or ()) - names)
    if unknown:
        raise ValueError(f"unknown run(s) {unknown}; choose from {sorted(names)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no GPU; use --device cpu")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    refs = load_references(root)
    out = Path(out)
    runs, traces = {}, {}
    t_all = time.perf_counter()
    with atomic_dir(out) as tmp:  # out is the old folder until the new one is complete
        (tmp / "weights").mkdir()
        (tmp / "stats").mkdir()
        for run in RUNS:
            if only and run.name not in only:
                continue
            if progress:
                print(f"{run.name}: {run.title} on {dev}", flush=True)
            res = _train(run, refs, dev, seed, progress)
            torch.save(res["state"], tmp / "weights" / f"{run.name}.pt")
            traces[f"{run.name}.lr"], traces[f"{run.name}.mom"] = res["lr"], res["mom"]
            if res["stats"] is not None:
                np.savez_compressed(tmp / "stats" / f"{run.name}.npz", **res["stats"])
            runs[run.name] = {
                **asdict(run),
                "params": res["params"],
                "seconds": round(res["seconds"], 2),
                "epochs_table": res["table"],
                "final_accuracy": res["table"][-1]["accuracy"],
                "steps": len(res["lr"]),
            }
            if run.spread_seeds:
                final = res["table"][-1]["accuracy"]
                runs[run.name]["seed_spread"] = _seed_spread(run, refs, dev, seed, final, progress)
        budgets = {}
        for budget in BUDGETS:
            if only and budget.name not in only:
                continue
            if progress:
                print(f"{budget.name}: {budget.title} on cpu (1 thread)", flush=True)
            budgets[budget.name] = run_budget(budget, refs, seed)
            if progress:
                print(f"  {budget.name:<18} accuracy {budgets[budget.name]['accuracy']:.4f}", flush=True)
        np.savez_compressed(tmp / "traces.npz", **traces)
        files = {str(p.relative_to(tmp)): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {
            "schema": SCHEMA,
            "seed": seed,
            "environment": _environment(dev),
            "data_sha256": _data_hashes(),
            "wall_seconds": round(time.perf_counter() - t_all, 2),
            "tolerances": TOLERANCES,
            "runs": runs,
            "budgets": budgets,
            "files": files,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def verify_reference(path: str | os.PathLike = DEFAULT_OUT) -> list[str]:
    """Problems with the artifacts in ``path`` compared with its manifest: [] when everything matches."""
    import torch

    path = Path(path)
    mf = path / "manifest.json"
    if not mf.is_file():
        return [f"{mf} is missing: run `{REFERENCE_COMMAND}`"]
    try:
        manifest = load_manifest(mf)
    except ArtifactError as exc:
        return [str(exc)]
    problems = []
    listed = manifest.get("files", {})
    present = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} - {"manifest.json"}
    for rel in sorted(present - set(listed)):
        problems.append(f"{rel} is not listed in the manifest")
    for rel, digest in sorted(listed.items()):
        f = path / rel
        if not f.is_file():
            problems.append(f"{rel} is listed in the manifest but missing")
        elif file_sha256(f) != digest:
            problems.append(f"{rel} has sha256 {file_sha256(f)[:12]}…, the manifest says {digest[:12]}…")
        elif f.suffix == ".pt":
            try:
                torch.load(f, weights_only=True, map_location="cpu")
            except Exception as exc:  # any unpickling problem means the file is unusable
                problems.append(f"{rel} does not load with weights_only=True ({exc})")
        elif f.suffix == ".npz":
            try:
                with np.load(f, allow_pickle=False) as z:
                    [z[k] for k in z.files]
            except Exception as exc:  # zip and format errors
                problems.append(f"{rel} is not a readable npz ({exc})")
    for name, run in manifest.get("runs", {}).items():
        if f"weights/{name}.pt" not in listed:
            problems.append(f"run {name} has no weights file")
        if not run.get("epochs_table") or len(run["epochs_table"]) != run.get("epochs"):
            problems.append(f"run {name}: the per-epoch table does not have {run.get('epochs')} rows")
    return problems
