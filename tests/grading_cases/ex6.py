"""Wrong answers for ex6 (06_batchnorm): each must cost exactly its own task."""

WRONG = {
    # biased and unbiased variance mixed up: the running variance is updated with the biased batch variance
    "ex6_batchnorm": '''\
class BatchNorm2d(nn.Module):
    """Batch normalization of each channel of an (N, nf, H, W) input, as nn.BatchNorm2d(nf) does it."""

    def __init__(self, nf, eps=1e-5, momentum=0.1):
        super().__init__()
        self.nf, self.eps, self.momentum = nf, eps, momentum
        self.weight = nn.Parameter(torch.ones(nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        self.register_buffer("running_mean", torch.zeros(nf))
        self.register_buffer("running_var", torch.ones(nf))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        """(N, nf, H, W) -> (N, nf, H, W)."""
        if self.training:
            var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var, self.momentum)
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + self.eps)
        return self.weight.view(1, -1, 1, 1) * x_hat + self.bias.view(1, -1, 1, 1)
''',
    # the ReLU comes before the batch norm (Conv -> ReLU -> BN), not after it
    "ex6_conv_bn": '''\
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
    # one epoch instead of the recipe's five
    "ex6_final": """\
# Create `learn` and train it here.
set_seed(42, reproducible=True)
dls = mnist_dls(512)
learn = Learner(dls, simple_cnn_bn(), loss_func=F.cross_entropy, metrics=accuracy)
learn.fit_one_cycle(1, 0.1)
""",
    # the group count searched from the smallest divisor up: always 1 group (that is layer norm)
    "ex6_norm_variants": '''\
def make_norm(kind, nf):
    """A layer normalizing (N, nf, H, W) inputs: kind is 'batch', 'layer', 'group' or 'instance'."""
    if kind == "batch":
        return BatchNorm2d(nf)
    if kind == "layer":
        return nn.GroupNorm(1, nf)
    if kind == "group":
        return nn.GroupNorm(next(g for g in (1, 2, 4, 8) if nf % g == 0), nf)
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
''',
}
