"""Cases for ex4 (04_activation_stats): activation_stats, the ActivationStats hooks, the two plots."""

from . import Case

_WATCHED = "[m for m in model.modules() if next(m.children(), None) is None and next(m.parameters(), None) is not None]"

PEERS: dict[str, list[Case]] = {
    "ex4_layer_stats": [
        Case(
            "numpy",
            '''\
import numpy as np


def activation_stats(t, with_hist=True):
    """Mean, unbiased std, fraction <= 0.05 and (optionally) the 40-bin histogram on [0, 10] of all of `t`."""
    a = t.detach().float().cpu().numpy().ravel()
    res = {
        "mean": float(a.mean(dtype=np.float64)),
        "std": float(a.std(ddof=1, dtype=np.float64)),
        "near_zero": float(np.count_nonzero(a <= 0.05) / a.size),
    }
    if with_hist:
        counts, _ = np.histogram(a, bins=40, range=(0, 10))
        res["hist"] = torch.from_numpy(counts).float()
    return res
''',
            "numpy with float64 accumulation (ddof=1 for the unbiased std), np.histogram for the counts",
        ),
        Case(
            "std_mean",
            '''\
def activation_stats(t, with_hist=True):
    """Mean, unbiased std, fraction <= 0.05 and (optionally) the 40-bin histogram on [0, 10] of all of `t`."""
    x = t.detach().float()
    std, mean = torch.std_mean(x)
    res = dict(mean=mean.item(), std=std.item(), near_zero=x.le(0.05).float().mean().item())
    if with_hist:
        res["hist"] = torch.histc(x, bins=40, min=0, max=10)
    return res
''',
            "torch.std_mean in one call, near_zero as the mean of a 0/1 mask",
        ),
        Case(
            "var_sqrt",
            '''\
def activation_stats(t, with_hist=True):
    """Mean, unbiased std, fraction <= 0.05 and (optionally) the 40-bin histogram on [0, 10] of all of `t`."""
    x = t.float().detach().flatten()
    n = x.numel()
    res = {"mean": float(x.sum() / n), "std": float(x.var(unbiased=True).sqrt())}
    res["near_zero"] = int((x <= 0.05).sum()) / n
    if with_hist:
        res.update(hist=x.histc(40, 0, 10))
    return res
''',
            "sum / n for the mean, var(unbiased=True).sqrt() for the std, float() and int() instead of .item()",
        ),
        Case(
            "torch_histogram",
            '''\
BINS, LOW, HIGH, NEAR_ZERO = 40, 0.0, 10.0, 0.05


def activation_stats(t, with_hist=True):
    """Mean, unbiased std, fraction <= 0.05 and (optionally) the 40-bin histogram on [0, 10] of all of `t`."""
    t = t.detach().to(torch.float32)
    res = {"mean": t.mean().item(), "std": t.std().item(), "near_zero": (t <= NEAR_ZERO).sum().item() / t.numel()}
    if with_hist:
        res["hist"] = torch.histogram(t, bins=BINS, range=(LOW, HIGH)).hist
    return res
''',
            "named constants, .to(torch.float32), torch.histogram instead of histc (same counts)",
        ),
        Case(
            "count_nonzero",
            '''\
def activation_stats(t, with_hist=True):
    """Mean, unbiased std, fraction <= 0.05 and (optionally) the 40-bin histogram on [0, 10] of all of `t`."""
    t = t.detach().float()
    stats = {
        "mean": t.mean().item(),
        "std": t.std(correction=1).item(),
        "near_zero": torch.count_nonzero(t <= 0.05).item() / t.numel(),
    }
    return {**stats, "hist": t.histc(40, 0, 10)} if with_hist else stats
''',
            "correction=1 spelled out, count_nonzero, the histogram merged in with a dict display",
        ),
        Case(
            "helper_functions",
            '''\
def _near_zero(x, threshold=0.05):
    """Share of the values of x that are at most `threshold`."""
    return (x <= threshold).double().mean().item()


def activation_stats(t, with_hist=True):
    """Mean, unbiased std, fraction <= 0.05 and (optionally) the 40-bin histogram on [0, 10] of all of `t`."""
    x = t.detach().float()
    out = {"mean": x.mean().item(), "std": x.std().item(), "near_zero": _near_zero(x)}
    if with_hist:
        out["hist"] = x.histc(bins=40, min=0.0, max=10.0)
    return out
''',
            "a helper for near_zero computed as a float64 mean",
        ),
        Case(
            "dict_unpacking",
            '''\
def activation_stats(t, with_hist=True):
    """Mean, unbiased std, fraction <= 0.05 and (optionally) the 40-bin histogram on [0, 10] of all of `t`."""
    x = t.detach().cpu().float()
    n_small = torch.sum(x <= 0.05).item()
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "near_zero": n_small / x.numel(),
        **({"hist": x.histc(40, min=0, max=10)} if with_hist else {}),
    }
''',
            "one dict display, the histogram merged in conditionally with **",
        ),
    ],
    "ex4_activation_stats": [
        Case(
            "fastcore_L",
            f'''\
from fastcore.foundation import L


class ActivationStats(Callback):
    """Record `activation_stats` of the output of every watched module: `stats[batch][layer]` is a dict."""

    order = -20

    def __init__(self, model=None, modules=None, with_hist=False):
        super().__init__()
        self.root, self.watch, self.with_hist = model, modules, with_hist
        self.stats, self.handles, self.latest = L(), L(), L()

    def add_hooks(self, model):
        self.remove_hooks()
        watched = L(self.watch) if self.watch is not None else L({_WATCHED})
        self.stats, self.latest = L(), L([None] * len(watched))

        def record(i):
            def hook(module, inputs, output):
                self.latest[i] = activation_stats(output.detach().cpu(), self.with_hist)

            return hook

        self.handles = L(m.register_forward_hook(record(i)) for i, m in enumerate(watched))

    def remove_hooks(self):
        self.handles.map(lambda h: h.remove())
        self.handles = L()

    def __enter__(self):
        self.add_hooks(self.root)
        self.handles.append(self.root.register_forward_hook(lambda *_: self.stats.append(L(list(self.latest)))))
        return self

    def __exit__(self, exc_type, exc, tb):
        self.remove_hooks()

    def before_fit(self):
        self.add_hooks(self.learn.model)

    def after_batch(self):
        if self.training:
            self.stats.append(L(list(self.latest)))

    def after_fit(self):
        self.remove_hooks()

    def layer_stats(self, idx):
        rows = self.stats.itemgot(idx)
        return rows.itemgot("mean"), rows.itemgot("std"), rows.itemgot("near_zero")

    def hist(self, idx):
        return torch.stack(tuple(self.stats.itemgot(idx).itemgot("hist"))).t().float().log1p()
''',
            "fastcore's L for the records (itemgot, map), the way fastai's own ActivationStats stores them",
        ),
        Case(
            "fastai_Hooks",
            f'''\
from fastai.callback.hook import Hooks


class ActivationStats(Callback):
    """Record `activation_stats` of the output of every watched module: `stats[batch][layer]` is a dict."""

    order = -20

    def __init__(self, model=None, modules=None, with_hist=False):
        super().__init__()
        self.root, self.watch, self.with_hist = model, modules, with_hist
        self.stats, self.hooks, self.root_handle = [], None, None

    def _layer_stats(self, module, inputs, output):
        return activation_stats(output, self.with_hist)  # Hooks already detached it and moved it to the CPU

    def add_hooks(self, model):
        self.remove_hooks()
        watched = list(self.watch) if self.watch is not None else {_WATCHED}
        self.stats = []
        self.hooks = Hooks(watched, self._layer_stats, detach=True, cpu=True)

    def remove_hooks(self):
        if self.hooks is not None:
            self.hooks.remove()
            self.hooks = None
        if self.root_handle is not None:
            self.root_handle.remove()
            self.root_handle = None

    def __enter__(self):
        self.add_hooks(self.root)
        self.root_handle = self.root.register_forward_hook(lambda *_: self.stats.append(list(self.hooks.stored)))
        return self

    def __exit__(self, *exc_info):
        self.remove_hooks()

    def before_fit(self):
        self.add_hooks(self.learn.model)

    def after_batch(self):
        if self.training:
            self.stats.append(list(self.hooks.stored))

    def after_fit(self):
        self.remove_hooks()

    def layer_stats(self, idx):
        means, stds, near_zeros = zip(*[(b[idx]["mean"], b[idx]["std"], b[idx]["near_zero"]) for b in self.stats])
        return list(means), list(stds), list(near_zeros)

    def hist(self, idx):
        return torch.stack([b[idx]["hist"] for b in self.stats], dim=1).float().log1p()
''',
            "fastai's Hooks (detach=True, cpu=True) compute the statistics; their .stored is one batch's row",
        ),
        Case(
            "hook_outputs",
            f'''\
from fastai.callback.hook import hook_outputs


class ActivationStats(Callback):
    """Record `activation_stats` of the output of every watched module: `stats[batch][layer]` is a dict."""

    order = -20

    def __init__(self, model=None, modules=None, with_hist=False):
        super().__init__()
        self.root, self.watch, self.with_hist = model, modules, with_hist
        self.stats, self.out_hooks, self.handle = [], None, None

    def add_hooks(self, model):
        self.remove_hooks()
        watched = list(self.watch) if self.watch is not None else {_WATCHED}
        self.stats = []
        self.out_hooks = hook_outputs(watched, detach=True, cpu=True)  # each keeps its module's last output

    def _record(self):
        self.stats.append([activation_stats(o, self.with_hist) for o in self.out_hooks.stored])

    def remove_hooks(self):
        for hooks in (self.out_hooks, self.handle):
            if hooks is not None:
                hooks.remove()
        self.out_hooks = self.handle = None

    def __enter__(self):
        self.add_hooks(self.root)
        self.handle = self.root.register_forward_hook(lambda *_: self._record())
        return self

    def __exit__(self, exc_type, exc, tb):
        self.remove_hooks()
        return False

    def before_fit(self):
        self.add_hooks(self.learn.model)

    def after_batch(self):
        if self.training:
            self._record()

    def after_fit(self):
        self.remove_hooks()

    def layer_stats(self, idx):
        return tuple([batch[idx][key] for batch in self.stats] for key in ("mean", "std", "near_zero"))

    def hist(self, idx):
        return torch.stack([batch[idx]["hist"] for batch in self.stats]).T.log1p()
''',
            "fastai's hook_outputs keep the outputs; the statistics are computed when a batch is recorded",
        ),
        Case(
            "HookCallback",
            '''\
from fastai.callback.hook import HookCallback, Hooks, has_params
from fastai.layers import flatten_model


class ActivationStats(HookCallback):
    """Record `activation_stats` of the output of every watched module: `stats[batch][layer]` is a dict."""

    order = -20

    def __init__(self, model=None, modules=None, with_hist=False):
        super().__init__(modules=modules, cpu=True)
        self.root, self.with_hist = model, with_hist
        self.stats, self.root_handle = [], None

    def hook(self, m, i, o):
        return activation_stats(o, self.with_hist)

    def add_hooks(self, model):
        self.remove_hooks()
        watched = self.modules if self.modules is not None else [m for m in flatten_model(model) if has_params(m)]
        self.stats = []
        self.hooks = Hooks(watched, self.hook, self.is_forward, self.detach, self.cpu)

    def remove_hooks(self):
        self._remove()
        if self.root_handle is not None:
            self.root_handle.remove()
            self.root_handle = None

    def __enter__(self):
        self.add_hooks(self.root)
        self.root_handle = self.root.register_forward_hook(lambda *_: self.stats.append(list(self.hooks.stored)))
        return self

    def __exit__(self, exc_type, exc, tb):
        self.remove_hooks()

    def before_fit(self):
        self.add_hooks(self.learn.model)  # not HookCallback.before_fit: it would assign self.modules in an event

    def after_batch(self):
        if self.training:
            self.stats.append(list(self.hooks.stored))

    def after_fit(self):
        self.remove_hooks()

    def layer_stats(self, idx):
        rows = [batch[idx] for batch in self.stats]
        return [r["mean"] for r in rows], [r["std"] for r in rows], [r["near_zero"] for r in rows]

    def hist(self, idx):
        return torch.stack([batch[idx]["hist"] for batch in self.stats]).t().float().log1p()
''',
            "a subclass of fastai's HookCallback (allowed), with flatten_model and has_params for the leaves",
        ),
        Case(
            "dict_by_module",
            '''\
class ActivationStats(Callback):
    """Record `activation_stats` of the output of every watched module: `stats[batch][layer]` is a dict."""

    order = -20

    def __init__(self, model=None, modules=None, with_hist=False):
        super().__init__()
        self.root = model
        self.chosen = None if modules is None else list(modules)
        self.with_hist = with_hist
        self.stats, self.handles, self.latest, self.watched = [], [], {}, []

    def _leaves_with_params(self, model):
        return [m for m in model.modules() if not list(m.children()) and list(m.parameters(recurse=False))]

    def _hook(self, module, inputs, output):
        self.latest[module] = activation_stats(output.detach().cpu(), self.with_hist)

    def _snapshot(self):
        return [self.latest[m] for m in self.watched]

    def add_hooks(self, model):
        self.remove_hooks()
        self.watched = self.chosen if self.chosen is not None else self._leaves_with_params(model)
        self.stats, self.latest = [], {}
        self.handles = [m.register_forward_hook(self._hook) for m in self.watched]

    def remove_hooks(self):
        while self.handles:
            self.handles.pop().remove()

    def __enter__(self):
        self.add_hooks(self.root)
        self.handles.append(self.root.register_forward_hook(lambda mod, inp, out: self.stats.append(self._snapshot())))
        return self

    def __exit__(self, exc_type, exc, tb):
        self.remove_hooks()

    def before_fit(self):
        self.add_hooks(self.learn.model)

    def after_batch(self):
        if not self.training:
            return
        self.stats.append(self._snapshot())

    def after_fit(self):
        self.remove_hooks()

    def layer_stats(self, idx):
        means = [batch[idx]["mean"] for batch in self.stats]
        stds = [batch[idx]["std"] for batch in self.stats]
        near_zeros = [batch[idx]["near_zero"] for batch in self.stats]
        return means, stds, near_zeros

    def hist(self, idx):
        counts = torch.stack([batch[idx]["hist"] for batch in self.stats])  # (n_batches, 40)
        return torch.log1p(counts.float()).transpose(0, 1)
''',
            "one hook method for all modules, the latest results in a dict keyed by module, handles popped off a list",
        ),
        Case(
            "exit_stack",
            f'''\
from contextlib import ExitStack
from functools import partial


class ActivationStats(Callback):
    """Record `activation_stats` of the output of every watched module: `stats[batch][layer]` is a dict."""

    order = -20

    def __init__(self, model=None, modules=None, with_hist=False):
        super().__init__()
        self.root, self.modules, self.with_hist = model, modules, with_hist
        self.stats, self.row, self.cleanup = [], [], ExitStack()

    def _hook(self, i, module, inputs, output):
        self.row[i] = activation_stats(output.detach().cpu(), self.with_hist)

    def add_hooks(self, model):
        self.remove_hooks()
        watched = list(self.modules) if self.modules is not None else {_WATCHED}
        self.stats, self.row = [], [None] * len(watched)
        for i, module in enumerate(watched):
            self.cleanup.callback(module.register_forward_hook(partial(self._hook, i)).remove)

    def remove_hooks(self):
        self.cleanup.close()  # runs every registered remove(); closing twice does nothing

    def __enter__(self):
        self.add_hooks(self.root)
        self.cleanup.callback(self.root.register_forward_hook(lambda *_: self.stats.append(self.row.copy())).remove)
        return self

    def __exit__(self, exc_type, exc, tb):
        self.remove_hooks()

    def before_fit(self):
        self.add_hooks(self.learn.model)

    def after_batch(self):
        if self.training:
            self.stats.append(self.row.copy())

    def after_fit(self):
        self.remove_hooks()

    def layer_stats(self, idx):
        return (
            [s[idx]["mean"] for s in self.stats],
            [s[idx]["std"] for s in self.stats],
            [s[idx]["near_zero"] for s in self.stats],
        )

    def hist(self, idx):
        return torch.stack([s[idx]["hist"].float() for s in self.stats], dim=-1).log1p()
''',
            "contextlib.ExitStack collects the removals, functools.partial binds each layer's index",
        ),
    ],
    "ex4_plots": [
        Case(
            "unpacked_axes",
            '''\
def plot_layer_stats(stats, idx):
    """Mean, std and fraction near zero of watched layer `idx`, against the batch number; returns the Figure."""
    fig, (ax_mean, ax_std, ax_zero) = plt.subplots(1, 3, figsize=(12, 3))
    means, stds, near_zeros = stats.layer_stats(idx)
    ax_mean.plot(means)
    ax_mean.set_title("mean")
    ax_std.plot(stds)
    ax_std.set_title("std")
    ax_zero.plot(near_zeros)
    ax_zero.set_title("% near zero")
    return fig


def color_dim(stats, idx, figsize=(10, 5), ax=None):
    """The histograms of watched layer `idx` as an image, one column per batch; returns the Axes."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    ax.imshow(stats.hist(idx), origin="lower")
    ax.axis("off")
    return ax
''',
            "the three axes unpacked and drawn one by one",
        ),
        Case(
            "explicit_x",
            '''\
def plot_layer_stats(stats, idx):
    """Mean, std and fraction near zero of watched layer `idx`, against the batch number; returns the Figure."""
    fig, axs = plt.subplots(nrows=1, ncols=3, figsize=(12, 3))
    for ax, values, title in zip(axs.flat, stats.layer_stats(idx), ["mean", "std", "% near zero"]):
        values = list(values)
        ax.plot(range(len(values)), values)
        ax.set(title=title, xlabel="batch")
    return fig


def color_dim(stats, idx, figsize=(10, 5), ax=None):
    """The histograms of watched layer `idx` as an image, one column per batch; returns the Axes."""
    ax = ax if ax is not None else plt.subplots(figsize=figsize)[1]
    ax.imshow(stats.hist(idx).detach().cpu().numpy(), origin="lower", aspect="auto", cmap="viridis")
    ax.set_axis_off()
    return ax
''',
            "x given explicitly as range(n); ax.set(...); the image as a numpy array with aspect and cmap; "
            "set_axis_off()",
        ),
        Case(
            "numpy_x",
            '''\
import numpy as np

TITLES = ("mean", "std", "% near zero")


def plot_layer_stats(stats, idx):
    """Mean, std and fraction near zero of watched layer `idx`, against the batch number; returns the Figure."""
    fig, axs = plt.subplots(1, 3, figsize=(12, 3))
    for i, values in enumerate(stats.layer_stats(idx)):
        y = np.asarray(values, dtype=float)
        axs[i].plot(np.arange(len(y)), y)
        axs[i].set_title(TITLES[i])
    return fig


def color_dim(stats, idx, figsize=(10, 5), ax=None):
    """The histograms of watched layer `idx` as an image, one column per batch; returns the Axes."""
    if ax is None:
        ax = plt.figure(figsize=figsize).add_subplot()
    ax.imshow(stats.hist(idx), origin="lower", interpolation="nearest")
    ax.axis("off")
    return ax
''',
            "numpy x values and a titles constant; color_dim makes its axes with figure().add_subplot()",
        ),
        Case(
            "fig_axes",
            '''\
def plot_layer_stats(stats, idx):
    """Mean, std and fraction near zero of watched layer `idx`, against the batch number; returns the Figure."""
    fig, _ = plt.subplots(1, 3, figsize=(12, 3))
    for ax, title, ys in zip(fig.axes, ["mean", "std", "% near zero"], stats.layer_stats(idx)):
        ax.plot(ys)
        ax.set_title(title)
        ax.grid(True)
    fig.tight_layout()
    return fig


def color_dim(stats, idx, figsize=(10, 5), ax=None):
    """The histograms of watched layer `idx` as an image, one column per batch; returns the Axes."""
    if not ax:
        _, ax = plt.subplots(figsize=figsize)
    image = stats.hist(idx)
    ax.imshow(image, origin="lower", cmap="magma")
    ax.set_title(f"layer {idx}")
    ax.axis("off")
    return ax
''',
            "axes from fig.axes, a grid and tight_layout; color_dim with its own colour map and a title",
        ),
        Case(
            "helper_for_one_panel",
            '''\
def _panel(ax, values, title):
    """One line of values against the batch number."""
    ax.plot(list(values))
    ax.set_title(title)
    ax.set_xlabel("batch")


def plot_layer_stats(stats, idx):
    """Mean, std and fraction near zero of watched layer `idx`, against the batch number; returns the Figure."""
    fig, axs = plt.subplots(1, 3, figsize=(12, 3))
    for args in zip(axs, stats.layer_stats(idx), ("mean", "std", "% near zero")):
        _panel(*args)
    return fig


def color_dim(stats, idx, figsize=(10, 5), ax=None):
    """The histograms of watched layer `idx` as an image, one column per batch; returns the Axes."""
    if ax is None:
        ax = plt.subplots(1, 1, figsize=figsize)[1]
    ax.imshow(stats.hist(idx).float(), origin="lower")
    ax.axis("off")
    return ax
''',
            "a helper draws one panel",
        ),
        Case(
            "pyplot_state",
            '''\
def plot_layer_stats(stats, idx):
    """Mean, std and fraction near zero of watched layer `idx`, against the batch number; returns the Figure."""
    fig, axs = plt.subplots(1, 3, figsize=(12, 3))
    for k, (name, values) in enumerate(zip(["mean", "std", "% near zero"], stats.layer_stats(idx))):
        plt.sca(axs[k])  # pyplot's current axes
        plt.plot(values)
        plt.title(name)
    return fig


def color_dim(stats, idx, figsize=(10, 5), ax=None):
    """The histograms of watched layer `idx` as an image, one column per batch; returns the Axes."""
    if ax is None:
        plt.figure(figsize=figsize)
        ax = plt.gca()
    ax.imshow(stats.hist(idx), origin="lower")
    ax.axis("off")
    return ax
''',
            "pyplot's stateful interface (sca, plot, title; figure and gca)",
        ),
    ],
}

_AS_BASE = f'''\
class ActivationStats(Callback):
    """Record `activation_stats` of the output of every watched module: `stats[batch][layer]` is a dict."""

    order = -20

    def __init__(self, model=None, modules=None, with_hist=False):
        super().__init__()
        self.root, self.modules, self.with_hist = model, modules, with_hist
        self.stats, self.handles, self.current = [], [], []

    def add_hooks(self, model):
        self.remove_hooks()
        watched = list(self.modules) if self.modules is not None else {_WATCHED}
        self.stats, self.current = [], [None] * len(watched)

        def make_hook(i):
            def hook(module, inputs, output):
                self.current[i] = activation_stats(output.detach().cpu(), self.with_hist)

            return hook

        for i, module in enumerate(watched):
            self.handles.append(module.register_forward_hook(make_hook(i)))

    def remove_hooks(self):
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def __enter__(self):
        self.add_hooks(self.root)
        self.handles.append(self.root.register_forward_hook(lambda *args: self.stats.append(list(self.current))))
        return self

    def __exit__(self, exc_type, exc, tb):
        self.remove_hooks()

    def before_fit(self):
        self.add_hooks(self.learn.model)

    def after_batch(self):
        if self.training:
            self.stats.append(list(self.current))

    def after_fit(self):
        self.remove_hooks()

    def layer_stats(self, idx):
        rows = [batch[idx] for batch in self.stats]
        return [r["mean"] for r in rows], [r["std"] for r in rows], [r["near_zero"] for r in rows]

    def hist(self, idx):
        return torch.stack([batch[idx]["hist"] for batch in self.stats]).t().float().log1p()
'''


def _as_variant(old: str, new: str) -> str:
    """The reference-like ActivationStats above with one piece replaced (the piece must be there)."""
    assert old in _AS_BASE, old
    return _AS_BASE.replace(old, new)


WRONG: dict[str, list[Case]] = {
    "ex4_layer_stats": [
        Case(
            "absolute_value",
            '''\
def activation_stats(t, with_hist=True):
    """Mean, unbiased std, fraction <= 0.05 and (optionally) the 40-bin histogram on [0, 10] of all of `t`."""
    t = t.detach().float()
    res = {
        "mean": t.mean().item(),
        "std": t.std().item(),
        "near_zero": (t.abs() <= 0.05).sum().item() / t.numel(),
    }
    if with_hist:
        res["hist"] = t.histc(40, 0, 10)
    return res
''',
            "'near zero' read as |a| <= 0.05, so large negative outputs are not counted; fails the visible test",
        ),
        Case(
            "biased_std",
            '''\
def activation_stats(t, with_hist=True):
    """Mean, std, fraction <= 0.05 and (optionally) the 40-bin histogram on [0, 10] of all of `t`."""
    t = t.detach().float()
    res = {"mean": t.mean().item(), "std": t.std(unbiased=False).item(), "near_zero": (t <= 0.05).float().mean().item()}
    if with_hist:
        res["hist"] = t.histc(40, 0, 10)
    return res
''',
            "the biased standard deviation (divides by n, not n - 1); fails the visible test",
        ),
        Case(
            "strictly_below",
            '''\
def activation_stats(t, with_hist=True):
    """Mean, unbiased std, fraction < 0.05 and (optionally) the 40-bin histogram on [0, 10] of all of `t`."""
    t = t.detach().float()
    res = {"mean": t.mean().item(), "std": t.std().item(), "near_zero": (t < 0.05).sum().item() / t.numel()}
    if with_hist:
        res["hist"] = t.histc(40, 0, 10)
    return res
''',
            "< 0.05 instead of <= 0.05: the value 0.05 itself is not counted; fails the visible test",
        ),
        Case(
            "tensors_not_floats",
            '''\
def activation_stats(t, with_hist=True):
    """Mean, unbiased std, fraction <= 0.05 and (optionally) the 40-bin histogram on [0, 10] of all of `t`."""
    t = t.detach().float()
    res = {"mean": t.mean(), "std": t.std(), "near_zero": (t <= 0.05).float().mean()}
    if with_hist:
        res["hist"] = t.histc(40, 0, 10)
    return res
''',
            "0-d tensors instead of Python floats; fails the visible test",
        ),
        Case(
            "no_float_conversion",
            '''\
def activation_stats(t, with_hist=True):
    """Mean, unbiased std, fraction <= 0.05 and (optionally) the 40-bin histogram on [0, 10] of all of `t`."""
    t = t.detach()
    res = {"mean": t.mean().item(), "std": t.std().item(), "near_zero": (t <= 0.05).sum().item() / t.numel()}
    if with_hist:
        res["hist"] = t.histc(40, 0, 10)
    return res
''',
            "no conversion to float: mean() of an integer tensor raises; fails the visible test",
        ),
    ],
    "ex4_activation_stats": [
        Case(
            "every_leaf",
            _as_variant(
                _WATCHED,
                "[m for m in model.modules() if next(m.children(), None) is None]",
            ),
            "watches every leaf module, also those without parameters (ReLU, Flatten); fails the visible tests",
        ),
        Case(
            "root_hook_left",
            _as_variant(
                "self.handles.append(self.root.register_forward_hook(",
                "self.root_handle = (self.root.register_forward_hook(",
            ),
            "the extra hook on the model itself is kept apart and never removed, so it stays registered after the "
            "with block; fails the visible test",
        ),
        Case(
            "records_validation",
            _as_variant(
                """        if self.training:
            self.stats.append(list(self.current))""",
                """        self.stats.append(list(self.current))""",
            ),
            "validation batches are recorded too; fails test2 (16 entries instead of 12)",
        ),
        Case(
            "swallows_exception",
            _as_variant(
                """    def __exit__(self, exc_type, exc, tb):
        self.remove_hooks()""",
                """    def __exit__(self, exc_type, exc, tb):
        self.remove_hooks()
        return True  # done cleaning up""",
            ),
            "__exit__ returns True, which swallows an exception raised in the with block; fails the visible test",
        ),
        Case(
            "shadows_model",
            _as_variant(
                """    def before_fit(self):
        self.add_hooks(self.learn.model)""",
                """    def before_fit(self):
        self.model = self.learn.model
        self.add_hooks(self.model)""",
            ),
            "states: inside fastai events do not assign attributes the learner has (such as model); fastai warns, "
            "and the visible test silences that warning",
        ),
        Case(
            "firing_order",
            '''\
class ActivationStats(Callback):
    """Record `activation_stats` of the output of every watched module: `stats[batch][layer]` is a dict."""

    order = -20

    def __init__(self, model=None, modules=None, with_hist=False):
        super().__init__()
        self.root, self.modules, self.with_hist = model, modules, with_hist
        self.stats, self.handles, self.pending = [], [], []

    def _hook(self, module, inputs, output):
        self.pending.append(activation_stats(output.detach().cpu(), self.with_hist))  # in the order they fire

    def _flush(self):
        self.stats.append(self.pending)
        self.pending = []

    def add_hooks(self, model):
        self.remove_hooks()
        watched = list(self.modules) if self.modules is not None else [
            m for m in model.modules() if next(m.children(), None) is None and next(m.parameters(), None) is not None
        ]
        self.stats, self.pending = [], []
        self.handles = [m.register_forward_hook(self._hook) for m in watched]

    def remove_hooks(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __enter__(self):
        self.add_hooks(self.root)
        self.handles.append(self.root.register_forward_hook(lambda *args: self._flush()))
        return self

    def __exit__(self, exc_type, exc, tb):
        self.remove_hooks()

    def before_fit(self):
        self.add_hooks(self.learn.model)

    def after_batch(self):
        if self.training:
            self._flush()
        else:
            self.pending = []

    def after_fit(self):
        self.remove_hooks()

    def layer_stats(self, idx):
        rows = [batch[idx] for batch in self.stats]
        return [r["mean"] for r in rows], [r["std"] for r in rows], [r["near_zero"] for r in rows]

    def hist(self, idx):
        return torch.stack([batch[idx]["hist"] for batch in self.stats]).t().float().log1p()
''',
            "states: index idx counts in the list of watched modules; here a batch's entries are in the order the "
            "hooks fire, so modules=[b, a] (or a module used twice) gives them in another order or more of them, "
            "and the visible tests pass modules in execution order only",
        ),
        Case(
            "stats_never_reset",
            _as_variant(
                """        self.stats, self.current = [], [None] * len(watched)""",
                """        self.current = [None] * len(watched)""",
            ),
            "states: add_hooks starts a fresh self.stats (its docstring); here a second fit or with block appends "
            "to the first one's records, and the visible tests hook each object once",
        ),
    ],
    "ex4_plots": [
        Case(
            "default_origin",
            '''\
def plot_layer_stats(stats, idx):
    """Mean, std and fraction near zero of watched layer `idx`, against the batch number; returns the Figure."""
    fig, axs = plt.subplots(1, 3, figsize=(12, 3))
    for values, ax, title in zip(stats.layer_stats(idx), axs, ("mean", "std", "% near zero")):
        ax.plot(list(values))
        ax.set_title(title)
    return fig


def color_dim(stats, idx, figsize=(10, 5), ax=None):
    """The histograms of watched layer `idx` as an image, one column per batch; returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    ax.imshow(stats.hist(idx))
    ax.axis("off")
    return ax
''',
            "imshow's default origin puts the bin of the smallest values at the top; fails the visible test",
        ),
        Case(
            "batches_from_one",
            '''\
def plot_layer_stats(stats, idx):
    """Mean, std and fraction near zero of watched layer `idx`, against the batch number; returns the Figure."""
    fig, axs = plt.subplots(1, 3, figsize=(12, 3))
    for values, ax, title in zip(stats.layer_stats(idx), axs, ("mean", "std", "% near zero")):
        values = list(values)
        ax.plot(range(1, len(values) + 1), values)  # batch 1, 2, ...
        ax.set_title(title)
    return fig


def color_dim(stats, idx, figsize=(10, 5), ax=None):
    """The histograms of watched layer `idx` as an image, one column per batch; returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    ax.imshow(stats.hist(idx), origin="lower")
    ax.axis("off")
    return ax
''',
            "batches numbered from 1 instead of the batch number 0, 1, ...; fails the visible test",
        ),
        Case(
            "ignores_given_ax",
            '''\
def plot_layer_stats(stats, idx):
    """Mean, std and fraction near zero of watched layer `idx`, against the batch number; returns the Figure."""
    fig, axs = plt.subplots(1, 3, figsize=(12, 3))
    for values, ax, title in zip(stats.layer_stats(idx), axs, ("mean", "std", "% near zero")):
        ax.plot(list(values))
        ax.set_title(title)
    return fig


def color_dim(stats, idx, figsize=(10, 5), ax=None):
    """The histograms of watched layer `idx` as an image, one column per batch; returns the Axes."""
    _, ax = plt.subplots(figsize=figsize)
    ax.imshow(stats.hist(idx), origin="lower")
    ax.axis("off")
    return ax
''',
            "always makes a new figure, ignoring the ax it was given; fails the visible test",
        ),
        Case(
            "own_default_size",
            '''\
def plot_layer_stats(stats, idx):
    """Mean, std and fraction near zero of watched layer `idx`, against the batch number; returns the Figure."""
    fig, axs = plt.subplots(1, 3, figsize=(12, 3))
    for values, ax, title in zip(stats.layer_stats(idx), axs, ("mean", "std", "% near zero")):
        ax.plot(list(values))
        ax.set_title(title)
    return fig


def color_dim(stats, idx, figsize=None, ax=None):
    """The histograms of watched layer `idx` as an image, one column per batch; returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize or (12, 4))
    ax.imshow(stats.hist(idx), origin="lower")
    ax.axis("off")
    return ax
''',
            "a different default figure size, (12, 4) instead of (10, 5); fails the visible test",
        ),
        Case(
            "stacked_vertically",
            '''\
def plot_layer_stats(stats, idx):
    """Mean, std and fraction near zero of watched layer `idx`, against the batch number; returns the Figure."""
    fig, axs = plt.subplots(3, 1, figsize=(6, 8))
    for values, ax, title in zip(stats.layer_stats(idx), axs, ("mean", "std", "% near zero")):
        ax.plot(list(values))
        ax.set_title(title)
    return fig


def color_dim(stats, idx, figsize=(10, 5), ax=None):
    """The histograms of watched layer `idx` as an image, one column per batch; returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    ax.imshow(stats.hist(idx), origin="lower")
    ax.axis("off")
    return ax
''',
            "states: three axes side by side from plt.subplots(1, 3, figsize=(12, 3)); these are stacked in a column "
            "of another size, and the visible test only counts the axes",
        ),
        Case(
            "stats_own_methods",
            '''\
def plot_layer_stats(stats, idx):
    """Mean, std and fraction near zero of watched layer `idx`, against the batch number; returns the Figure."""
    stats.plot_layer_stats(idx)
    return plt.gcf()


def color_dim(stats, idx, figsize=(10, 5), ax=None):
    """The histograms of watched layer `idx` as an image, one column per batch; returns the Axes."""
    return stats.color_dim(idx, figsize=figsize, ax=ax)
''',
            "calls the stats object's own plotting methods (a rule break; fastai's have them, the test's fake and "
            "the student's class do not); fails the visible test",
        ),
    ],
}
