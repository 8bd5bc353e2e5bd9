"""Child-process jobs for the kill-and-resume tests: a seeded search and a supernet training that can be
told to SIGKILL themselves at the n-th occurrence of a phase ("eval", "commit", "fit", "step", "save").

Every job runs in a forked child (``run_in_child``) or as ``python tests/reliability_worker.py JOB JSON``.
The hooks only exist inside the child: it monkeypatches the library so the kill lands *inside* the phase
(mid SQLite transaction, mid predictor fit, mid checkpoint write), which a timer alone rarely hits.
"""
from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_fixtures import small_eval, small_space  # noqa: E402

SEARCH = dict(strategy="linas", evaluations=40, seed=7, run="kill", batch_size=4, progress=False,
              strategy_options=dict(initial=8, population=8, inner_pop=16, inner_generations=3,
                                    models=("ridge",), folds=3))
COLUMNS = ["accuracy", "macs"]
EVAL_SLEEP_S = 0.02
FIT_SLEEP_S = 0.03


class Killer:
    """SIGKILLs this process at the ``n``-th hook of ``phase`` (counting hooks in this process only)."""

    def __init__(self, phase: str | None, n: int) -> None:
        self.phase, self.n, self.seen = phase, n, 0

    def __call__(self, phase: str) -> None:
        if phase == self.phase:
            self.seen += 1
            if self.seen >= self.n:
                os.kill(os.getpid(), signal.SIGKILL)


def evaluate(cfg: dict) -> dict[str, float]:
    HOOK("eval")
    time.sleep(EVAL_SLEEP_S)
    return small_eval(cfg)


HOOK: Any = lambda phase: None  # noqa: E731 - replaced in the child


def search_job(store: str, commit_log: str, result: str | None = None, kill: tuple[str | None, int] = (None, 0)
               ) -> None:
    """Run (or resume) the seeded search; append each committed key to ``commit_log`` after its commit
    returns; write the final front/history to ``result``."""
    global HOOK
    from supernas.search import linas, search
    from supernas.store import Store

    HOOK = Killer(*kill)
    real_write, real_put, real_fit = Store._write, Store.put, linas.fit_predictor

    def write(self, fn):  # the hook runs inside the IMMEDIATE transaction, after the inserts, before COMMIT
        def tx(conn):
            out = fn(conn)
            HOOK("commit")
            return out
        return real_write(self, tx)

    def put(self, run, key, config, values, **kw):
        out = real_put(self, run, key, config, values, **kw)
        with open(commit_log, "a") as f:
            f.write(json.dumps({"key": key, "values": dict(values)}) + "\n")
        return out

    def fit(*args, **kw):
        HOOK("fit")
        time.sleep(FIT_SLEEP_S)
        return real_fit(*args, **kw)

    Store._write, Store.put, linas.fit_predictor = write, put, fit
    res = search(small_space(), evaluate, COLUMNS, store=store, **SEARCH)
    if result:
        Path(result).write_text(json.dumps({
            "front": res.keys, "history": [e.key for e in res.evaluations],
            "hypervolume": res.hypervolume, "knee": res.knee.key if res.knee else None}))


def shared_search_job(store: str, result: str, start_at: float) -> None:
    """One of several processes running the same seeded NSGA-II search into one store at the same time."""
    from supernas.search import search

    time.sleep(max(0.0, start_at - time.time()))  # start together
    res = search(small_space(), small_eval, COLUMNS, strategy="nsga2", evaluations=24, seed=3, store=store,
                 run="shared", batch_size=4, progress=False, strategy_options={"pop_size": 8})
    Path(result).write_text(json.dumps({"front": sorted(res.keys), "history": [e.key for e in res.evaluations]}))


# ------------------------------------------------------------------------------------------ training
TRAIN = dict(epochs=3, batch_size=16, num_random=1, progress=False, lr=0.05, eval_every=0, seed=3,
             warmup_epochs=1, num_threads=1)
TINY = dict(num_classes=10, image_size=8, in_channels=1, width_mult=0.25, stem_stride=1, dropout=0.0,
            depths=(1, 2), kernel_sizes=(3, 5), expand_ratios=(2, 4))


def tiny_data():
    import torch
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    return TensorDataset(x, y), TensorDataset(x[:16], y[:16])


def train_job(ckpt_dir: str, kill: tuple[str | None, int] = (None, 0), init_seed: int = 0) -> None:
    """Train (resuming from ``ckpt_dir``) the tiny supernet; ``kill`` = ("step", n) dies in the n-th
    training step, ("save", n) in the middle of writing the n-th checkpoint (half the bytes on disk)."""
    import torch

    import supernas as sn
    import supernas.train.checkpoint as checkpoint
    import supernas.train.trainer as trainer

    torch.set_num_threads(1)
    killer = Killer(*kill)
    real_step, real_save = trainer.sandwich_step, torch.save

    def step(*args, **kw):
        killer("step")
        return real_step(*args, **kw)

    def save(obj, f, *args, **kw):  # serialise, write the first half, die (or write it all)
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kw)
        data = buf.getvalue()
        if kill[0] == "save" and killer.seen + 1 >= kill[1]:
            f.write(data[: len(data) // 2])
            f.flush()
        killer("save")
        f.write(data)

    trainer.sandwich_step = step
    checkpoint.torch.save = save
    torch.manual_seed(init_seed)
    net = sn.create_supernet("mbv3", **TINY)
    trainer.train(net, tiny_data(), checkpoint_dir=ckpt_dir, resume=True, **TRAIN)


# ------------------------------------------------------------------------------------------ running
JOBS = {"search": search_job, "shared_search": shared_search_job, "train": train_job}


def _child(job: str, kwargs: dict) -> None:
    JOBS[job](**kwargs)


def start_child(job: str, **kwargs: Any) -> mp.Process:
    import importlib

    importlib.import_module("supernas.train" if job == "train" else "supernas.search")  # imported once, forked
    proc = mp.get_context("fork").Process(target=_child, args=(job, kwargs))
    proc.start()
    return proc


def run_in_child(job: str, timeout: float = 120.0, kill_after_s: float | None = None, **kwargs: Any) -> int:
    """Run ``job`` in a forked child; SIGKILL it after ``kill_after_s`` seconds when given. Returns the
    child's exit code (``-9`` when it was killed, by itself or by the timer)."""
    proc = start_child(job, **kwargs)
    proc.join(kill_after_s if kill_after_s is not None else timeout)
    if proc.exitcode is None and kill_after_s is not None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout)
    if proc.exitcode is None:  # hung: never leave it behind
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        raise TimeoutError(f"{job} child did not finish in {timeout} s")
    return int(proc.exitcode)


if __name__ == "__main__":  # python tests/reliability_worker.py search '{"store": ..., "commit_log": ...}'
    JOBS[sys.argv[1]](**json.loads(sys.argv[2]))
