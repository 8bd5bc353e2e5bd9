"""Search spaces: named choices, Configs, exact size, uniform sampling, encodings.

A *Config* is a plain ``dict[str, value]`` naming one sub-network. A choice may depend on a depth
choice: ``stage1.block3.kernel`` only exists when ``stage1.depth > 3``. Such a choice is *inactive*
otherwise; inactive choices are dropped from the canonical form, so two dicts that differ only in
inactive values name the same sub-network and share one key.
"""
from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .errors import ConfigError

Config = dict[str, Any]


@dataclass(frozen=True)
class Choice:
    """One architectural decision: a name and a finite ordered list of options (smallest first).

    ``active_if=(depth_choice, k)`` makes the choice active only when ``cfg[depth_choice] > k``.
    ``prior``: sampling weights of the options, for a setting with a natural default that random samples
    should mostly keep (a block's precision: INT8 unless a sample keeps it FP32); None (architectural
    choices): uniform over distinct sub-networks. A prior changes what is sampled, never what exists.
    """

    name: str
    options: tuple
    active_if: tuple[str, int] | None = None
    prior: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.options:
            raise ConfigError(f"choice {self.name!r} has no options")
        if self.prior is not None and (len(self.prior) != len(self.options) or min(self.prior) < 0
                                       or not sum(self.prior) > 0):
            raise ConfigError(f"choice {self.name!r}: prior {self.prior} needs one non-negative weight per "
                              f"option ({len(self.options)}), not all zero")
        if len(set(map(_hashable, self.options))) != len(self.options):
            raise ConfigError(f"choice {self.name!r} has duplicate options {self.options}")

    def index(self, value: Any) -> int:
        for i, opt in enumerate(self.options):
            if _same(opt, value):
                return i
        raise ConfigError(
            f"invalid value {value!r} for {self.name!r}; allowed: {', '.join(map(repr, self.options))}"
        )


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, bool) or isinstance(a, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-12)
    return _hashable(a) == _hashable(b)


@dataclass
class SearchSpace:
    """An ordered set of choices plus named presets."""

    choices: list[Choice]
    presets: dict[str, Config] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_name = {c.name: c for c in self.choices}
        if len(self._by_name) != len(self.choices):
            raise ConfigError("search space has duplicate choice names")
        for c in self.choices:
            if c.active_if is not None:
                parent = self._by_name.get(c.active_if[0])
                if parent is None or parent.active_if is not None:
                    raise ConfigError(f"choice {c.name!r} depends on unknown or nested choice {c.active_if[0]!r}")
        # groups: each depth choice with its dependents; free choices are groups of one
        self._dependents: dict[str, list[Choice]] = {}
        for c in self.choices:
            if c.active_if is not None:
                self._dependents.setdefault(c.active_if[0], []).append(c)

    # ----------------------------------------------------------------- basics
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.choices]

    def __getitem__(self, name: str) -> Choice:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self.choices)

    def is_active(self, choice: Choice, cfg: Mapping[str, Any]) -> bool:
        if choice.active_if is None:
            return True
        parent, k = choice.active_if
        return cfg[parent] > k

    # ------------------------------------------------------------------ size
    def _group_weights(self, parent: Choice, sampling: bool = False) -> list[float]:
        """Number of distinct assignments of ``parent`` and its dependents, per parent option; with
        ``sampling``, the weights :meth:`sample` draws ``parent`` with (dependents with a prior count once:
        they are drawn from it, so a prior on them does not change how often each depth is drawn;
        ``parent``'s own prior multiplies)."""
        deps = self._dependents.get(parent.name, [])
        out = []
        for opt in parent.options:
            n = 1
            for d in deps:
                if opt > d.active_if[1] and not (sampling and d.prior is not None):
                    n *= len(d.options)
            out.append(n)
        if sampling and parent.prior is not None:
            return [n * w for n, w in zip(out, parent.prior)]
        return out

    def size(self) -> int:
        """Exact number of distinct sub-networks (inactive choices do not multiply the count)."""
        total = 1
        for c in self.choices:
            if c.active_if is None:
                total *= sum(self._group_weights(c))
        return total

    # ------------------------------------------------------------- validation
    def validate(self, cfg: Mapping[str, Any]) -> Config:
        """Check ``cfg`` and return its canonical form; raise ConfigError naming the bad key/value."""
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"a config must be a mapping of choice names to values, got {type(cfg).__name__}")
        unknown = [k for k in cfg if k not in self._by_name]
        if unknown:
            raise ConfigError(f"unknown choice {unknown[0]!r}; known choices: {', '.join(self.names[:8])}"
                              + (", ..." if len(self) > 8 else ""))
        out: Config = {}
        for c in self.choices:  # parents come before dependents in every family; check parents first
            if c.active_if is None:
                if c.name not in cfg:
                    raise ConfigError(f"missing choice {c.name!r}; allowed: {', '.join(map(repr, c.options))}")
                out[c.name] = c.options[c.index(cfg[c.name])]
        for c in self.choices:
            if c.active_if is not None and self.is_active(c, out):
                if c.name not in cfg:
                    raise ConfigError(f"missing choice {c.name!r}; allowed: {', '.join(map(repr, c.options))}")
                out[c.name] = c.options[c.index(cfg[c.name])]
            elif c.active_if is not None and c.name in cfg:
                c.index(cfg[c.name])  # an inactive value must still be a legal option
        return {c.name: out[c.name] for c in self.choices if c.name in out}

    def canonical(self, cfg: Mapping[str, Any]) -> Config:
        return self.validate(cfg)

    def key(self, cfg: Mapping[str, Any]) -> str:
        """Canonical JSON of the config: sorted keys, inactive choices dropped."""
        return json.dumps(self.validate(cfg), sort_keys=True, separators=(",", ":"))

    def from_key(self, key: str) -> Config:
        try:
            return self.validate(json.loads(key))
        except json.JSONDecodeError as e:
            raise ConfigError(f"not a config key: {key[:60]!r}") from e

    def fill(self, cfg: Mapping[str, Any]) -> Config:
        """Canonical config with inactive choices filled by their smallest option (a full dict)."""
        canon = self.validate(cfg)
        return {c.name: canon.get(c.name, c.options[0]) for c in self.choices}

    # --------------------------------------------------------------- sampling
    def sample(self, seed: int | None = None, rng: random.Random | None = None) -> Config:
        """Draw one config **uniformly over distinct sub-networks** (choices with a ``prior`` from it).

        A depth option is drawn with probability proportional to the number of sub-networks it
        allows (e.g. depth 4 with 9 options per block is 81x more likely than depth 2), then each
        active dependent choice uniformly. ``seed`` makes the draw reproducible.
        """
        r = rng if rng is not None else random.Random(seed)
        cfg: Config = {}
        for c in self.choices:
            if c.active_if is None:
                weights = self._group_weights(c, sampling=True)
                cfg[c.name] = r.choices(c.options, weights=weights)[0] if len(weights) > 1 else c.options[0]
        for c in self.choices:
            if c.active_if is not None and self.is_active(c, cfg):
                cfg[c.name] = r.choices(c.options, weights=c.prior)[0] if c.prior else r.choice(c.options)
        return self.validate(cfg)

    def sample_many(self, n: int, seed: int | None = None, unique: bool = True) -> list[Config]:
        """``n`` uniform draws; distinct ones when ``unique`` (at most ``size()``)."""
        r = random.Random(seed)
        if not unique:
            return [self.sample(rng=r) for _ in range(n)]
        n = min(n, self.size())
        seen: dict[str, Config] = {}
        while len(seen) < n:
            cfg = self.sample(rng=r)
            seen.setdefault(self.key(cfg), cfg)
        return list(seen.values())

    def largest(self) -> Config:
        return self.validate({c.name: c.options[-1] for c in self.choices})

    def smallest(self) -> Config:
        return self.validate({c.name: c.options[0] for c in self.choices})

    def median(self) -> Config:
        return self.validate({c.name: c.options[len(c.options) // 2] for c in self.choices})

    def preset(self, name: str) -> Config:
        builtin = {"largest": self.largest, "smallest": self.smallest, "median": self.median}
        if name in builtin:
            return builtin[name]()
        if name not in self.presets:
            known = sorted(set(self.presets) | set(builtin))
            raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(known)}")
        return self.validate(self.presets[name])

    def enumerate(self) -> Iterator[Config]:
        """Every distinct sub-network once (only sensible for small spaces)."""
        free = [c for c in self.choices if c.active_if is None]

        def expand(parent: Choice) -> list[Config]:
            out = []
            for opt in parent.options:
                deps = [d for d in self._dependents.get(parent.name, []) if opt > d.active_if[1]]
                for combo in itertools.product(*(d.options for d in deps)):
                    part = {parent.name: opt}
                    part.update({d.name: v for d, v in zip(deps, combo)})
                    out.append(part)
            return out

        for parts in itertools.product(*(expand(c) for c in free)):
            cfg: Config = {}
            for p in parts:
                cfg.update(p)
            yield self.validate(cfg)

    # -------------------------------------------------------------- encodings
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Integer bounds (inclusive) of ``encode`` vectors, for pymoo."""
        return np.zeros(len(self), dtype=int), np.array([len(c.options) - 1 for c in self.choices])

    def encode(self, cfg: Mapping[str, Any]) -> np.ndarray:
        """Int vector of option indices; inactive choices encode as 0."""
        canon = self.validate(cfg)
        return np.array([c.index(canon[c.name]) if c.name in canon else 0 for c in self.choices], dtype=int)

    def decode(self, vec: Sequence[int] | np.ndarray) -> Config:
        """Inverse of ``encode``; any in-bounds vector decodes to a valid config (inactive genes ignored)."""
        vals = [int(round(float(v))) for v in vec]
        if len(vals) != len(self):
            raise ConfigError(f"encoded config has length {len(vals)}, the space has {len(self)} choices")
        cfg = {}
        for c, i in zip(self.choices, vals):
            if not 0 <= i < len(c.options):
                raise ConfigError(f"index {i} out of range for {c.name!r} (0..{len(c.options) - 1})")
            cfg[c.name] = c.options[i]
        return self.validate(cfg)

    def feature_names(self) -> list[str]:
        names = []
        for c in self.choices:
            names.append(f"{c.name}#ord")
            names.extend(f"{c.name}={o}" for o in c.options)
        return names

    def features(self, cfg: Mapping[str, Any]) -> np.ndarray:
        """Float vector for predictors: per choice an ordinal value in (0, 1] (0 when inactive) followed
        by a one-hot of the option (all zeros when inactive)."""
        canon = self.validate(cfg)
        out: list[float] = []
        for c in self.choices:
            n = len(c.options)
            onehot = [0.0] * n
            if c.name in canon:
                i = c.index(canon[c.name])
                onehot[i] = 1.0
                out.append((i + 1) / n)
            else:
                out.append(0.0)
            out.extend(onehot)
        return np.asarray(out, dtype=np.float64)

    def features_many(self, cfgs: Iterable[Mapping[str, Any]]) -> np.ndarray:
        return np.stack([self.features(c) for c in cfgs])

    def describe(self) -> str:
        return f"SearchSpace({len(self)} choices, {self.size():.3e} sub-networks)"
