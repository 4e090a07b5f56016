"""Wrong answers for ex5 (05_one_cycle): each must cost exactly its own task."""

WRONG = {
    # the cosine runs the wrong way: pos=0 gives `end` and pos=1 gives `start`
    "ex5_sched_cos": '''\
def sched_cos(start, end, pos):
    """Half a cosine wave from `start` (pos=0) to `end` (pos=1)."""
    return start + (1 + math.cos(math.pi * pos)) * (end - start) / 2
''',
    # linear instead of cosine annealing within each phase
    "ex5_combined_cos": '''\
def combined_cos(pct, start, middle, end):
    """A schedule f(pos): cosine from start to middle on [0, pct], then from middle to end on [pct, 1]."""
    def schedule(pos):
        if pos < pct:
            return start + (middle - start) * pos / pct
        return middle + (end - middle) * (pos - pct) / (1 - pct)

    return schedule
''',
    # off by one: the last batch sits at pos = 1 instead of (n_steps - 1) / n_steps
    "ex5_one_cycle": '''\
def one_cycle_schedule(n_steps, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """(lrs, moms): the learning rate and momentum of each of the n_steps training batches of a 1cycle run."""
    lr_sched = combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final)
    mom_sched = combined_cos(pct_start, *moms)
    positions = [i / max(n_steps - 1, 1) for i in range(n_steps)]
    return [lr_sched(p) for p in positions], [mom_sched(p) for p in positions]
''',
    # the schedule restarts every epoch: `self.iter` counts the batches of the current epoch only
    "ex5_scheduler": '''\
class OneCycleScheduler(Callback):
    """Set the optimizer's 'lr' and 'mom' for each training batch along the 1cycle schedule; record them."""

    order, run_valid = 60, False  # as fastai's ParamScheduler: late in each event, training batches only

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
        lr, mom = self.plan[0][self.iter], self.plan[1][self.iter]
        self.opt.set_hyper("lr", lr)
        self.opt.set_hyper("mom", mom)
        self.lrs.append(lr)
        self.moms.append(mom)
''',
}
