"""Wrong answers for ex4 (04_activation_stats): each must cost exactly its own task."""

WRONG = {
    # "near zero" read as |a| <= 0.05: large negative outputs (switched off by the next ReLU) are not counted
    "ex4_layer_stats": '''\
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
    # every leaf module is watched, also those without parameters (ReLU, Flatten, pooling)
    "ex4_activation_stats": '''\
class ActivationStats(Callback):
    """Record `activation_stats` of the output of every watched module: `stats[batch][layer]` is a dict."""

    order = -20

    def __init__(self, model=None, modules=None, with_hist=False):
        super().__init__()
        self.root, self.modules, self.with_hist = model, modules, with_hist
        self.stats, self.handles, self.current = [], [], []

    def add_hooks(self, model):
        self.remove_hooks()
        watched = list(self.modules) if self.modules is not None else [
            m for m in model.modules() if next(m.children(), None) is None
        ]
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
''',
    # imshow's default origin puts the bin of the smallest values at the top
    "ex4_plots": '''\
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
}
