"""Cases for ex5 (05_one_cycle): sched_cos, combined_cos, one_cycle_schedule, the OneCycleScheduler callback."""

from . import Case

PEERS: dict[str, list[Case]] = {
    "ex5_sched_cos": [
        Case(
            "one_minus_cos",
            '''\
def sched_cos(start, end, pos):
    """Half a cosine wave from `start` (pos=0) to `end` (pos=1)."""
    return start + (end - start) * (1 - math.cos(math.pi * pos)) / 2
''',
            "cos(pi (1 - p)) = -cos(pi p): the same curve written with 1 - cos",
        ),
        Case(
            "weights",
            '''\
def sched_cos(start, end, pos):
    """Half a cosine wave from `start` (pos=0) to `end` (pos=1)."""
    w = (1 - math.cos(math.pi * pos)) / 2  # 0 at pos=0, 1 at pos=1
    return start * (1 - w) + end * w
''',
            "a weighted average of start and end with the cosine weight",
        ),
        Case(
            "half_angle",
            '''\
def sched_cos(start, end, pos):
    """Half a cosine wave from `start` (pos=0) to `end` (pos=1)."""
    return start + (end - start) * math.sin(math.pi * pos / 2) ** 2
''',
            "(1 - cos x) / 2 = sin^2(x / 2): the half-angle form",
        ),
        Case(
            "named_steps",
            '''\
def sched_cos(start: float, end: float, pos: float) -> float:
    """Half a cosine wave from `start` (pos=0) to `end` (pos=1)."""
    span = end - start
    angle = math.pi * (1 - pos)
    return start + span * (1 + math.cos(angle)) / 2
''',
            "the span and angle named first, type hints",
        ),
        Case(
            "lambda",
            """\
sched_cos = lambda start, end, pos: start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2
""",
            "a lambda",
        ),
        Case(
            "reordered",
            '''\
def sched_cos(start, end, pos):
    """Half a cosine wave from `start` (pos=0) to `end` (pos=1)."""
    cos_out = math.cos(math.pi * (1 - pos)) + 1  # from 0 up to 2
    return start + (end - start) / 2 * cos_out
''',
            "fastai's formula with the factors in another order",
        ),
    ],
    "ex5_combined_cos": [
        Case(
            "fastai_combine_scheds",
            '''\
import torch


def combine_phases(pcts, phases):
    """fastai's combine_scheds: phase i covers the fraction pcts[i]; positions are float32 tensors, as in fastai."""
    edges = torch.cumsum(torch.tensor([0.0] + list(pcts)), 0)
    last = len(edges) - 2

    def _inner(pos):
        idx = min(int((pos >= edges).nonzero().max()), last)
        actual_pos = (pos - edges[idx]) / (edges[idx + 1] - edges[idx])
        return phases[idx](actual_pos.item())

    return _inner


def combined_cos(pct, start, middle, end):
    """A schedule f(pos): cosine from start to middle on [0, pct], then from middle to end on [pct, 1]."""
    return combine_phases(
        [pct, 1 - pct], [lambda p: sched_cos(start, middle, p), lambda p: sched_cos(middle, end, p)]
    )
''',
            "written the way fastai writes combine_scheds: cumulative float32 tensor edges, the last phase "
            "capped with min; matches fastai to float32 precision",
        ),
        Case(
            "bisect_edges",
            '''\
from bisect import bisect_right
from functools import partial


def combined_cos(pct, start, middle, end):
    """A schedule f(pos): cosine from start to middle on [0, pct], then from middle to end on [pct, 1]."""
    edges = [0.0, pct, 1.0]
    phases = [partial(sched_cos, start, middle), partial(sched_cos, middle, end)]

    def schedule(pos):
        i = min(bisect_right(edges, pos) - 1, len(phases) - 1)
        return phases[i]((pos - edges[i]) / (edges[i + 1] - edges[i]))

    return schedule
''',
            "the phase found with bisect on the edge list, the phases as functools.partial of sched_cos",
        ),
        Case(
            "lambda",
            '''\
def combined_cos(pct, start, middle, end):
    """A schedule f(pos): cosine from start to middle on [0, pct], then from middle to end on [pct, 1]."""
    return lambda pos: (
        sched_cos(start, middle, pos / pct) if pos < pct else sched_cos(middle, end, (pos - pct) / (1 - pct))
    )
''',
            "a lambda with a conditional expression",
        ),
        Case(
            "callable_class",
            '''\
class CombinedCos:
    """Cosine from start to middle on [0, pct], then from middle to end on [pct, 1], as a callable."""

    def __init__(self, pct, start, middle, end):
        self.pct, self.start, self.middle, self.end = pct, start, middle, end

    def __call__(self, pos):
        if pos < self.pct:
            return sched_cos(self.start, self.middle, pos / self.pct)
        return sched_cos(self.middle, self.end, (pos - self.pct) / (1 - self.pct))


def combined_cos(pct, start, middle, end):
    """A schedule f(pos): cosine from start to middle on [0, pct], then from middle to end on [pct, 1]."""
    return CombinedCos(pct, start, middle, end)
''',
            "a callable object (like fastai's _Annealer) instead of a closure",
        ),
        Case(
            "phase_table",
            '''\
def combined_cos(pct, start, middle, end):
    """A schedule f(pos): cosine from start to middle on [0, pct], then from middle to end on [pct, 1]."""
    first, second = (0.0, pct, start, middle), (pct, 1.0, middle, end)

    def f(pos):
        lo, hi, a, b = first if pos < pct else second
        return sched_cos(a, b, (pos - lo) / (hi - lo))

    return f
''',
            "each phase as (lo, hi, from, to); one rescaling formula for both",
        ),
        Case(
            "keyword_phases",
            '''\
def combined_cos(pct, start, middle, end):
    """A schedule f(pos): cosine from start to middle on [0, pct], then from middle to end on [pct, 1]."""

    def warm_up(p):
        return sched_cos(start=start, end=middle, pos=p / pct)

    def anneal(p):
        return sched_cos(start=middle, end=end, pos=(p - pct) / (1 - pct))

    def schedule(pos):
        return warm_up(pos) if pos < pct else anneal(pos)

    return schedule
''',
            "two named inner phases, sched_cos called with keywords",
        ),
    ],
    "ex5_one_cycle": [
        Case(
            "numpy_vectorised",
            '''\
def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """(lrs, moms): the learning rate and momentum of each of the n_steps training batches of a 1cycle run."""
    pos = np.arange(n_steps) / n_steps

    def cos_anneal(a, b, p):
        return a + (1 + np.cos(np.pi * (1 - p))) * (b - a) / 2

    def curve(start, middle, end):
        warm = cos_anneal(start, middle, pos / pct_start)
        cool = cos_anneal(middle, end, (pos - pct_start) / (1 - pct_start))
        return np.where(pos < pct_start, warm, cool)

    lrs = curve(lr_max / div, lr_max, lr_max / div_final)
    mom_values = curve(*moms)
    return lrs.tolist(), mom_values.tolist()
''',
            "every position at once with numpy arrays and np.where, returned as lists",
        ),
        Case(
            "linspace",
            '''\
def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """(lrs, moms): the learning rate and momentum of each of the n_steps training batches of a 1cycle run."""
    lr_f = combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final)
    mom_f = combined_cos(pct_start, moms[0], moms[1], moms[2])
    positions = np.linspace(0, 1, n_steps, endpoint=False)  # i / n_steps
    return [lr_f(float(p)) for p in positions], [mom_f(float(p)) for p in positions]
''',
            "positions from np.linspace(0, 1, n, endpoint=False)",
        ),
        Case(
            "append_loop",
            '''\
def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """(lrs, moms): the learning rate and momentum of each of the n_steps training batches of a 1cycle run."""
    lr_start, lr_end = lr_max / div, lr_max / div_final
    mom_start, mom_mid, mom_end = moms
    lr_sched = combined_cos(pct_start, lr_start, lr_max, lr_end)
    mom_sched = combined_cos(pct_start, mom_start, mom_mid, mom_end)
    lrs, mom_values = [], []
    for step in range(n_steps):
        pos = step / n_steps
        lrs.append(lr_sched(pos))
        mom_values.append(mom_sched(pos))
    return lrs, mom_values
''',
            "named start and end values, a loop that appends",
        ),
        Case(
            "map",
            '''\
def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """(lrs, moms): the learning rate and momentum of each of the n_steps training batches of a 1cycle run."""
    positions = [i / n_steps for i in range(n_steps)]
    lr_curve = combined_cos(pct=pct_start, start=lr_max / div, middle=lr_max, end=lr_max / div_final)
    mom_curve = combined_cos(pct_start, *moms)
    return list(map(lr_curve, positions)), list(map(mom_curve, positions))
''',
            "list(map(...)) over the positions, combined_cos called with keywords",
        ),
        Case(
            "pairs",
            '''\
def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """(lrs, moms): the learning rate and momentum of each of the n_steps training batches of a 1cycle run."""
    scheds = (
        combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final),
        combined_cos(pct_start, *moms),
    )
    pairs = [tuple(f(i / n_steps) for f in scheds) for i in range(n_steps)]
    return [lr for lr, _ in pairs], [mom for _, mom in pairs]
''',
            "(lr, mom) pairs per step, split into two lists",
        ),
        Case(
            "dict_of_curves",
            '''\
def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """(lrs, moms): the learning rate and momentum of each of the n_steps training batches of a 1cycle run."""
    curves = {
        "lr": combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final),
        "mom": combined_cos(pct_start, *moms),
    }
    plan = {name: [f(step / n_steps) for step in range(n_steps)] for name, f in curves.items()}
    return plan["lr"], plan["mom"]
''',
            "a dict of hyper-parameter curves, like the scheds dict of fastai's fit_one_cycle",
        ),
    ],
    "ex5_scheduler": [
        Case(
            "epoch_iter_arithmetic",
            '''\
class OneCycleScheduler(Callback):
    """Set the optimizer's 'lr' and 'mom' for each training batch along the 1cycle schedule; record them."""

    order, run_valid = 60, False

    def __init__(self, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
        super().__init__()
        self.lr_max, self.div, self.div_final, self.pct_start, self.mom_cycle = lr_max, div, div_final, pct_start, moms
        self.lrs, self.moms = [], []
        self.lr_plan, self.mom_plan = [], []

    def before_fit(self):
        """Plan the learning rate and momentum of every training batch of this fit; empty the records."""
        n_steps = self.n_epoch * len(self.dls.train)
        self.lr_plan, self.mom_plan = one_cycle_schedule(
            n_steps, self.lr_max, self.div, self.div_final, self.pct_start, self.mom_cycle
        )
        self.lrs.clear()
        self.moms.clear()

    def before_batch(self):
        """Give the optimizer this batch's learning rate and momentum, and record them."""
        step = self.epoch * self.n_iter + self.iter  # batches of earlier epochs plus this epoch's
        self.opt.set_hyper("lr", self.lr_plan[step])
        self.opt.set_hyper("mom", self.mom_plan[step])
        self.lrs.append(self.lr_plan[step])
        self.moms.append(self.mom_plan[step])
''',
            "the step computed from self.epoch * self.n_iter + self.iter instead of self.train_iter",
        ),
        Case(
            "pct_train",
            '''\
class OneCycleScheduler(Callback):
    """Set the optimizer's 'lr' and 'mom' for each training batch along the 1cycle schedule; record them."""

    order, run_valid = 60, False

    def __init__(self, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
        super().__init__()
        self.lr_max, self.div, self.div_final, self.pct_start = lr_max, div, div_final, pct_start
        self.mom_cycle = tuple(moms)
        self.lrs, self.moms, self.plan = [], [], []

    def before_fit(self):
        """Plan the learning rate and momentum of every training batch of this fit; empty the records."""
        lrs, moms = one_cycle_schedule(
            self.n_epoch * len(self.dls.train), self.lr_max, self.div, self.div_final, self.pct_start, self.mom_cycle
        )
        self.plan = list(zip(lrs, moms))
        self.lrs.clear()
        self.moms.clear()

    def before_batch(self):
        """Give the optimizer this batch's learning rate and momentum, and record them."""
        step = round(self.pct_train * len(self.plan))  # fastai's fraction of the training done so far
        lr, mom = self.plan[step]
        self.opt.set_hyper("lr", lr)
        self.opt.set_hyper("mom", mom)
        self.lrs.append(lr)
        self.moms.append(mom)
''',
            "the step recovered from fastai's self.pct_train (what ParamScheduler reads), rounded",
        ),
        Case(
            "passed_to_learner",
            '''\
class OneCycleScheduler(Callback):
    """Set the optimizer's 'lr' and 'mom' for each training batch along the 1cycle schedule; record them."""

    order, run_valid = 60, False

    def __init__(self, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
        super().__init__()
        self.lr_max, self.div, self.div_final, self.pct_start = lr_max, div, div_final, pct_start
        self.mom_cycle = tuple(moms)
        self.lrs, self.moms, self.plan = [], [], ([], [])

    def before_fit(self):
        n_steps = self.n_epoch * len(self.dls.train)
        self.plan = one_cycle_schedule(n_steps, self.lr_max, self.div, self.div_final, self.pct_start, self.mom_cycle)
        self.lrs.clear()
        self.moms.clear()

    def before_batch(self):
        lr, mom = self.plan[0][self.train_iter], self.plan[1][self.train_iter]
        self.opt.set_hyper("lr", lr)
        self.opt.set_hyper("mom", mom)
        self.lrs.append(lr)
        self.moms.append(mom)


# quick check: the scheduler given to the Learner itself, then a plain fit
set_seed(0)
check_dls = mnist_dls(512)
check_dls.train.n = 4 * 512  # four training batches are enough
check_sched = OneCycleScheduler(0.06)
check_model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
check = Learner(check_dls, check_model, loss_func=F.cross_entropy, cbs=check_sched)
with check.no_bar(), check.no_logging():
    check.fit(2)
assert check_sched.lrs == one_cycle_schedule(8, 0.06)[0] and check.opt.hypers[-1]["lr"] == check_sched.lrs[-1]
''',
            "the scheduler passed to Learner(..., cbs=...) in a quick self-check the student left in the cell",
        ),
        Case(
            "iterator_plan",
            '''\
class OneCycleScheduler(Callback):
    """Set the optimizer's 'lr' and 'mom' for each training batch along the 1cycle schedule; record them."""

    order, run_valid = 60, False

    def __init__(self, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
        super().__init__()
        self.settings = dict(lr_max=lr_max, div=div, div_final=div_final, pct_start=pct_start, moms=tuple(moms))
        self.lrs, self.moms = [], []
        self.upcoming = iter(())

    def before_fit(self):
        """Plan the learning rate and momentum of every training batch of this fit; empty the records."""
        lrs, moms = one_cycle_schedule(self.n_epoch * len(self.dls.train), **self.settings)
        self.upcoming = iter(zip(lrs, moms))
        self.lrs.clear()
        self.moms.clear()

    def before_batch(self):
        """Give the optimizer this batch's learning rate and momentum, and record them."""
        lr, mom = next(self.upcoming)  # called once per training batch (run_valid is False)
        self.opt.set_hypers(lr=lr, mom=mom)
        self.lrs.append(lr)
        self.moms.append(mom)
''',
            "the plan as an iterator consumed once per training batch; settings kept as a dict passed with **; "
            "Optimizer.set_hypers",
        ),
        Case(
            "training_guard",
            '''\
class OneCycleScheduler(Callback):
    """Set the optimizer's 'lr' and 'mom' for each training batch along the 1cycle schedule; record them."""

    order, run_valid = 60, False

    def __init__(self, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
        super().__init__()
        self.hp = (lr_max, div, div_final, pct_start, moms)
        self.lrs, self.moms = [], []
        self.plan_lr, self.plan_mom = [], []

    def before_fit(self):
        """Plan the learning rate and momentum of every training batch of this fit; empty the records."""
        lr_max, div, div_final, pct_start, moms = self.hp
        total = self.n_epoch * len(self.dls.train)
        self.plan_lr, self.plan_mom = one_cycle_schedule(total, lr_max, div, div_final, pct_start, moms)
        del self.lrs[:], self.moms[:]

    def before_batch(self):
        """Give the optimizer this batch's learning rate and momentum, and record them."""
        if not self.training:  # run_valid already keeps validation out; belt and braces
            return
        i = self.train_iter
        for name, plan, record in (("lr", self.plan_lr, self.lrs), ("mom", self.plan_mom, self.moms)):
            self.opt.set_hyper(name, plan[i])
            record.append(plan[i])
''',
            "an extra training check, the records emptied with del lst[:], one loop for both hyper-parameters",
        ),
        Case(
            "record_from_optimizer",
            '''\
class OneCycleScheduler(Callback):
    """Set the optimizer's 'lr' and 'mom' for each training batch along the 1cycle schedule; record them."""

    order, run_valid = 60, False

    def __init__(self, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
        super().__init__()
        self.lr_max = lr_max
        self.div = div
        self.div_final = div_final
        self.pct_start = pct_start
        self.mom_values = moms
        self.lrs = []
        self.moms = []
        self.schedule = None

    def before_fit(self):
        """Plan the learning rate and momentum of every training batch of this fit; empty the records."""
        steps = self.n_epoch * len(self.dls.train)
        self.schedule = one_cycle_schedule(
            steps, self.lr_max, div=self.div, div_final=self.div_final, pct_start=self.pct_start, moms=self.mom_values
        )
        self.lrs.clear()
        self.moms.clear()

    def before_batch(self):
        """Give the optimizer this batch's learning rate and momentum, and record them."""
        lrs, moms = self.schedule
        self.opt.set_hyper("lr", lrs[self.train_iter])
        self.opt.set_hyper("mom", moms[self.train_iter])
        self.lrs.append(self.opt.hypers[-1]["lr"])  # what the optimizer now holds
        self.moms.append(self.opt.hypers[-1]["mom"])
''',
            "one attribute per line, keyword arguments, the recorded values read back from the optimizer",
        ),
    ],
}

_SCHED_BASE = '''\
class OneCycleScheduler(Callback):
    """Set the optimizer's 'lr' and 'mom' for each training batch along the 1cycle schedule; record them."""

    order, run_valid = 60, False

    def __init__(self, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
        super().__init__()
        self.lr_max, self.div, self.div_final, self.pct_start = lr_max, div, div_final, pct_start
        self.mom_cycle = tuple(moms)
        self.lrs, self.moms, self.plan = [], [], ([], [])

    def before_fit(self):
        """Plan the learning rate and momentum of every training batch of this fit; empty the records."""
        n_steps = self.n_epoch * len(self.dls.train)
        self.plan = one_cycle_schedule(n_steps, self.lr_max, self.div, self.div_final, self.pct_start, self.mom_cycle)
        self.lrs.clear()
        self.moms.clear()

    def before_batch(self):
        """Give the optimizer this batch's learning rate and momentum, and record them."""
        lr, mom = self.plan[0][self.train_iter], self.plan[1][self.train_iter]
        self.opt.set_hyper("lr", lr)
        self.opt.set_hyper("mom", mom)
        self.lrs.append(lr)
        self.moms.append(mom)
'''


def _sched_variant(*replacements: str) -> str:
    """The reference-like scheduler above with pieces replaced: old1, new1, old2, new2, ... (each old must be there)."""
    source = _SCHED_BASE
    for old, new in zip(replacements[::2], replacements[1::2], strict=True):
        assert old in source, old
        source = source.replace(old, new)
    return source


WRONG: dict[str, list[Case]] = {
    "ex5_sched_cos": [
        Case(
            "runs_backwards",
            '''\
def sched_cos(start, end, pos):
    """Half a cosine wave from `start` (pos=0) to `end` (pos=1)."""
    return start + (1 + math.cos(math.pi * pos)) * (end - start) / 2
''',
            "cos(pi p) instead of cos(pi (1 - p)): pos=0 gives end and pos=1 gives start; fails the visible test",
        ),
        Case(
            "linear",
            '''\
def sched_cos(start, end, pos):
    """From `start` (pos=0) to `end` (pos=1)."""
    return start + (end - start) * pos
''',
            "a straight line: right at 0, 1/2 and 1, wrong in between; fails the visible test",
        ),
        Case(
            "torch_tensor",
            '''\
import torch


def sched_cos(start, end, pos):
    """Half a cosine wave from `start` (pos=0) to `end` (pos=1)."""
    angle = torch.tensor(math.pi * (1 - pos), dtype=torch.float64)
    return start + (1 + torch.cos(angle)) * (end - start) / 2
''',
            "states: returns a Python float; this returns a 0-d float64 tensor, which math.isclose in the visible "
            "tests accepts",
        ),
        Case(
            "no_halving",
            '''\
def sched_cos(start, end, pos):
    """Half a cosine wave from `start` (pos=0) to `end` (pos=1)."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start)
''',
            "the division by 2 is missing, so pos=1 overshoots to 2*end - start; fails the visible test",
        ),
    ],
    "ex5_combined_cos": [
        Case(
            "linear_phases",
            '''\
def combined_cos(pct, start, middle, end):
    """A schedule f(pos): cosine from start to middle on [0, pct], then from middle to end on [pct, 1]."""
    def schedule(pos):
        if pos < pct:
            return start + (middle - start) * pos / pct
        return middle + (end - middle) * (pos - pct) / (1 - pct)

    return schedule
''',
            "linear instead of cosine annealing within each phase; fails the visible test",
        ),
        Case(
            "second_phase_scale",
            '''\
def combined_cos(pct, start, middle, end):
    """A schedule f(pos): cosine from start to middle on [0, pct], then from middle to end on [pct, 1]."""
    def schedule(pos):
        if pos < pct:
            return sched_cos(start, middle, pos / pct)
        return sched_cos(middle, end, (pos - pct) / pct)

    return schedule
''',
            "the second phase rescaled by pct instead of 1 - pct; fails the visible test",
        ),
        Case(
            "positions_not_rescaled",
            '''\
def combined_cos(pct, start, middle, end):
    """A schedule f(pos): cosine from start to middle on [0, pct], then from middle to end on [pct, 1]."""
    return lambda pos: sched_cos(start, middle, pos) if pos < pct else sched_cos(middle, end, pos)
''',
            "pos passed to both phases unchanged instead of rescaled to [0, 1]; fails the visible test",
        ),
        Case(
            "copied_without_cap",
            '''\
def combined_cos(pct, start, middle, end):
    """A schedule f(pos): cosine from start to middle on [0, pct], then from middle to end on [pct, 1]."""
    edges = [0.0, pct, 1.0]
    phases = [(start, middle), (middle, end)]

    def schedule(pos):
        idx = max(i for i, edge in enumerate(edges) if pos >= edge)
        return sched_cos(*phases[idx], (pos - edges[idx]) / (edges[idx + 1] - edges[idx]))

    return schedule
''',
            "fastai's combine_scheds copied without its min(..., pct_lim): pos=1 selects a third phase that does not "
            "exist (IndexError); fails the visible test",
        ),
    ],
    "ex5_one_cycle": [
        Case(
            "last_at_one",
            '''\
def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """(lrs, moms): the learning rate and momentum of each of the n_steps training batches of a 1cycle run."""
    lr_sched = combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final)
    mom_sched = combined_cos(pct_start, *moms)
    positions = [i / max(n_steps - 1, 1) for i in range(n_steps)]
    return [lr_sched(p) for p in positions], [mom_sched(p) for p in positions]
''',
            "off by one: the last batch sits at pos = 1 instead of (n_steps - 1) / n_steps; fails the visible tests",
        ),
        Case(
            "numpy_arrays",
            '''\
def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """(lrs, moms): the learning rate and momentum of each of the n_steps training batches of a 1cycle run."""
    lr_sched = combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final)
    mom_sched = combined_cos(pct_start, *moms)
    positions = np.arange(n_steps) / n_steps
    return np.array([lr_sched(p) for p in positions]), np.array([mom_sched(p) for p in positions])
''',
            "states: returns two lists; these are numpy arrays (no list.index, used by the notebook's next cell), "
            "which the visible tests accept",
        ),
        Case(
            "default_moms",
            '''\
def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """(lrs, moms): the learning rate and momentum of each of the n_steps training batches of a 1cycle run."""
    lr_sched = combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final)
    mom_sched = combined_cos(pct_start, 0.95, 0.85, 0.95)
    positions = [i / n_steps for i in range(n_steps)]
    return [lr_sched(p) for p in positions], [mom_sched(p) for p in positions]
''',
            "the momentum cycle hard-coded to fastai's default, ignoring `moms`; fails the visible test",
        ),
        Case(
            "divisors_swapped",
            '''\
def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """(lrs, moms): the learning rate and momentum of each of the n_steps training batches of a 1cycle run."""
    lr_sched = combined_cos(pct_start, lr_max / div_final, lr_max, lr_max / div)
    mom_sched = combined_cos(pct_start, *moms)
    positions = [i / n_steps for i in range(n_steps)]
    return [lr_sched(p) for p in positions], [mom_sched(p) for p in positions]
''',
            "div and div_final swapped: starts at lr_max / 1e5 and ends at lr_max / 25; fails the visible test",
        ),
        Case(
            "fixed_warmup",
            '''\
def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """(lrs, moms): the learning rate and momentum of each of the n_steps training batches of a 1cycle run."""
    lr_sched = combined_cos(0.25, lr_max / div, lr_max, lr_max / div_final)
    mom_sched = combined_cos(0.25, *moms)
    positions = [i / n_steps for i in range(n_steps)]
    return [lr_sched(p) for p in positions], [mom_sched(p) for p in positions]
''',
            "the warm-up fraction hard-coded to 0.25, ignoring pct_start; fails the visible test",
        ),
    ],
    "ex5_scheduler": [
        Case(
            "restarts_every_epoch",
            _sched_variant(
                "lr, mom = self.plan[0][self.train_iter], self.plan[1][self.train_iter]",
                "lr, mom = self.plan[0][self.iter], self.plan[1][self.iter]",
            ),
            "the schedule restarts every epoch: self.iter counts the batches of the current epoch only; fails test",
        ),
        Case(
            "schedules_validation",
            _sched_variant(
                "order, run_valid = 60, False",
                "order = 60",
                "        self.lrs.clear()\n        self.moms.clear()\n",
                "        self.lrs.clear()\n        self.moms.clear()\n        self.step = 0\n",
                "lr, mom = self.plan[0][self.train_iter], self.plan[1][self.train_iter]",
                "lr, mom = self.plan[0][self.step], self.plan[1][self.step]\n        self.step += 1",
            ),
            "run_valid left at its default (True) and an own step counter: validation batches also advance the "
            "schedule and are recorded; fails the visible tests",
        ),
        Case(
            "shadows_moms",
            _sched_variant(
                "        self.lrs.clear()\n        self.moms.clear()\n",
                "        self.lrs = []\n        self.moms = []\n",
            ),
            "states: inside fastai events do not assign attributes the learner has (moms); fastai only warns, "
            "so the visible tests pass",
        ),
        Case(
            "records_kept",
            _sched_variant("        self.lrs.clear()\n        self.moms.clear()\n", ""),
            "the records are not emptied in before_fit, so a second fit appends to the first one's; fails test2",
        ),
        Case(
            "one_epoch_planned",
            _sched_variant(
                "n_steps = self.n_epoch * len(self.dls.train)",
                "n_steps = len(self.dls.train)",
            ),
            "plans one epoch only, so a two-epoch fit runs off the end of the plan (IndexError); fails the test",
        ),
        Case(
            "momentum_not_set",
            _sched_variant('        self.opt.set_hyper("mom", mom)\n', ""),
            "only the learning rate reaches the optimizer, the momentum is recorded but never set; fails the test",
        ),
    ],
}
