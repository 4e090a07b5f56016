"""Cases for ex6 (06_batchnorm): BatchNorm2d, conv_bn and simple_cnn_bn, the final model, other normalizations."""

from . import Case

_BN_INIT = """\
    def __init__(self, nf, eps=1e-5, momentum=0.1):
        super().__init__()
        self.nf, self.eps, self.momentum = nf, eps, momentum
        self.weight = nn.Parameter(torch.ones(nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        self.register_buffer("running_mean", torch.zeros(nf))
        self.register_buffer("running_var", torch.ones(nf))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
"""

_BN_REPR = """
    def extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}, momentum={self.momentum}"
"""

# A 1cycle scheduler written into the ex6_final cell itself: notebook 6 does not define the one from notebook 5.
_SCHEDULER = '''\
from fastai.callback.core import Callback


def cos_anneal(start, end, pos):
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def one_cycle(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """Learning rates and momentums of the n_steps training batches of a 1cycle run (notebook 5)."""

    def two_phases(start, middle, end, pos):
        if pos < pct_start:
            return cos_anneal(start, middle, pos / pct_start)
        return cos_anneal(middle, end, (pos - pct_start) / (1 - pct_start))

    positions = [i / n_steps for i in range(n_steps)]
    lrs = [two_phases(lr_max / div, lr_max, lr_max / div_final, p) for p in positions]
    return lrs, [two_phases(*moms, p) for p in positions]


class OneCycleScheduler(Callback):
    """Set the optimizer's 'lr' and 'mom' for each training batch along the 1cycle schedule; record them."""

    order, run_valid = 60, False

    def __init__(self, lr_max, **kwargs):
        super().__init__()
        self.lr_max, self.kwargs = lr_max, kwargs
        self.lrs, self.moms, self.plan = [], [], ([], [])

    def before_fit(self):
        self.plan = one_cycle(self.n_epoch * len(self.dls.train), self.lr_max, **self.kwargs)
        self.lrs.clear()
        self.moms.clear()

    def before_batch(self):
        lr, mom = self.plan[0][self.train_iter], self.plan[1][self.train_iter]
        self.opt.set_hyper("lr", lr)
        self.opt.set_hyper("mom", mom)
        self.lrs.append(lr)
        self.moms.append(mom)

'''

PEERS: dict[str, list[Case]] = {
    "ex6_batchnorm": [
        Case(
            "var_mean",
            '''\
class BatchNorm2d(nn.Module):
    """Batch normalization of each channel of an (N, nf, H, W) input, as nn.BatchNorm2d(nf) does it."""

'''
            + _BN_INIT
            + '''
    def forward(self, x):
        """(N, nf, H, W) -> (N, nf, H, W)."""
        if self.training:
            var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)  # biased, for normalizing
            m = x.numel() / x.shape[1]
            if m < 2:
                raise ValueError(f"Expected more than 1 value per channel when training, got input {tuple(x.shape)}")
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * m / (m - 1))
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        shape = (1, -1, 1, 1)
        x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return self.weight.view(shape) * x_hat + self.bias.view(shape)
'''
            + _BN_REPR,
            "torch.var_mean with unbiased=False, running statistics updated with mul_ and add_",
        ),
        Case(
            "var_keepdim",
            '''\
class BatchNorm2d(nn.Module):
    """Batch normalization of each channel of an (N, nf, H, W) input, as nn.BatchNorm2d(nf) does it."""

'''
            + _BN_INIT
            + '''
    def forward(self, x):
        """(N, nf, H, W) -> (N, nf, H, W)."""
        if self.training:
            if x.shape[0] * x.shape[2] * x.shape[3] == 1:
                raise ValueError("batch statistics need more than one value per channel")
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=False)
            with torch.no_grad():
                unbiased = x.var(dim=(0, 2, 3), unbiased=True)
                self.running_mean.copy_((1 - self.momentum) * self.running_mean + self.momentum * mean.flatten())
                self.running_var.copy_((1 - self.momentum) * self.running_var + self.momentum * unbiased)
                self.num_batches_tracked.add_(1)
        else:
            mean = self.running_mean[None, :, None, None]
            var = self.running_var[None, :, None, None]
        return (x - mean) / (var + self.eps).sqrt() * self.weight[:, None, None] + self.bias[:, None, None]
'''
            + _BN_REPR,
            "Tensor.var with unbiased=False for normalizing and unbiased=True for the running variance",
        ),
        Case(
            "transpose_flatten",
            '''\
class BatchNorm2d(nn.Module):
    """Batch normalization of each channel of an (N, nf, H, W) input, as nn.BatchNorm2d(nf) does it."""

'''
            + _BN_INIT
            + '''
    def forward(self, x):
        """(N, nf, H, W) -> (N, nf, H, W)."""
        if self.training:
            per_channel = x.transpose(0, 1).flatten(1)  # (nf, N*H*W): one row per channel
            if per_channel.shape[1] < 2:
                raise ValueError(f"need at least 2 values per channel to train, got {per_channel.shape[1]}")
            mean = per_channel.mean(1)
            var = per_channel.var(1, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(per_channel.var(1), self.momentum)  # unbiased
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight / torch.sqrt(var + self.eps)  # (nf,)
        shift = self.bias - mean * scale
        return x * scale[:, None, None] + shift[:, None, None]
''',
            "per-channel rows from x.transpose(0, 1).flatten(1); the affine folded into one scale and shift; "
            "no extra_repr",
        ),
        Case(
            "permute_reshape_std",
            '''\
class BatchNorm2d(nn.Module):
    """Batch normalization of each channel of an (N, nf, H, W) input, as nn.BatchNorm2d(nf) does it."""

    def __init__(self, nf, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        self.register_buffer("running_mean", torch.zeros(nf))
        self.register_buffer("running_var", torch.ones(nf))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    @staticmethod
    def _channels(t):
        """(nf,) -> (1, nf, 1, 1), to broadcast over (N, nf, H, W)."""
        return t.reshape(1, -1, 1, 1)

    @torch.no_grad()
    def _update(self, mean, var, m):
        self.running_mean.mul_(1 - self.momentum).add_(mean, alpha=self.momentum)
        self.running_var.mul_(1 - self.momentum).add_(var * (m / (m - 1)), alpha=self.momentum)
        self.num_batches_tracked += 1

    def forward(self, x):
        """(N, nf, H, W) -> (N, nf, H, W)."""
        if self.training:
            flat = x.permute(1, 0, 2, 3).reshape(x.shape[1], -1)
            if flat.shape[1] <= 1:
                raise ValueError("Expected more than 1 value per channel when training")
            mean, var = flat.mean(dim=1), flat.std(dim=1, unbiased=False) ** 2
            self._update(mean, var, flat.shape[1])
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - self._channels(mean)) / (self._channels(var) + self.eps) ** 0.5
        return self._channels(self.weight) * x_hat + self._channels(self.bias)
'''
            + _BN_REPR,
            "permute and reshape per channel, the variance as a squared biased std, a @torch.no_grad() helper "
            "for the running statistics",
        ),
        Case(
            "second_moment",
            '''\
class BatchNorm2d(nn.Module):
    """Batch normalization of each channel of an (N, nf, H, W) input, as nn.BatchNorm2d(nf) does it."""

'''
            + _BN_INIT
            + '''
    def forward(self, x):
        """(N, nf, H, W) -> (N, nf, H, W)."""
        if self.training:
            m = x.shape[0] * x.shape[2] * x.shape[3]
            if m == 1:
                raise ValueError(f"one value per channel: cannot normalize {tuple(x.shape)} with batch statistics")
            mean = torch.einsum("nchw->c", x) / m
            var = torch.einsum("nchw,nchw->c", x, x) / m - mean**2  # E[x^2] - E[x]^2, biased
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * m / (m - 1), self.momentum)
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        inv_std = torch.rsqrt(var + self.eps)
        return torch.einsum("nchw,c->nchw", x - mean[:, None, None], inv_std * self.weight) + self.bias[:, None, None]
'''
            + _BN_REPR,
            "einsum sums, the variance as E[x^2] - E[x]^2",
        ),
        Case(
            "functional_helper",
            '''\
def batch_norm_2d(x, mean, var, weight, bias, eps):
    """Normalize (N, C, H, W) with per-channel mean and variance, then scale and shift."""
    c = (1, -1, 1, 1)
    return (x - mean.view(c)) * (var.view(c) + eps).rsqrt() * weight.view(c) + bias.view(c)


class BatchNorm2d(nn.Module):
    """Batch normalization of each channel of an (N, nf, H, W) input, as nn.BatchNorm2d(nf) does it."""

    def __init__(self, nf, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        for name, value in (("running_mean", torch.zeros(nf)), ("running_var", torch.ones(nf))):
            self.register_buffer(name, value)
        self.register_buffer("num_batches_tracked", torch.tensor(0))  # int64, like torch's

    def forward(self, x):
        """(N, nf, H, W) -> (N, nf, H, W)."""
        if not self.training:
            return batch_norm_2d(x, self.running_mean, self.running_var, self.weight, self.bias, self.eps)
        dims = [0, 2, 3]
        mean = x.mean(dims)
        var = ((x - mean.view(1, -1, 1, 1)) ** 2).mean(dims)
        n = x.numel() // x.size(1)
        if n < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(x.shape)}")
        with torch.no_grad():
            self.running_mean.copy_(self.running_mean * (1 - self.momentum) + mean * self.momentum)
            self.running_var.copy_(self.running_var * (1 - self.momentum) + var * n / (n - 1) * self.momentum)
            self.num_batches_tracked += 1
        return batch_norm_2d(x, mean, var, self.weight, self.bias, self.eps)
'''
            + _BN_REPR,
            "a module-level helper does the normalization for both modes; the buffers registered in a loop; "
            "an early return for evaluation",
        ),
        Case(
            "data_updates",
            '''\
class BatchNorm2d(nn.Module):
    """Batch normalization of each channel of an (N, nf, H, W) input, as nn.BatchNorm2d(nf) does it."""

'''
            + _BN_INIT
            + '''
    def forward(self, x):
        """(N, nf, H, W) -> (N, nf, H, W)."""
        if self.training:
            if x.numel() == x.size(1):
                raise ValueError("BatchNorm2d needs more than one value per channel in training mode")
            mu = x.mean((0, 2, 3), keepdim=True)
            diff = x - mu
            sigma2 = diff.pow(2).mean((0, 2, 3), keepdim=True)
            m = x.numel() / x.size(1)
            with torch.no_grad():
                a = self.momentum
                self.running_mean *= 1 - a
                self.running_mean += a * mu.squeeze()
                self.running_var *= 1 - a
                self.running_var += a * sigma2.squeeze() * m / (m - 1)
                self.num_batches_tracked += 1
        else:
            diff = x - self.running_mean.view(1, -1, 1, 1)
            sigma2 = self.running_var.view(1, -1, 1, 1)
        y = diff / torch.sqrt(sigma2 + self.eps)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
'''
            + _BN_REPR,
            "in-place *= and += on the buffers under no_grad, pow(2) for the squared deviations",
        ),
    ],
    "ex6_conv_bn": [
        Case(
            "spliced_relu",
            '''\
def conv_bn(ni, nf, ks=3, act=True):
    """Conv2d(stride 2, padding ks//2) -> BatchNorm2d -> ReLU (no ReLU when act is False)."""
    return nn.Sequential(nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2), BatchNorm2d(nf), *([nn.ReLU()] * act))


def simple_cnn_bn():
    """The full-MNIST CNN 1-8(5x5)-16-32-64-10 with batch normalization in every block: 30,542 parameters."""
    return nn.Sequential(
        conv_bn(1, 8, ks=5), conv_bn(8, 16), conv_bn(16, 32), conv_bn(32, 64), conv_bn(64, 10, act=False), nn.Flatten()
    )
''',
            "the ReLU spliced in from [nn.ReLU()] * act (a list of one or none)",
        ),
        Case(
            "channel_list",
            '''\
def conv_bn(ni, nf, ks=3, act=True):
    """Conv2d(stride 2, padding ks//2) -> BatchNorm2d -> ReLU (no ReLU when act is False)."""
    layers = [nn.Conv2d(ni, nf, kernel_size=ks, stride=2, padding=ks // 2), BatchNorm2d(nf)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def simple_cnn_bn():
    """The full-MNIST CNN 1-8(5x5)-16-32-64-10 with batch normalization in every block: 30,542 parameters."""
    chans = [1, 8, 16, 32, 64, 10]
    blocks = [
        conv_bn(chans[i], chans[i + 1], ks=5 if i == 0 else 3, act=i < len(chans) - 2) for i in range(len(chans) - 1)
    ]
    return nn.Sequential(*blocks, nn.Flatten())
''',
            "the blocks generated from a channel list (5x5 first, no ReLU last)",
        ),
        Case(
            "named_layers",
            '''\
from collections import OrderedDict


def conv_bn(ni, nf, ks=3, act=True):
    """Conv2d(stride 2, padding ks//2) -> BatchNorm2d -> ReLU (no ReLU when act is False)."""
    parts = OrderedDict(conv=nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2), bn=BatchNorm2d(nf))
    if act:
        parts["relu"] = nn.ReLU()
    return nn.Sequential(parts)


def simple_cnn_bn():
    """The full-MNIST CNN 1-8(5x5)-16-32-64-10 with batch normalization in every block: 30,542 parameters."""
    return nn.Sequential(
        OrderedDict(
            b1=conv_bn(1, 8, ks=5),
            b2=conv_bn(8, 16),
            b3=conv_bn(16, 32),
            b4=conv_bn(32, 64),
            head=conv_bn(64, 10, act=False),
            flat=nn.Flatten(),
        )
    )
''',
            "named layers through OrderedDicts",
        ),
        Case(
            "append",
            '''\
def conv_bn(ni: int, nf: int, ks: int = 3, act: bool = True) -> nn.Sequential:
    """Conv2d(stride 2, padding ks//2) -> BatchNorm2d -> ReLU (no ReLU when act is False)."""
    block = nn.Sequential()
    block.append(nn.Conv2d(in_channels=ni, out_channels=nf, kernel_size=ks, stride=2, padding=ks // 2, bias=True))
    block.append(BatchNorm2d(nf))
    if act:
        block.append(nn.ReLU())
    return block


def simple_cnn_bn() -> nn.Sequential:
    """The full-MNIST CNN 1-8(5x5)-16-32-64-10 with batch normalization in every block: 30,542 parameters."""
    model = nn.Sequential(conv_bn(1, 8, ks=5))
    for ni, nf in [(8, 16), (16, 32), (32, 64)]:
        model.append(conv_bn(ni, nf))
    model.append(conv_bn(64, 10, act=False))
    model.append(nn.Flatten())
    return model
''',
            "Sequentials filled with append, every Conv2d argument as a keyword",
        ),
        Case(
            "spec_table",
            '''\
SPEC = [(1, 8, 5), (8, 16, 3), (16, 32, 3), (32, 64, 3), (64, 10, 3)]  # (ni, nf, ks) of each block


def conv_bn(ni, nf, ks=3, act=True):
    """Conv2d(stride 2, padding ks//2) -> BatchNorm2d -> ReLU (no ReLU when act is False)."""
    conv = nn.Conv2d(ni, nf, ks, 2, ks // 2)
    return nn.Sequential(conv, BatchNorm2d(nf), nn.ReLU()) if act else nn.Sequential(conv, BatchNorm2d(nf))


def simple_cnn_bn():
    """The full-MNIST CNN 1-8(5x5)-16-32-64-10 with batch normalization in every block: 30,542 parameters."""
    *hidden, (ni, nf, ks) = SPEC
    return nn.Sequential(*(conv_bn(a, b, k) for a, b, k in hidden), conv_bn(ni, nf, ks, act=False), nn.Flatten())
''',
            "a table of (ni, nf, ks), positional Conv2d arguments, the last block unpacked from the table",
        ),
        Case(
            "torch_flatten_module",
            '''\
def conv_bn(ni, nf, ks=3, act=True):
    """Conv2d(stride 2, padding ks//2) -> BatchNorm2d -> ReLU (no ReLU when act is False)."""
    layers = [nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2), BatchNorm2d(nf)]
    return nn.Sequential(*layers, nn.ReLU()) if act else nn.Sequential(*layers)


def simple_cnn_bn():
    """The full-MNIST CNN 1-8(5x5)-16-32-64-10 with batch normalization in every block: 30,542 parameters."""
    hidden = [conv_bn(1, 8, ks=5)] + [conv_bn(2**i, 2 ** (i + 1)) for i in range(3, 6)]  # 8-16, 16-32, 32-64
    return nn.Sequential(*hidden, conv_bn(64, 10, act=False), nn.Flatten(start_dim=1))
''',
            "the doubling channel counts computed as powers of two; Flatten's start_dim spelled out",
        ),
    ],
    "ex6_final": [
        Case(
            "named_constants",
            """\
# Create `learn` and train it here.
SEED, BATCH_SIZE, EPOCHS, LR_MAX = 42, 512, 5, 0.1
set_seed(SEED, reproducible=True)
dls = mnist_dls(BATCH_SIZE)
learn = Learner(dls, simple_cnn_bn(), loss_func=F.cross_entropy, metrics=accuracy)
learn.fit_one_cycle(EPOCHS, LR_MAX)
""",
            "seed, batch size, epochs and peak learning rate as named constants",
        ),
        Case(
            "scheduler_passed_to_fit",
            _SCHEDULER
            + """
set_seed(42, reproducible=True)
dls = mnist_dls(512)
sched = OneCycleScheduler(0.1)
learn = Learner(dls, simple_cnn_bn(), loss_func=F.cross_entropy, metrics=accuracy)
learn.fit(5, cbs=sched)
""",
            "the student's own 1cycle scheduler (pasted from notebook 5) created first, then learn.fit(5, cbs=sched)",
        ),
        Case(
            "scheduler_in_learner",
            _SCHEDULER
            + """
set_seed(42, reproducible=True)
dls = mnist_dls(512)
learn = Learner(dls, simple_cnn_bn(), loss_func=F.cross_entropy, metrics=accuracy, cbs=OneCycleScheduler(lr_max=0.1))
learn.fit(5)
""",
            "the student's own 1cycle scheduler given to Learner(..., cbs=...), then a plain learn.fit(5)",
        ),
        Case(
            "keywords",
            """\
set_seed(42, reproducible=True)
learn = Learner(dls=mnist_dls(bs=512), model=simple_cnn_bn(), loss_func=F.cross_entropy, metrics=[accuracy])
learn.fit_one_cycle(n_epoch=5, lr_max=0.1)
""",
            "keyword arguments everywhere, the DataLoaders made inline",
        ),
        Case(
            "defaults_spelled_out",
            """\
set_seed(42, reproducible=True)
dls = mnist_dls(512)
model = simple_cnn_bn()
learn = Learner(dls, model, loss_func=F.cross_entropy, metrics=accuracy)
with learn.no_bar():
    learn.fit_one_cycle(5, 0.1, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95))
print(f"accuracy after 5 epochs: {learn.recorder.values[-1][2]:.2%}")
""",
            "fit_one_cycle's defaults written out, no progress bar, the accuracy printed",
        ),
    ],
    "ex6_norm_variants": [
        Case(
            "dict_dispatch",
            '''\
NORMS = {
    "batch": lambda nf: BatchNorm2d(nf),
    "layer": lambda nf: nn.GroupNorm(1, nf),
    "group": lambda nf: nn.GroupNorm(max(g for g in (1, 2, 4, 8) if nf % g == 0), nf),
    "instance": lambda nf: nn.InstanceNorm2d(nf, affine=True),
}


def make_norm(kind, nf):
    """A layer normalizing (N, nf, H, W) inputs: kind is 'batch', 'layer', 'group' or 'instance'."""
    if kind not in NORMS:
        raise ValueError(f"unknown normalization {kind!r}; choose one of {sorted(NORMS)}")
    return NORMS[kind](nf)


def conv_norm(ni, nf, ks=3, act=True, kind="batch", act_first=False):
    """Conv2d(stride 2, padding ks//2) -> norm -> ReLU, or Conv2d -> ReLU -> norm when act_first."""
    conv, norm = nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2), make_norm(kind, nf)
    if not act:
        return nn.Sequential(conv, norm)
    return nn.Sequential(conv, nn.ReLU(), norm) if act_first else nn.Sequential(conv, norm, nn.ReLU())
''',
            "a dict of constructors, max over the divisors for the group count",
        ),
        Case(
            "match_statement",
            '''\
def make_norm(kind, nf):
    """A layer normalizing (N, nf, H, W) inputs: kind is 'batch', 'layer', 'group' or 'instance'."""
    match kind:
        case "batch":
            return BatchNorm2d(nf)
        case "layer":
            return nn.GroupNorm(num_groups=1, num_channels=nf)
        case "group":
            return nn.GroupNorm(num_groups=math.gcd(nf, 8), num_channels=nf)  # the largest of 8, 4, 2, 1 dividing nf
        case "instance":
            return nn.InstanceNorm2d(nf, affine=True)
        case _:
            raise ValueError(f"make_norm: kind={kind!r} is not one of batch, layer, group, instance")


def conv_norm(ni, nf, ks=3, act=True, kind="batch", act_first=False):
    """Conv2d(stride 2, padding ks//2) -> norm -> ReLU, or Conv2d -> ReLU -> norm when act_first."""
    layers = [nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2), make_norm(kind, nf)]
    if act:
        layers.insert(1 if act_first else 2, nn.ReLU())
    return nn.Sequential(*layers)
''',
            "a match statement, the group count as gcd(nf, 8), the ReLU inserted at position 1 or 2",
        ),
        Case(
            "loop_break",
            '''\
def make_norm(kind, nf):
    """A layer normalizing (N, nf, H, W) inputs: kind is 'batch', 'layer', 'group' or 'instance'."""
    if kind == "group":
        for groups in (8, 4, 2, 1):
            if nf % groups == 0:
                break
        return nn.GroupNorm(groups, nf)
    elif kind == "layer":
        return nn.GroupNorm(1, nf)
    elif kind == "instance":
        return nn.InstanceNorm2d(nf, affine=True)
    elif kind == "batch":
        return BatchNorm2d(nf)
    else:
        raise ValueError("kind must be batch, layer, group or instance, not " + repr(kind))


def conv_norm(ni, nf, ks=3, act=True, kind="batch", act_first=False):
    """Conv2d(stride 2, padding ks//2) -> norm -> ReLU, or Conv2d -> ReLU -> norm when act_first."""
    block = nn.Sequential(nn.Conv2d(ni, nf, kernel_size=ks, stride=2, padding=ks // 2))
    tail = [make_norm(kind, nf)]
    if act:
        tail = [nn.ReLU()] + tail if act_first else tail + [nn.ReLU()]
    for layer in tail:
        block.append(layer)
    return block
''',
            "a for/break search for the groups, an if/elif chain, the tail of the block built as a list",
        ),
        Case(
            "lowest_bit",
            '''\
def make_norm(kind: str, nf: int) -> nn.Module:
    """A layer normalizing (N, nf, H, W) inputs: kind is 'batch', 'layer', 'group' or 'instance'."""
    kinds = ("batch", "layer", "group", "instance")
    if kind not in kinds:
        raise ValueError(f"{kind} is not a normalization kind; use one of {kinds}")
    if kind == "batch":
        return BatchNorm2d(nf)
    if kind == "instance":
        return nn.InstanceNorm2d(num_features=nf, affine=True)
    groups = 1 if kind == "layer" else min(nf & -nf, 8)  # nf & -nf: the largest power of two dividing nf
    return nn.GroupNorm(groups, nf)


def conv_norm(ni, nf, ks=3, act=True, kind="batch", act_first=False):
    """Conv2d(stride 2, padding ks//2) -> norm -> ReLU, or Conv2d -> ReLU -> norm when act_first."""
    order = ["norm"] if not act else ["relu", "norm"] if act_first else ["norm", "relu"]
    make = {"norm": lambda: make_norm(kind, nf), "relu": nn.ReLU}
    return nn.Sequential(nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2), *(make[name]() for name in order))
''',
            "group count from the lowest set bit of nf, the block's order as a list of names",
        ),
        Case(
            "conv_bn_reused",
            '''\
def make_norm(kind, nf):
    """A layer normalizing (N, nf, H, W) inputs: kind is 'batch', 'layer', 'group' or 'instance'."""
    if kind == "batch":
        return BatchNorm2d(nf)
    if kind in ("layer", "group"):
        groups = 1 if kind == "layer" else next(g for g in (8, 4, 2, 1) if nf % g == 0)
        return nn.GroupNorm(groups, nf)
    if kind == "instance":
        return nn.InstanceNorm2d(nf, affine=True)
    raise ValueError(f"unsupported kind {kind!r}")


def conv_norm(ni, nf, ks=3, act=True, kind="batch", act_first=False):
    """Conv2d(stride 2, padding ks//2) -> norm -> ReLU, or Conv2d -> ReLU -> norm when act_first."""
    block = conv_bn(ni, nf, ks=ks, act=act)  # Conv2d, BatchNorm2d(, ReLU)
    block[1] = make_norm(kind, nf)
    if act and act_first:
        block[1], block[2] = block[2], block[1]
    return block
''',
            "conv_bn's block reused: its batch norm replaced, ReLU and norm swapped for act_first",
        ),
        Case(
            "functools_partial",
            '''\
from functools import partial


def _largest_group(nf, choices=(8, 4, 2, 1)):
    return next(g for g in choices if nf % g == 0)


def make_norm(kind, nf):
    """A layer normalizing (N, nf, H, W) inputs: kind is 'batch', 'layer', 'group' or 'instance'."""
    factories = {
        "batch": BatchNorm2d,
        "layer": partial(nn.GroupNorm, 1),
        "group": lambda n: nn.GroupNorm(_largest_group(n), n),
        "instance": partial(nn.InstanceNorm2d, affine=True),
    }
    try:
        factory = factories[kind]
    except KeyError:
        raise ValueError(f"no normalization called {kind!r}") from None
    return factory(nf)


def conv_norm(ni, nf, ks=3, act=True, kind="batch", act_first=False):
    """Conv2d(stride 2, padding ks//2) -> norm -> ReLU, or Conv2d -> ReLU -> norm when act_first."""
    conv = nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2)
    norm = make_norm(kind, nf)
    if not act:
        return nn.Sequential(conv, norm)
    pair = (nn.ReLU(), norm) if act_first else (norm, nn.ReLU())
    return nn.Sequential(conv, *pair)
''',
            "functools.partial constructors in a dict, KeyError turned into ValueError",
        ),
    ],
}

_BN_WRONG_BASE = (
    '''\
class BatchNorm2d(nn.Module):
    """Batch normalization of each channel of an (N, nf, H, W) input, as nn.BatchNorm2d(nf) does it."""

'''
    + _BN_INIT
    + '''
    def forward(self, x):
        """(N, nf, H, W) -> (N, nf, H, W)."""
        if self.training:
            m = x.numel() // x.shape[1]
            mean = x.mean(dim=(0, 2, 3))
            var = ((x - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * m / (m - 1), self.momentum)
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + self.eps)
        return self.weight.view(1, -1, 1, 1) * x_hat + self.bias.view(1, -1, 1, 1)
'''
    + _BN_REPR
)


def _bn_variant(old: str, new: str) -> str:
    """The reference-like BatchNorm2d above with one piece replaced (the piece must be there)."""
    assert old in _BN_WRONG_BASE, old
    return _BN_WRONG_BASE.replace(old, new)


_FINAL_WRONG = """\
set_seed(42, reproducible=True)
dls = mnist_dls(512)
learn = Learner(dls, simple_cnn_bn(), loss_func=F.cross_entropy, metrics=accuracy)
learn.fit_one_cycle(5, 0.1)
"""

_NORM_WRONG_BASE = '''\
def make_norm(kind, nf):
    """A layer normalizing (N, nf, H, W) inputs: kind is 'batch', 'layer', 'group' or 'instance'."""
    if kind == "batch":
        return BatchNorm2d(nf)
    if kind == "layer":
        return nn.GroupNorm(1, nf)
    if kind == "group":
        return nn.GroupNorm(next(g for g in (8, 4, 2, 1) if nf % g == 0), nf)
    if kind == "instance":
        return nn.InstanceNorm2d(nf, affine=True)
    raise ValueError(f"kind must be 'batch', 'layer', 'group' or 'instance', got {kind!r}")


def conv_norm(ni, nf, ks=3, act=True, kind="batch", act_first=False):
    """Conv2d(stride 2, padding ks//2) -> norm -> ReLU, or Conv2d -> ReLU -> norm when act_first."""
    layers = [nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2)]
    norm = make_norm(kind, nf)
    if not act:
        layers.append(norm)
    elif act_first:
        layers += [nn.ReLU(), norm]
    else:
        layers += [norm, nn.ReLU()]
    return nn.Sequential(*layers)
'''


def _variant(base: str, old: str, new: str) -> str:
    """`base` with one piece replaced (the piece must be there)."""
    assert old in base, old
    return base.replace(old, new)


WRONG: dict[str, list[Case]] = {
    "ex6_batchnorm": [
        Case(
            "biased_running_var",
            _bn_variant(
                "self.running_var.lerp_(var * m / (m - 1), self.momentum)", "self.running_var.lerp_(var, self.momentum)"
            ),
            "the running variance is updated with the biased batch variance instead of m/(m-1) times it; "
            "fails the visible tests",
        ),
        Case(
            "running_stats_with_grad",
            _bn_variant(
                """            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * m / (m - 1), self.momentum)
                self.num_batches_tracked += 1""",
                """            self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean
            self.running_var = (1 - self.momentum) * self.running_var + self.momentum * var * m / (m - 1)
            self.num_batches_tracked += 1""",
            ),
            "states: update the running statistics under torch.no_grad(); here the buffers are rebuilt from the "
            "batch statistics with autograd on, so they carry a growing graph (and requires_grad), which the "
            "visible tests, comparing values only, accept",
        ),
        Case(
            "eval_uses_batch_stats",
            _bn_variant(
                """        if self.training:
            m = x.numel() // x.shape[1]
            mean = x.mean(dim=(0, 2, 3))
            var = ((x - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
            with""",
                """        m = x.numel() // x.shape[1]
        mean = x.mean(dim=(0, 2, 3))
        var = ((x - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
        if self.training:
            with""",
            ).replace("        else:\n            mean, var = self.running_mean, self.running_var\n", ""),
            "normalizes with the batch statistics in evaluation mode too (running statistics kept but never used); "
            "fails the visible tests",
        ),
        Case(
            "eps_outside_sqrt",
            _bn_variant(
                "torch.sqrt(var.view(1, -1, 1, 1) + self.eps)",
                "(torch.sqrt(var.view(1, -1, 1, 1)) + self.eps)",
            ),
            "eps added to the standard deviation instead of the variance; fails test2 (eps=1e-3)",
        ),
        Case(
            "momentum_reversed",
            _bn_variant(
                """                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * m / (m - 1), self.momentum)""",
                """                self.running_mean.lerp_(mean, 1 - self.momentum)  # keep 90% of the new value
                self.running_var.lerp_(var * m / (m - 1), 1 - self.momentum)""",
            ),
            "Keras' momentum convention (the weight of the old value) instead of PyTorch's; fails the visible tests",
        ),
        Case(
            "library_batch_norm",
            '''\
class BatchNorm2d(nn.Module):
    """Batch normalization of each channel of an (N, nf, H, W) input, as nn.BatchNorm2d(nf) does it."""

'''
            + _BN_INIT
            + '''
    def forward(self, x):
        """(N, nf, H, W) -> (N, nf, H, W)."""
        if self.training:
            self.num_batches_tracked += 1
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, self.training, self.momentum, self.eps
        )
'''
            + _BN_REPR,
            "states: computed with tensor operations, no library normalization; F.batch_norm gives the right "
            "numbers, so the visible tests pass",
        ),
    ],
    "ex6_conv_bn": [
        Case(
            "relu_before_bn",
            '''\
def conv_bn(ni, nf, ks=3, act=True):
    """Conv2d(stride 2, padding ks//2) -> BatchNorm2d -> ReLU (no ReLU when act is False)."""
    layers = [nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2)]
    if act:
        layers.append(nn.ReLU())
    layers.append(BatchNorm2d(nf))
    return nn.Sequential(*layers)


def simple_cnn_bn():
    """The full-MNIST CNN 1-8(5x5)-16-32-64-10 with batch normalization in every block: 30,542 parameters."""
    return nn.Sequential(
        conv_bn(1, 8, ks=5),
        conv_bn(8, 16),
        conv_bn(16, 32),
        conv_bn(32, 64),
        conv_bn(64, 10, act=False),
        nn.Flatten(),
    )
''',
            "the ReLU comes before the batch norm (Conv -> ReLU -> BN); fails the visible test",
        ),
        Case(
            "conv_without_bias",
            '''\
def conv_bn(ni, nf, ks=3, act=True):
    """Conv2d(stride 2, padding ks//2) -> BatchNorm2d -> ReLU (no ReLU when act is False)."""
    layers = [nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2, bias=False), BatchNorm2d(nf)]  # BN has a shift
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def simple_cnn_bn():
    """The full-MNIST CNN 1-8(5x5)-16-32-64-10 with batch normalization in every block."""
    return nn.Sequential(
        conv_bn(1, 8, ks=5), conv_bn(8, 16), conv_bn(16, 32), conv_bn(32, 64), conv_bn(64, 10, act=False), nn.Flatten()
    )
''',
            "the convolutions lose their bias (common before batch norm, but not the chapter's 30,542-parameter "
            "model); fails the visible test",
        ),
        Case(
            "torch_batchnorm",
            '''\
def conv_bn(ni, nf, ks=3, act=True):
    """Conv2d(stride 2, padding ks//2) -> BatchNorm2d -> ReLU (no ReLU when act is False)."""
    layers = [nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2), nn.BatchNorm2d(nf)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def simple_cnn_bn():
    """The full-MNIST CNN 1-8(5x5)-16-32-64-10 with batch normalization in every block: 30,542 parameters."""
    return nn.Sequential(
        conv_bn(1, 8, ks=5), conv_bn(8, 16), conv_bn(16, 32), conv_bn(32, 64), conv_bn(64, 10, act=False), nn.Flatten()
    )
''',
            "PyTorch's nn.BatchNorm2d instead of the student's own BatchNorm2d; fails the visible test",
        ),
        Case(
            "plain_last_block",
            '''\
def conv_bn(ni, nf, ks=3, act=True):
    """Conv2d(stride 2, padding ks//2) -> BatchNorm2d -> ReLU; just the Conv2d when act is False."""
    conv = nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2)
    return nn.Sequential(conv, BatchNorm2d(nf), nn.ReLU()) if act else nn.Sequential(conv)


def simple_cnn_bn():
    """The full-MNIST CNN 1-8(5x5)-16-32-64-10 with batch normalization in every block."""
    return nn.Sequential(
        conv_bn(1, 8, ks=5), conv_bn(8, 16), conv_bn(16, 32), conv_bn(32, 64), conv_bn(64, 10, act=False), nn.Flatten()
    )
''',
            "act=False drops the batch norm along with the ReLU, so the last block is not normalized; fails the test",
        ),
    ],
    "ex6_final": [
        Case(
            "one_epoch",
            _variant(_FINAL_WRONG, "fit_one_cycle(5, 0.1)", "fit_one_cycle(1, 0.1)"),
            "one epoch instead of the recipe's five; fails the visible test",
        ),
        Case(
            "batch_256",
            _variant(_FINAL_WRONG, "mnist_dls(512)", "mnist_dls(256)"),
            "batches of 256 instead of 512; fails the visible test",
        ),
        Case(
            "no_metric",
            _variant(_FINAL_WRONG, ", metrics=accuracy", ""),
            "no accuracy metric, so validate() returns only the loss; fails the visible test",
        ),
        Case(
            "seed_after_dataloaders",
            _variant(
                _FINAL_WRONG,
                "set_seed(42, reproducible=True)\ndls = mnist_dls(512)\n",
                "dls = mnist_dls(512)\nset_seed(42, reproducible=True)\n",
            ),
            "states: call set_seed(42, reproducible=True) first, before creating the DataLoaders (their shuffling "
            "is seeded when they are made); the visible test only checks the result",
        ),
        Case(
            "fine_tune",
            _variant(_FINAL_WRONG, "learn.fit_one_cycle(5, 0.1)", "learn.fine_tune(5, 0.1)"),
            "states: 5 epochs of 1cycle with lr_max 0.1; fine_tune trains a sixth (frozen) epoch first and then "
            "peaks at 0.05, which the visible test (epochs recorded by the last fit, accuracy) does not see",
        ),
    ],
    "ex6_norm_variants": [
        Case(
            "smallest_group_count",
            _variant(_NORM_WRONG_BASE, "for g in (8, 4, 2, 1)", "for g in (1, 2, 4, 8)"),
            "the group count searched from the smallest divisor up: always 1 group (layer norm); fails the test",
        ),
        Case(
            "torch_layer_norm",
            _variant(_NORM_WRONG_BASE, "return nn.GroupNorm(1, nf)", "return nn.LayerNorm(nf)"),
            "nn.LayerNorm(nf), which normalizes over the last axis (W), not over (C, H, W); fails the visible test",
        ),
        Case(
            "instance_without_affine",
            _variant(_NORM_WRONG_BASE, "nn.InstanceNorm2d(nf, affine=True)", "nn.InstanceNorm2d(nf)"),
            "instance norm without its learnable scale and shift (affine=False is PyTorch's default); fails the test",
        ),
        Case(
            "unknown_kind_none",
            _variant(
                _NORM_WRONG_BASE,
                """    raise ValueError(f"kind must be 'batch', 'layer', 'group' or 'instance', got {kind!r}")\n""",
                "",
            ),
            "an unknown kind falls through and returns None instead of raising ValueError; fails the visible test",
        ),
        Case(
            "relu_even_without_act",
            _variant(
                _NORM_WRONG_BASE,
                """    if not act:
        layers.append(norm)
    elif act_first:""",
                """    if act_first:""",
            ),
            "act=False is ignored: the block always ends with a ReLU; fails the visible test",
        ),
    ],
}
