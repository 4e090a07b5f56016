"""Cases for ex3 (03_first_cnn): Flatten, the conv block and simple_cnn, counting, training with fastai."""

from . import Case

PEERS: dict[str, list[Case]] = {
    "ex3_flatten": [
        Case(
            "fastai_view",
            '''\
class Flatten(nn.Module):
    """Reshape (N, ...) to (N, product of the other sizes), keeping the batch axis."""

    def forward(self, x):
        return x.view(x.size(0), -1)
''',
            "what fastai's own Flatten does: view(N, -1)",
        ),
        Case(
            "reshape_len",
            '''\
class Flatten(nn.Module):
    """Reshape (N, ...) to (N, product of the other sizes), keeping the batch axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1)
''',
            "reshape with len(x) rows and -1 columns",
        ),
        Case(
            "flatten_or_unsqueeze",
            '''\
class Flatten(nn.Module):
    """Reshape (N, ...) to (N, product of the other sizes), keeping the batch axis."""

    def forward(self, x):
        if x.dim() == 1:
            return x.unsqueeze(1)  # (N,) -> (N, 1)
        return torch.flatten(x, start_dim=1)
''',
            "torch.flatten from axis 1, with the 1-D case handled separately",
        ),
        Case(
            "unsqueeze_then_flatten",
            '''\
class Flatten(nn.Module):
    """Reshape (N, ...) to (N, product of the other sizes), keeping the batch axis."""

    def forward(self, x):
        return x.unsqueeze(-1).flatten(1)  # a trailing unit axis makes (N,) work too
''',
            "a trailing unit axis, then flatten from axis 1: (N,) -> (N, 1) -> (N, 1)",
        ),
        Case(
            "reduce_mul",
            '''\
import operator
from functools import reduce


class Flatten(nn.Module):
    """Reshape (N, ...) to (N, product of the other sizes), keeping the batch axis."""

    def forward(self, x):
        n_features = reduce(operator.mul, x.shape[1:], 1)
        return x.reshape(x.shape[0], n_features)
''',
            "the feature count with functools.reduce instead of math.prod",
        ),
        Case(
            "numel_per_item",
            '''\
class Flatten(nn.Module):
    """Reshape (N, ...) to (N, product of the other sizes), keeping the batch axis."""

    def __init__(self):
        super().__init__()

    def forward(self, x):
        batch = x.shape[0]
        return x.contiguous().view(batch, x.numel() // batch)
''',
            "an explicit __init__, contiguous().view with numel // N",
        ),
    ],
    "ex3_simple_cnn": [
        Case(
            "loop_over_channels",
            '''\
def conv(ni, nf, ks=3, act=True):
    """A stride-2 convolution with padding ks//2, followed by a ReLU unless act=False."""
    return nn.Sequential(nn.Conv2d(ni, nf, kernel_size=ks, stride=2, padding=ks // 2), *([nn.ReLU()] if act else []))


def simple_cnn():
    """The MNIST_SAMPLE network: five stride-2 conv blocks, 1-4-8-16-32-2 channels, then Flatten."""
    channels = [1, 4, 8, 16, 32, 2]
    n_blocks = len(channels) - 1
    blocks = [conv(ni, nf, act=i < n_blocks - 1) for i, (ni, nf) in enumerate(zip(channels, channels[1:]))]
    return nn.Sequential(*blocks, Flatten())
''',
            "the ReLU spliced in from a conditional list; the network built from a channel list",
        ),
        Case(
            "conditional_return",
            '''\
def conv(ni, nf, ks=3, act=True):
    """A stride-2 convolution with padding ks//2, followed by a ReLU unless act=False."""
    layer = nn.Conv2d(ni, nf, ks, 2, ks // 2)
    return nn.Sequential(layer, nn.ReLU()) if act else nn.Sequential(layer)


def simple_cnn():
    """The MNIST_SAMPLE network: five stride-2 conv blocks, 1-4-8-16-32-2 channels, then Flatten."""
    return nn.Sequential(conv(1, 4), conv(4, 8), conv(8, 16), conv(16, 32), conv(32, 2, act=False), Flatten())
''',
            "positional Conv2d arguments and a conditional return, as the chapter writes it",
        ),
        Case(
            "named_layers",
            '''\
from collections import OrderedDict


def conv(ni, nf, ks=3, act=True):
    """A stride-2 convolution with padding ks//2, followed by a ReLU unless act=False."""
    layers = OrderedDict(conv=nn.Conv2d(ni, nf, kernel_size=ks, stride=2, padding=ks // 2))
    if act:
        layers["relu"] = nn.ReLU()
    return nn.Sequential(layers)


def simple_cnn():
    """The MNIST_SAMPLE network: five stride-2 conv blocks, 1-4-8-16-32-2 channels, then Flatten."""
    return nn.Sequential(
        OrderedDict(
            block1=conv(1, 4),
            block2=conv(4, 8),
            block3=conv(8, 16),
            block4=conv(16, 32),
            head=conv(32, 2, act=False),
            flatten=Flatten(),
        )
    )
''',
            "Sequentials built from OrderedDicts, so every layer has a name",
        ),
        Case(
            "append",
            '''\
def conv(ni, nf, ks=3, act=True):
    """A stride-2 convolution with padding ks//2, followed by a ReLU unless act=False."""
    block = nn.Sequential()
    block.append(nn.Conv2d(in_channels=ni, out_channels=nf, kernel_size=ks, stride=2, padding=ks // 2, bias=True))
    if act:
        block.append(nn.ReLU())
    return block


def simple_cnn():
    """The MNIST_SAMPLE network: five stride-2 conv blocks, 1-4-8-16-32-2 channels, then Flatten."""
    model = nn.Sequential()
    for ni, nf in [(1, 4), (4, 8), (8, 16), (16, 32)]:
        model.append(conv(ni, nf))
    model.append(conv(32, 2, act=False))  # class scores: no ReLU
    model.append(Flatten())
    return model
''',
            "empty Sequentials filled with append, every Conv2d argument as a keyword",
        ),
        Case(
            "fastai_convlayer",
            '''\
from fastai.layers import ConvLayer


def conv(ni, nf, ks=3, act=True):
    """A stride-2 convolution with padding ks//2, followed by a ReLU unless act=False."""
    return ConvLayer(ni, nf, ks=ks, stride=2, padding=ks // 2, norm_type=None, act_cls=nn.ReLU if act else None)


def simple_cnn():
    """The MNIST_SAMPLE network: five stride-2 conv blocks, 1-4-8-16-32-2 channels, then Flatten."""
    sizes = [1, 4, 8, 16, 32, 2]
    return nn.Sequential(
        *[conv(sizes[i], sizes[i + 1]) for i in range(4)],
        conv(sizes[4], sizes[5], act=False),
        Flatten(),
    )
''',
            "fastai's ConvLayer (an nn.Sequential of Conv2d and ReLU, with bias when there is no norm)",
        ),
        Case(
            "channel_pairs",
            '''\
def conv(ni: int, nf: int, ks: int = 3, act: bool = True) -> nn.Sequential:
    """A stride-2 convolution with padding ks//2, followed by a ReLU unless act=False."""
    pad = ks // 2
    layers: list[nn.Module] = [nn.Conv2d(ni, nf, kernel_size=(ks, ks), stride=(2, 2), padding=(pad, pad))]
    if act:
        layers += [nn.ReLU()]
    return nn.Sequential(*layers)


def simple_cnn() -> nn.Sequential:
    """The MNIST_SAMPLE network: five stride-2 conv blocks, 1-4-8-16-32-2 channels, then Flatten."""
    hidden = [(1, 4), (4, 8), (8, 16), (16, 32)]
    return nn.Sequential(*(conv(a, b) for a, b in hidden), conv(32, 2, act=False), Flatten())
''',
            "tuple-valued kernel_size, stride and padding; the hidden blocks from a list of pairs",
        ),
    ],
    "ex3_counts": [
        Case(
            "map_numel",
            '''\
def count_params(model):
    """Total number of parameters (weights and biases) of a model."""
    return sum(map(torch.numel, model.parameters()))


def conv_mults(h, w, conv):
    """Multiplications of a convolution over an h x w input grid."""
    layer = [m for m in conv.modules() if isinstance(m, nn.Conv2d)][0]
    return h * w * layer.weight.numel()
''',
            "sum(map(torch.numel, ...)); the first Conv2d found by a list comprehension",
        ),
        Case(
            "math_prod_shape",
            '''\
def count_params(model: nn.Module) -> int:
    """Total number of parameters (weights and biases) of a model."""
    return sum(p.numel() for _, p in model.named_parameters())


def conv_mults(h: int, w: int, conv: nn.Module) -> int:
    """Multiplications of a convolution over an h x w input grid."""
    for m in conv.modules():
        if isinstance(m, nn.Conv2d):
            return h * w * math.prod(m.weight.shape)
    raise TypeError(f"no Conv2d in {conv}")
''',
            "named_parameters; math.prod of the weight's shape; a loop that returns at the first Conv2d",
        ),
        Case(
            "shape_unpacked",
            '''\
def count_params(model):
    """Total number of parameters (weights and biases) of a model."""
    total = 0
    for p in model.parameters():
        total += p.numel()
    return total


def conv_mults(h, w, conv):
    """Multiplications of a convolution over an h x w input grid: h * w * C_out * C_in * ks * ks."""
    layer = conv if isinstance(conv, nn.Conv2d) else next(m for m in conv.modules() if isinstance(m, nn.Conv2d))
    c_out, c_in, kh, kw = layer.weight.shape
    return h * w * c_out * c_in * kh * kw
''',
            "an accumulating loop; the formula written out from the unpacked weight shape",
        ),
        Case(
            "lambdas",
            """\
count_params = lambda model: sum(p.numel() for p in model.parameters())
conv_mults = lambda h, w, conv: h * w * next(filter(lambda m: isinstance(m, nn.Conv2d), conv.modules())).weight.numel()
""",
            "both as lambdas, the Conv2d found with filter",
        ),
        Case(
            "fastai_total_params",
            '''\
from fastai.callback.hook import total_params


def count_params(model):
    """Total number of parameters (weights and biases) of a model."""
    return total_params(model)[0]  # fastai returns (count, trainable)


def conv_mults(h, w, conv):
    """Multiplications of a convolution over an h x w input grid."""
    weights = [m.weight for m in conv.modules() if isinstance(m, nn.Conv2d)]
    return h * w * weights[0].numel()
''',
            "fastai's total_params helper for the count",
        ),
        Case(
            "minus_bias",
            '''\
def count_params(model):
    """Total number of parameters (weights and biases) of a model."""
    return int(sum(p.numel() for p in model.parameters()))


def conv_mults(h, w, conv):
    """Multiplications of a convolution over an h x w input grid: its parameters minus its biases, per position."""
    layer = next(m for m in conv.modules() if isinstance(m, nn.Conv2d))
    n_bias = 0 if layer.bias is None else layer.bias.numel()
    return h * w * (count_params(layer) - n_bias)
''',
            "the weights counted as all parameters of the Conv2d minus its bias, as the text explains 1168 - 16",
        ),
    ],
    "ex3_train": [
        Case(
            "named_constants",
            """\
n_epochs, lr_max = 2, 0.01
learn = Learner(dls, simple_cnn(), loss_func=F.cross_entropy, metrics=accuracy)
learn.fit_one_cycle(n_epochs, lr_max)
""",
            "epochs and learning rate as named constants",
        ),
        Case(
            "keywords",
            """\
learn = Learner(dls=dls, model=simple_cnn(), loss_func=F.cross_entropy, metrics=[accuracy])
learn.fit_one_cycle(n_epoch=2, lr_max=1e-2)
""",
            "every argument as a keyword, metrics as a list",
        ),
        Case(
            "fresh_dataloaders",
            """\
dls = mnist_dls(64, sample=True)
model = simple_cnn()
learn = Learner(dls, model, loss_func=F.cross_entropy, metrics=accuracy)
learn.fit_one_cycle(2, 0.01)
""",
            "the DataLoaders made again in the cell, the model named first",
        ),
        Case(
            "lr_on_learner",
            """\
learn = Learner(dls, simple_cnn(), F.cross_entropy, lr=0.01, metrics=accuracy)
learn.fit_one_cycle(2)  # lr_max defaults to the Learner's lr
""",
            "loss_func positional, the learning rate given to the Learner, fit_one_cycle(2) takes it from there",
        ),
        Case(
            "callback_in_learner",
            '''\
import time

from fastai.callback.core import Callback


class EpochTimer(Callback):
    """Print how long each epoch took."""

    def before_epoch(self):
        self.start = time.perf_counter()

    def after_epoch(self):
        print(f"epoch {self.epoch}: {time.perf_counter() - self.start:.1f} s")


learn = Learner(dls, simple_cnn(), loss_func=F.cross_entropy, metrics=accuracy, cbs=EpochTimer())
learn.fit_one_cycle(2, 0.01)
''',
            "an extra (harmless) callback of the student's own passed with cbs= to the Learner",
        ),
        Case(
            "cross_entropy_module",
            """\
learn = Learner(dls, simple_cnn(), loss_func=nn.CrossEntropyLoss(), metrics=accuracy)
with learn.no_bar():
    learn.fit_one_cycle(2, 0.01)
""",
            "nn.CrossEntropyLoss(), the module form of F.cross_entropy (same values); no progress bar",
        ),
    ],
}

WRONG: dict[str, list[Case]] = {
    "ex3_flatten": [
        Case(
            "squeeze",
            '''\
class Flatten(nn.Module):
    """Reshape (N, ...) to (N, product of the other sizes), keeping the batch axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze()
''',
            "squeeze drops every unit axis: right for (64, 2, 1, 1), wrong for a batch of one; fails the test",
        ),
        Case(
            "flatten_from_one",
            '''\
class Flatten(nn.Module):
    """Reshape (N, ...) to (N, product of the other sizes), keeping the batch axis."""

    def forward(self, x):
        return x.flatten(1)
''',
            "x.flatten(1) raises for a 1-D (N,) batch, which must become (N, 1); fails the visible test",
        ),
        Case(
            "full_flatten",
            '''\
class Flatten(nn.Module):
    """Reshape (N, ...) to (N, product of the other sizes), keeping the batch axis."""

    def forward(self, x):
        return x.view(-1)
''',
            "flattens the batch axis too; fails the visible test",
        ),
        Case(
            "first_two_axes",
            '''\
class Flatten(nn.Module):
    """Reshape (N, C, 1, 1) to (N, C)."""

    def forward(self, x):
        return x.view(x.size(0), x.size(1))
''',
            "only drops trailing unit axes: (2, 3, 4) cannot be viewed as (2, 3); fails the visible test",
        ),
        Case(
            "copies_values",
            '''\
class Flatten(nn.Module):
    """Reshape (N, ...) to (N, product of the other sizes), keeping the batch axis."""

    def forward(self, x):
        return torch.tensor(x.reshape(len(x), -1).tolist(), dtype=x.dtype)
''',
            "states: reshape the tensor, do not copy its values into a new one; the copy has the right values but "
            "no gradient reaches the input, and the visible test checks values only",
        ),
    ],
    "ex3_simple_cnn": [
        Case(
            "padding_one",
            '''\
def conv(ni: int, nf: int, ks: int = 3, act: bool = True) -> nn.Sequential:
    """A stride-2 convolution with padding ks//2, followed by a ReLU unless act=False."""
    layers = [nn.Conv2d(ni, nf, kernel_size=ks, stride=2, padding=1)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def simple_cnn() -> nn.Sequential:
    """The MNIST_SAMPLE network: five stride-2 conv blocks, 1-4-8-16-32-2 channels, then Flatten."""
    return nn.Sequential(conv(1, 4), conv(4, 8), conv(8, 16), conv(16, 32), conv(32, 2, act=False), Flatten())
''',
            "padding hard-coded to 1: simple_cnn (all 3x3) is right, conv(..., ks=5) is not; fails the test",
        ),
        Case(
            "relu_on_scores",
            '''\
def conv(ni, nf, ks=3, act=True):
    """A stride-2 convolution with padding ks//2, followed by a ReLU unless act=False."""
    layers = [nn.Conv2d(ni, nf, kernel_size=ks, stride=2, padding=ks // 2)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def simple_cnn():
    """The MNIST_SAMPLE network: five stride-2 conv blocks, 1-4-8-16-32-2 channels, then Flatten."""
    return nn.Sequential(conv(1, 4), conv(4, 8), conv(8, 16), conv(16, 32), conv(32, 2), Flatten())
''',
            "a ReLU after the last convolution too, so the class scores cannot be negative; fails test2",
        ),
        Case(
            "padding_for_even_kernels",
            '''\
def conv(ni, nf, ks=3, act=True):
    """A stride-2 convolution with 'same'-style padding, followed by a ReLU unless act=False."""
    layers = [nn.Conv2d(ni, nf, kernel_size=ks, stride=2, padding=(ks - 1) // 2)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def simple_cnn():
    """The MNIST_SAMPLE network: five stride-2 conv blocks, 1-4-8-16-32-2 channels, then Flatten."""
    return nn.Sequential(conv(1, 4), conv(4, 8), conv(8, 16), conv(16, 32), conv(32, 2, act=False), Flatten())
''',
            "states: padding=ks//2; (ks - 1) // 2 agrees for the odd sizes the visible tests use (3, 5) "
            "but gives 1 instead of 2 for ks=4",
        ),
        Case(
            "no_bias",
            '''\
def conv(ni, nf, ks=3, act=True):
    """A stride-2 convolution with padding ks//2, followed by a ReLU unless act=False."""
    layers = [nn.Conv2d(ni, nf, kernel_size=ks, stride=2, padding=ks // 2, bias=False)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def simple_cnn():
    """The MNIST_SAMPLE network: five stride-2 conv blocks, 1-4-8-16-32-2 channels, then Flatten."""
    return nn.Sequential(conv(1, 4), conv(4, 8), conv(8, 16), conv(16, 32), conv(32, 2, act=False), Flatten())
''',
            "convolutions without bias (fewer parameters than 6,722); fails the visible test",
        ),
        Case(
            "torch_flatten",
            '''\
def conv(ni, nf, ks=3, act=True):
    """A stride-2 convolution with padding ks//2, followed by a ReLU unless act=False."""
    layers = [nn.Conv2d(ni, nf, kernel_size=ks, stride=2, padding=ks // 2)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def simple_cnn():
    """The MNIST_SAMPLE network: five stride-2 conv blocks, 1-4-8-16-32-2 channels, then nn.Flatten."""
    return nn.Sequential(conv(1, 4), conv(4, 8), conv(8, 16), conv(16, 32), conv(32, 2, act=False), nn.Flatten())
''',
            "states: simple_cnn ends with *your* Flatten; nn.Flatten gives the same outputs, so the visible tests pass",
        ),
    ],
    "ex3_counts": [
        Case(
            "bias_in_mults",
            '''\
def count_params(model: nn.Module) -> int:
    """Total number of parameters (weights and biases) of a model."""
    return sum(p.numel() for p in model.parameters())


def conv_mults(h: int, w: int, conv: nn.Module) -> int:
    """Multiplications of a convolution over an h x w input grid."""
    return h * w * count_params(conv)
''',
            "the multiplications also count the biases; fails test2",
        ),
        Case(
            "trainable_only",
            '''\
def count_params(model):
    """Total number of parameters (weights and biases) of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def conv_mults(h, w, conv):
    """Multiplications of a convolution over an h x w input grid."""
    layer = next(m for m in conv.modules() if isinstance(m, nn.Conv2d))
    return h * w * layer.weight.numel()
''',
            "states: the total number of parameters of any nn.Module; frozen parameters (requires_grad=False) are "
            "left out, and the visible tests only use trainable models",
        ),
        Case(
            "state_dict",
            '''\
def count_params(model):
    """Total number of parameters (weights and biases) of a model."""
    return sum(t.numel() for t in model.state_dict().values())


def conv_mults(h, w, conv):
    """Multiplications of a convolution over an h x w input grid."""
    layer = next(m for m in conv.modules() if isinstance(m, nn.Conv2d))
    return h * w * layer.weight.numel()
''',
            "counts the state_dict, which also holds buffers (BatchNorm's running statistics); fails the test",
        ),
        Case(
            "output_grid",
            '''\
def count_params(model):
    """Total number of parameters (weights and biases) of a model."""
    return sum(p.numel() for p in model.parameters())


def conv_mults(h, w, conv):
    """Multiplications of a convolution: its weights at every position of its output grid."""
    layer = next(m for m in conv.modules() if isinstance(m, nn.Conv2d))
    h_out = (h + 2 * layer.padding[0] - layer.kernel_size[0]) // layer.stride[0] + 1
    w_out = (w + 2 * layer.padding[1] - layer.kernel_size[1]) // layer.stride[1] + 1
    return h_out * w_out * layer.weight.numel()
''',
            "counts at the output positions, not the input grid the chapter's formula uses; fails test2",
        ),
        Case(
            "weight_attribute",
            '''\
def count_params(model):
    """Total number of parameters (weights and biases) of a model."""
    return sum(p.numel() for p in model.parameters())


def conv_mults(h, w, conv):
    """Multiplications of a convolution over an h x w input grid."""
    return h * w * conv.weight.numel()
''',
            "reads conv.weight, which a conv block (an nn.Sequential) does not have; fails test2",
        ),
    ],
    "ex3_train": [
        Case(
            "constant_lr",
            """\
learn = Learner(dls, simple_cnn(), loss_func=F.cross_entropy, metrics=accuracy)
learn.fit(2, 0.01)
""",
            "a constant learning rate instead of the 1cycle schedule; fails the visible test",
        ),
        Case(
            "one_epoch",
            """\
learn = Learner(dls, simple_cnn(), loss_func=F.cross_entropy, metrics=accuracy)
learn.fit_one_cycle(1, 0.01)
""",
            "one epoch instead of two; fails the visible test",
        ),
        Case(
            "lr_too_high",
            """\
learn = Learner(dls, simple_cnn(), loss_func=F.cross_entropy, metrics=accuracy)
learn.fit_one_cycle(2, 0.1)
""",
            "peak learning rate 0.1 instead of 0.01; fails the visible test",
        ),
        Case(
            "bigger_batches",
            """\
dls = mnist_dls(128, sample=True)
learn = Learner(dls, simple_cnn(), loss_func=F.cross_entropy, metrics=accuracy)
learn.fit_one_cycle(2, 0.01)
""",
            "batches of 128 instead of 64; fails the visible test",
        ),
        Case(
            "fine_tune",
            """\
learn = Learner(dls, simple_cnn(), loss_func=F.cross_entropy, metrics=accuracy)
learn.fine_tune(2, 0.01)
""",
            "fine_tune instead of fit_one_cycle: one epoch first, then two more peaking at half the rate, so the "
            "recorded schedule is not fit_one_cycle(2, 0.01)'s; fails the visible test",
        ),
    ],
}
