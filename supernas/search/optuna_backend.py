"""Optuna's multi-objective samplers (TPE, NSGA-II) as an alternative search backend.

Each choice is an integer parameter (its option index); a choice that depends on a depth choice is
only suggested when active, so Optuna sees the conditional space as it is. Configs measured outside
Optuna (warm start, resume) are added as completed trials; duplicates proposed by the sampler are told
their known result at once and not handed out again. Constraints (values <= 0 are feasible) are set on the
trials with Optuna >= 5 (``Trial.set_constraint``, ``create_trial(constraints=...)``) and go through the
samplers' ``constraints_func`` before (deprecated in 5).
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import optuna
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from ..errors import ConfigError
from ..space import Config, SearchSpace
from .base import Result, Strategy, register_strategy

SAMPLERS = ("tpe", "nsga2")
MAX_DUPLICATE_TRIALS = 50
CONSTRAINT_ATTR = "supernas_constraints"
#: Optuna >= 5 keeps constraints on the trial itself
TRIAL_CONSTRAINTS = hasattr(optuna.trial.Trial, "set_constraint")


def _constraints_of(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    return trial.user_attrs.get(CONSTRAINT_ATTR, [])


@register_strategy("optuna")
class OptunaStrategy(Strategy):
    """``sampler``: ``tpe`` (multivariate TPE) or ``nsga2`` (Optuna's NSGAIISampler, ``pop_size``)."""

    def __init__(self, space: SearchSpace, columns: Sequence[str], *, seed: int = 0, constraints: Any = None,
                 sampler: str = "tpe", pop_size: int = 20, startup: int = 10) -> None:
        super().__init__(space, columns, seed=seed, constraints=constraints)
        cfunc = _constraints_of if self.constraints and not TRIAL_CONSTRAINTS else None
        if sampler == "tpe":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                smp: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
                    seed=self.seed, multivariate=True, group=True, n_startup_trials=startup, constraints_func=cfunc)
        elif sampler == "nsga2":
            smp = optuna.samplers.NSGAIISampler(seed=self.seed, population_size=pop_size, constraints_func=cfunc)
        else:
            raise ConfigError(f"unknown optuna sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        directions = ["minimize" if s > 0 else "maximize" for s in self.signs]
        self.study = optuna.create_study(directions=directions, sampler=smp)
        self._pending: dict[str, list[optuna.trial.Trial]] = {}

    def _suggest(self, trial: optuna.trial.Trial) -> Config:
        cfg: Config = {}
        for c in self.space.choices:
            if c.active_if is None or self.space.is_active(c, cfg):
                cfg[c.name] = c.options[trial.suggest_int(c.name, 0, len(c.options) - 1)]
        return self.space.validate(cfg)

    def _tell_trial(self, trial: optuna.trial.Trial, res: Result) -> None:
        if res is None:
            self.study.tell(trial, state=TrialState.FAIL)
            return
        if self.constraints:
            if TRIAL_CONSTRAINTS:
                for k, v in self._constraint_dict(res).items():
                    trial.set_constraint(k, v)
            else:
                trial.set_user_attr(CONSTRAINT_ATTR, [float(v) for v in self.violations(res)])
        self.study.tell(trial, [float(res[c]) for c in self.columns])

    def _propose(self, n: int) -> list[Config]:
        out: dict[str, Config] = {}
        duplicates = 0
        while len(out) < n and duplicates < MAX_DUPLICATE_TRIALS:
            trial = self.study.ask()
            cfg = self._suggest(trial)
            key = self.space.key(cfg)
            if key in self.results:          # sampler proposed a measured config: tell it the known result
                self._tell_trial(trial, self.results[key])
                duplicates += 1
            elif key in out or key in self.asked:   # already waiting for a result
                self.study.tell(trial, state=TrialState.FAIL)
                duplicates += 1
            else:
                out[key] = cfg
                self._pending.setdefault(key, []).append(trial)
        if len(out) < n:
            out.update((self.space.key(c), c) for c in self.random_unseen(n - len(out), exclude=out.values()))
        return list(out.values())

    def _told(self, cfgs: Sequence[Mapping[str, Any]], results: Sequence[Result]) -> None:
        for cfg, res in zip(cfgs, results):
            key = self.space.key(cfg)
            trials = self._pending.pop(key, None)
            if trials:
                for t in trials:
                    self._tell_trial(t, self.results[key])
            elif res is not None:
                self._add_external(key, self.results[key])  # type: ignore[arg-type]

    def _add_external(self, key: str, res: Mapping[str, float]) -> None:
        canon = self.configs[key]
        params, dists = {}, {}
        for c in self.space.choices:
            if c.name in canon:
                params[c.name] = c.index(canon[c.name])
                dists[c.name] = IntDistribution(0, len(c.options) - 1)
        kw: dict[str, Any] = {}
        if self.constraints and TRIAL_CONSTRAINTS:
            kw["constraints"] = self._constraint_dict(res)
        elif self.constraints:
            kw["user_attrs"] = {CONSTRAINT_ATTR: [float(v) for v in self.violations(res)]}
        self.study.add_trial(create_trial(params=params, distributions=dists,
                                          values=[float(res[c]) for c in self.columns], **kw))

    def _constraint_dict(self, res: Mapping[str, float]) -> dict[str, float]:
        """Violations keyed by position (Optuna >= 5 names every constraint)."""
        return {str(i): float(v) for i, v in enumerate(self.violations(res))}
