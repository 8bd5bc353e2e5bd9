"""Which sub-networks a training step visits: the sandwich rule and progressive-shrinking phases.

A *phase* is a restriction of the search space: some choices are pinned to their largest option.
Once-for-All's progressive shrinking is the phase sequence full -> +kernel -> +depth -> +expand/width,
expressed through choice names (``*.kernel``, ``*.depth``, ``*.expand``/``*.width``/``resolution``), so it
applies to every family whose choices follow these names (mbv3, resnet).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from ..space import Choice, Config, SearchSpace

PHASE_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("full", ()), ("kernel", ("kernel",)), ("depth", ("kernel", "depth")),
    ("expand", ("kernel", "depth", "expand", "width", "resolution", "*")),
)


def choice_kind(name: str) -> str:
    """The last dotted part of a choice name: ``stage1.block2.kernel`` -> ``kernel``."""
    return name.rsplit(".", 1)[-1]


def restrict(space: SearchSpace, free_kinds: tuple[str, ...]) -> SearchSpace:
    """The sub-space where only choices of ``free_kinds`` vary ("*" frees every kind); others are pinned
    to their largest option. Configs of the result are valid configs of ``space``."""
    def keep(c: Choice) -> bool:
        return "*" in free_kinds or choice_kind(c.name) in free_kinds

    return SearchSpace([c if keep(c) else Choice(c.name, (c.options[-1],), c.active_if) for c in space.choices])


@dataclass(frozen=True)
class Phase:
    """One stage of progressive shrinking: a name, the sub-space it trains and its epoch range."""

    name: str
    space: SearchSpace
    start_epoch: int
    end_epoch: int  # exclusive


def progressive_phases(space: SearchSpace, epochs: int, phase_epochs: list[int] | None = None) -> list[Phase]:
    """The phases that free at least one new choice of ``space`` (a family without kernel choices skips
    the kernel phase), with ``epochs`` split equally between them unless ``phase_epochs`` says otherwise."""
    phases: list[tuple[str, SearchSpace]] = []
    prev_size = 0
    for name, kinds in PHASE_KINDS:
        sub = restrict(space, kinds)
        if sub.size() > prev_size:
            phases.append((name, sub))
            prev_size = sub.size()
    if phase_epochs is None:
        base, extra = divmod(epochs, len(phases))
        phase_epochs = [base + (1 if i < extra else 0) for i in range(len(phases))]
    elif len(phase_epochs) != len(phases):
        from ..errors import ConfigError
        raise ConfigError(f"phase_epochs needs {len(phases)} entries ({', '.join(n for n, _ in phases)}), "
                          f"got {len(phase_epochs)}")
    out, start = [], 0
    for (name, sub), n in zip(phases, phase_epochs):
        out.append(Phase(name, sub, start, start + n))
        start += n
    return [p for p in out if p.end_epoch > p.start_epoch]


def phase_at(phases: list[Phase], epoch: int) -> Phase:
    for p in phases:
        if p.start_epoch <= epoch < p.end_epoch:
            return p
    return phases[-1]


def sample_by_choice(space: SearchSpace, rng: random.Random) -> Config:
    """Every free choice uniform on its own options, then every active dependent one (Once-for-All's
    sampler: depth 2 is as likely as depth 4)."""
    cfg: Config = {c.name: rng.choice(c.options) for c in space.choices if c.active_if is None}
    for c in space.choices:
        if c.active_if is not None and space.is_active(c, cfg):
            cfg[c.name] = rng.choice(c.options)
    return space.validate(cfg)


def step_configs(space: SearchSpace, rule: str, num_random: int, rng: random.Random,
                 sampler: str = "choice") -> list[Config]:
    """The sub-networks one step trains, teacher first: ``sandwich`` = largest, smallest, ``num_random``
    random; ``largest`` = largest only; ``random`` = largest + ``num_random`` random (no smallest). A space
    holding one sub-network (progressive shrinking's first phase) trains it once, not once per slot."""
    def draw() -> Config:
        return sample_by_choice(space, rng) if sampler == "choice" else space.sample(rng=rng)

    if rule == "largest" or space.size() == 1:
        return [space.largest()]
    head = [space.largest(), space.smallest()] if rule == "sandwich" else [space.largest()]
    return head + [draw() for _ in range(num_random)]


def step_rng(seed: int, epoch: int, step: int) -> random.Random:
    """A fresh generator for one step: the sampled sub-networks depend only on (seed, epoch, step), so a
    resumed run and every DDP rank draw the same ones."""
    return random.Random(f"{seed}:{epoch}:{step}")
