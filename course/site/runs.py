"""Reference-run artifacts as the site draws them, the chapter's published epochs, and the run figures.

The site never trains. ``course reference train`` (see :mod:`course.reference`, which also reads and checks
``manifest.json`` and holds the table of runs) writes the chapter's runs into ``graders/reference/``; besides the
manifest the site reads these files from there:

``stats/<RUN>.npz``
    What ``ActivationStats(with_hist=True)`` records, one column per *training* batch, one row per hooked
    layer (the leaf modules with parameters, in model order):

    - ``mean``, ``std``, ``near_zero``: float arrays of shape ``(layers, batches)``
      (``near_zero`` = fraction of activations <= 0.05);
    - ``hist``: float array ``(layers, 40, batches)`` of raw ``histc(40, 0, 10)`` counts
      (the figure applies ``log1p``, as ``ActivationStats.hist`` does);
    - optional ``layers``: str array ``(layers,)`` of module names.

``traces.npz`` (optional for the site)
    ``<RUN>.lr`` and ``<RUN>.mom``: float arrays ``(batches,)``, the hyper-parameters of each training batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from course.reference import CHAPTER_RUNS, REFERENCE_COMMAND, ArtifactError

__all__ = [
    "LayerStats",
    "color_dim_figure",
    "epochs_table",
    "fastai_one_cycle",
    "fastai_stats",
    "layer_stats_figure",
    "load_activation_stats",
    "load_schedule",
    "plot_schedule",
    "research_table",
    "results_table",
    "run_result",
]

HIST_BINS = 40

#: The book's five-epoch table for R6 (train_loss, valid_loss, accuracy).
BOOK_R6_EPOCHS = (
    (0.191731, 0.121738, 0.960900),
    (0.083739, 0.055808, 0.981800),
    (0.053161, 0.044485, 0.987100),
    (0.034433, 0.030233, 0.990200),
    (0.017646, 0.025407, 0.991200),
)


@dataclass(frozen=True)
class LayerStats:
    """Per-layer, per-batch activation statistics of one run (see the module docstring)."""

    mean: np.ndarray  # (layers, batches)
    std: np.ndarray  # (layers, batches)
    near_zero: np.ndarray  # (layers, batches)
    hist: np.ndarray  # (layers, 40, batches), raw counts
    layers: tuple[str, ...]

    @property
    def n_layers(self) -> int:
        return self.mean.shape[0]

    def layer_name(self, idx: int) -> str:
        """A readable name for hooked layer ``idx`` (negative indices count from the end)."""
        i = range(self.n_layers)[idx]
        return self.layers[i] if self.layers else f"hooked layer {i + 1} of {self.n_layers}"


def load_activation_stats(path: str | os.PathLike) -> LayerStats:
    """Read ``stats/<run>.npz`` and check every array's shape against the others."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not a readable npz ({exc}); rerun `{REFERENCE_COMMAND}`") from exc
    missing = [k for k in ("mean", "std", "near_zero", "hist") if k not in arrays]
    if missing:
        raise ArtifactError(f"{path} lacks arrays {missing} (has {sorted(arrays)})")
    mean = arrays["mean"]
    if mean.ndim != 2 or mean.shape[1] == 0:
        raise ArtifactError(f"{path}: 'mean' must be (layers, batches), got shape {mean.shape}")
    n_layers, n_batches = mean.shape
    for k in ("std", "near_zero"):
        if arrays[k].shape != mean.shape:
            raise ArtifactError(f"{path}: {k!r} has shape {arrays[k].shape}, expected {mean.shape} like 'mean'")
    if arrays["hist"].shape != (n_layers, HIST_BINS, n_batches):
        raise ArtifactError(
            f"{path}: 'hist' has shape {arrays['hist'].shape}, expected {(n_layers, HIST_BINS, n_batches)}"
        )
    layers = tuple(str(s) for s in arrays["layers"]) if "layers" in arrays else ()
    if layers and len(layers) != n_layers:
        raise ArtifactError(f"{path}: 'layers' names {len(layers)} layers, the statistics have {n_layers}")
    return LayerStats(*(np.asarray(arrays[k], dtype=np.float64) for k in ("mean", "std", "near_zero", "hist")), layers)


def load_schedule(path: str | os.PathLike, run: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``traces.npz``: the recorded ``<run>.lr`` and ``<run>.mom`` per training batch."""
    try:
        with np.load(path, allow_pickle=False) as z:
            lr, mom = np.asarray(z[f"{run}.lr"], float), np.asarray(z[f"{run}.mom"], float)
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{path} needs arrays '{run}.lr' and '{run}.mom' ({exc})") from exc
    if lr.shape != mom.shape or lr.ndim != 1:
        raise ArtifactError(f"{path}: 'lr' {lr.shape} and 'mom' {mom.shape} must be equal 1-D shapes")
    return lr, mom


# ---------------------------------------------------------------------------------------------- figures
# The exercises ask students to write these plots and the 1cycle schedule; the site draws them with fastai's
# own implementations (fed with the reference run's records), so that no answer ships in this package.


def fastai_stats(stats: LayerStats):
    """fastai's ``ActivationStats`` holding the recorded statistics (one row per batch, one dict per layer)."""
    import torch
    from fastai.callback.hook import ActivationStats
    from fastcore.foundation import L

    st = ActivationStats(with_hist=True)
    st.stats = L(
        L(
            {
                "mean": float(stats.mean[i, b]),
                "std": float(stats.std[i, b]),
                "near_zero": float(stats.near_zero[i, b]),
                "hist": torch.from_numpy(np.ascontiguousarray(stats.hist[i, :, b], dtype=np.float32)),
            }
            for i in range(stats.n_layers)
        )
        for b in range(stats.mean.shape[1])
    )
    return st


def layer_stats_figure(stats: LayerStats, idx: int, title: str = ""):
    """fastai's ``plot_layer_stats``: mean, std and fraction near zero of one layer against the training batch."""
    import matplotlib.pyplot as plt

    fastai_stats(stats).plot_layer_stats(range(stats.n_layers)[idx])
    fig = plt.gcf()
    fig.set_size_inches(12, 3.2)
    fig.set_layout_engine("constrained")
    for ax in fig.axes:
        ax.lines[0].set(color="#3949ab", linewidth=1.2)
        ax.set_xlabel("training batch")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(f"{title} — {stats.layer_name(idx)}", fontsize=11)
    return fig


def color_dim_figure(stats: LayerStats, idx: int, title: str = "", figsize=(10, 5)):
    """fastai's ``color_dim``: log(1 + histogram count) per bin (rows) and batch (columns)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    fastai_stats(stats).color_dim(range(stats.n_layers)[idx], ax=ax)
    ax.images[0].set(cmap="viridis", interpolation="nearest")
    ax.set_aspect("auto")
    if title:
        ax.set_title(f"{title} — {stats.layer_name(idx)}", fontsize=11)
    return fig


def fastai_one_cycle(n_steps: int, lr_max: float) -> tuple[list[float], list[float]]:
    """The learning rate and momentum fastai's ``fit_one_cycle`` sets before each of ``n_steps`` batches."""
    from fastai.callback.schedule import combined_cos

    lr, mom = combined_cos(0.25, lr_max / 25, lr_max, lr_max / 1e5), combined_cos(0.25, 0.95, 0.85, 0.95)
    return [float(lr(i / n_steps)) for i in range(n_steps)], [float(mom(i / n_steps)) for i in range(n_steps)]


def plot_schedule(n_steps: int, lr_max: float, recorded: tuple[np.ndarray, np.ndarray] | None = None):
    """fastai's 1cycle learning rate and momentum per batch (and a recorded run's, if given)."""
    import matplotlib.pyplot as plt

    lrs, moms = fastai_one_cycle(n_steps, lr_max)
    fig, axs = plt.subplots(1, 2, figsize=(12, 3.6), layout="constrained")
    for ax, values, name, rec in zip(
        axs, (lrs, moms), ("learning rate", "momentum"), recorded or (None, None), strict=True
    ):
        ax.plot(values, color="#3949ab", linewidth=2, label="fastai's fit_one_cycle")
        if rec is not None:
            ax.plot(rec, linestyle="none", marker=".", markersize=3, color="#e64a19", label="reference run")
            ax.legend()
        ax.set_title(name)
        ax.set_xlabel("training batch")
        ax.axvline(0.25 * n_steps, color="grey", linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)
    axs[0].annotate(
        f"peak {lr_max:g} after 25% of the batches",
        xy=(0.25 * n_steps, lr_max),
        xytext=(0.45 * n_steps, 0.85 * lr_max),
        arrowprops={"arrowstyle": "->", "color": "grey"},
    )
    return fig


# ---------------------------------------------------------------------------------------------- tables


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _device(manifest: dict) -> str:
    env = manifest.get("environment") or {}
    name, kind = env.get("device_name"), env.get("device")
    if kind == "cpu":
        return f"a CPU ({name})" if name else "a CPU"
    return f"{name} ({kind})" if name and kind else name or kind or "an unnamed device"


def results_table(manifest: dict) -> str:
    """Markdown table of the chapter's runs: the book's final accuracy beside the reference run's."""
    runs = manifest.get("runs", {})
    rows = ["| run | setup | book | ours |", "|---|---|---:|---:|"]
    for run in CHAPTER_RUNS.values():
        got = runs.get(run.name)
        ours = _pct(got["epochs_table"][-1]["accuracy"]) if got else "not yet trained"
        rows.append(f"| {run.label} | {run.setup} | {_pct(run.book_accuracy)} | {ours} |")
    note = f"*Ours*: the course's reference runs on {_device(manifest)}, seed {manifest.get('seed', '?')}."
    return "\n".join(rows) + "\n\n" + note + "\n"


def epochs_table(manifest: dict, key: str = "r6_final") -> str:
    """Per-epoch accuracy of the final run: the book's table beside the reference run's."""
    got = (manifest.get("runs", {}).get(key) or {}).get("epochs_table", [])
    rows = [
        "| epoch | book train loss | book valid loss | book accuracy | our accuracy |",
        "|---:|---:|---:|---:|---:|",
    ]
    for i, (tl, vl, acc) in enumerate(BOOK_R6_EPOCHS):
        ours = _pct(got[i]["accuracy"]) if i < len(got) else "not yet trained"
        rows.append(f"| {i} | {tl:.4f} | {vl:.4f} | {_pct(acc)} | {ours} |")
    spread = (manifest.get("runs", {}).get(key) or {}).get("seed_spread")
    if spread:
        rows.append(
            f"\nThe same recipe from {len(spread['seeds'])} different random starts ends between "
            f"{_pct(spread['min'])} and {_pct(spread['max'])}, {_pct(spread['mean'])} on average: differences "
            "of a tenth of a point between two single runs are luck."
        )
    return "\n".join(rows) + "\n"


def run_result(manifest: dict, key: str) -> str:
    """A short box: the book's accuracy for one of the chapter's runs beside the reference run's."""
    run = CHAPTER_RUNS[key]
    got = (manifest.get("runs") or {}).get(key)
    if got:
        env = (manifest.get("environment") or {}).get("device", "?")
        ours = f"**{_pct(got['epochs_table'][-1]['accuracy'])}** ({env}, seed {manifest.get('seed', '?')})"
    else:
        ours = "not trained in this checkout yet"
    setup = run.setup.replace('"', "'")
    return (
        f'!!! abstract run-result "Run {run.label}: {setup}"\n\n'
        f"    Book: **{_pct(run.book_accuracy)}** · this course's reference run: {ours}\n"
    )


def research_table(manifest: dict) -> str:
    """The further-research runs (``fr_*``) of the reference training beside the final recipe."""
    runs = manifest.get("runs", {})
    rows = ["| run | what changes | accuracy |", "|---|---|---:|"]
    for key, run in runs.items():
        if key.startswith("fr_") or key == "r6_final":
            rows.append(f"| `{key}` | {run.get('title', '')} | {_pct(run['epochs_table'][-1]['accuracy'])} |")
    return "\n".join(rows) + "\n"
