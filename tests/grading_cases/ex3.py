"""Wrong answers for ex3 (03_first_cnn): each must cost exactly its own task."""

WRONG = {
    # squeeze drops every unit axis: right for (64, 2, 1, 1), wrong for a batch of one or for (N, 3, 4)
    "ex3_flatten": '''\
class Flatten(nn.Module):
    """Reshape (N, ...) to (N, product of the other sizes), keeping the batch axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze()
''',
    # padding hard-coded to 1: simple_cnn (all 3x3) is right, conv(..., ks=5) is not
    "ex3_simple_cnn": '''\
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
    # the multiplications also count the biases
    "ex3_counts": '''\
def count_params(model: nn.Module) -> int:
    """Total number of parameters (weights and biases) of a model."""
    return sum(p.numel() for p in model.parameters())


def conv_mults(h: int, w: int, conv: nn.Module) -> int:
    """Multiplications of a convolution over an h x w input grid."""
    return h * w * count_params(conv)
''',
    # a constant learning rate instead of the 1cycle schedule
    "ex3_train": """\
learn = Learner(dls, simple_cnn(), loss_func=F.cross_entropy, metrics=accuracy)
learn.fit(2, 0.01)
""",
}
