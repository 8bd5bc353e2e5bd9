"""The supernet trainer: sandwich rule, in-place distillation, progressive shrinking, warm-up + cosine
schedule, atomic per-epoch checkpoints with exact resume, NaN guard, torchrun/DDP, AMP on CUDA, bfloat16 on
CPUs with native bfloat16 (AMX or AVX-512 BF16)."""
from __future__ import annotations

import contextlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..data import DatasetPair, TrainingData, loaders
from ..errors import CheckpointError
from ..supernets import Supernet
from . import distributed as D
from .bn import zero_init_residual
from .checkpoint import LAST, METRICS, load_checkpoint, plain, rng_state, save_checkpoint, set_rng_state, with_defaults
from .config import TrainConfig, TrainingError
from .evaluate import subnet_accuracy
from .losses import student_loss, token_cross_entropy
from .sampling import Phase, phase_at, progressive_phases, step_configs, step_rng


@dataclass
class TrainResult:
    """What a training run did: per-epoch metrics, the checkpoint written, wall time."""

    config: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    elapsed_s: float = 0.0
    resumed_from: int | None = None  # epochs already done in the checkpoint resumed from

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def _training_data(data: Any) -> TrainingData:
    if isinstance(data, TrainingData):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return DatasetPair(data[0], data[1])
    raise TrainingError("data must be a DataBundle (from supernas.data), a TextBundle or a (train_dataset, "
                        "val_dataset) pair")


def make_optimizer(net: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW; batch-norm weights and biases get no weight decay when asked."""
    decay, no_decay = [], []
    for p in net.parameters():
        if p.requires_grad:
            (no_decay if cfg.no_decay_bn_bias and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-step schedule: linear warm-up for ``warmup_epochs`` then cosine decay to ``lr * min_lr_ratio``."""
    total = cfg.epochs * steps_per_epoch
    warm = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total - 1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total - warm, 1),
                                                        eta_min=cfg.lr * cfg.min_lr_ratio)
    if warm <= 0:
        return cosine
    linear = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / (warm + 1), total_iters=warm)
    return torch.optim.lr_scheduler.SequentialLR(opt, [linear, cosine], milestones=[warm])


def fast_forward(sched: torch.optim.lr_scheduler.LRScheduler, steps: int) -> None:
    """Advance a fresh per-step schedule by ``steps`` (its optimizer's learning rate follows)."""
    with warnings.catch_warnings():  # stepping a schedule before its optimizer is intended here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(steps):
            sched.step()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively, as PyTorch sees it: AMX tile units (Xeon 4th generation and
    later) or AVX-512 BF16 (AMD Zen 4 and later, Xeon 3rd generation)."""
    probes = (getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return any(bool(probe()) for probe in probes if probe is not None)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The dtype training's forward passes autocast to: float16 on CUDA with ``amp``, bfloat16 on CPU with
    ``cpu_amp`` ``bf16`` (or ``auto`` on a CPU with native bfloat16); None for plain float32."""
    if device.type == "cuda":
        return torch.float16 if cfg.amp else None
    if cfg.cpu_amp == "bf16" or (cfg.cpu_amp == "auto" and cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def autocast_for(dtype: torch.dtype | None, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the context training's forward passes run in: autocast to ``dtype`` (from
    :func:`autocast_dtype`) on ``device``, or nothing for float32."""
    return (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' requested but no CUDA device is available")
    return torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
                        else "cpu")


class _Log:
    """JSONL metrics log (and TensorBoard when installed), written by the main process only."""

    def __init__(self, path: Path | None, enabled: bool) -> None:
        self.path = path if enabled else None
        self.tb = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(self.path.parent / "tensorboard"))
            except ImportError:
                pass

    def restart(self, history: list[dict[str, Any]]) -> None:
        """On resume: the JSONL log becomes the checkpoint's history (rows of epochs the checkpoint never
        saw, written before a crash, are dropped, so a resumed run logs every epoch once)."""
        if self.path is not None:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(json.dumps(row) + "\n" for row in history))
            tmp.replace(self.path)

    def write(self, row: dict[str, Any]) -> None:
        if self.path is None:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self.tb.add_scalar(k, v, row["epoch"])
            self.tb.flush()


class _Speed:
    """Training images per second, and the projected wall time of the whole training from the first steps
    (step 0 is left out: it pays for DataLoader start-up and first-call overheads)."""

    FIRST, LAST = 1, 6

    def __init__(self, images_per_step: int, steps_left: int, clock: Callable[[], float] = time.perf_counter
                 ) -> None:
        self.per_step, self.steps_left, self.clock = images_per_step, steps_left, clock
        self.marks: dict[int, float] = {}
        self.epoch_t0, self.epoch_steps = clock(), 0

    def new_epoch(self) -> None:
        self.epoch_t0, self.epoch_steps = self.clock(), 0

    def step(self, done: int) -> str | None:
        """Record that ``done`` steps of this training (not of the epoch) are done; returns the projection
        line once, when it is known."""
        self.epoch_steps += 1
        last = min(self.LAST, self.steps_left)
        if done not in (self.FIRST, last):
            return None
        self.marks[done] = self.clock()
        if done == last and last > self.FIRST and self.marks[last] > self.marks[self.FIRST]:
            first = self.FIRST
            rate = (last - first) * self.per_step / (self.marks[last] - self.marks[first])
            total = self.steps_left * self.per_step / rate
            return (f"speed: {rate:,.0f} training images/s over steps {first + 1}-{last}; projected training time "
                    f"{_duration(total)} for {self.steps_left:,} steps (validation not included)")
        return None

    @property
    def epoch_seconds(self) -> float:
        return self.clock() - self.epoch_t0

    @property
    def epoch_rate(self) -> float:
        dt = self.epoch_seconds
        return self.epoch_steps * self.per_step / dt if dt > 0 else 0.0


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


def _progress(enabled: bool, total: int):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)


def train(net: Supernet, data: Any, *, config: TrainConfig | dict | None = None,
          checkpoint_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
          log_path: str | Path | None = None, teacher: torch.nn.Module | None = None, **overrides: Any) -> TrainResult:
    """Train ``net`` on ``data`` (a DataBundle or a (train, val) dataset pair); settings come from
    ``config`` and keyword overrides (see :class:`TrainConfig`). ``batch_size`` is per process.
    ``data`` is any :class:`~supernas.data.TrainingData`: its ``train_loader`` gives the (augmented,
    per-rank) training batches, its ``eval_loader`` the batches for BN recalibration and validation.
    With a (frozen) ``teacher`` model, the students distil from its predictions instead of the largest's.

    With ``checkpoint_dir`` an atomic checkpoint ``last.pt`` and ``metrics.jsonl`` are written after every
    epoch; ``resume=True`` continues from ``last.pt`` so the final weights are bit-identical to an
    uninterrupted CPU run. Launched by torchrun (``WORLD_SIZE`` > 1) it trains with DDP, each process on
    its shard. A non-finite loss raises TrainingError and leaves the last good checkpoint in place.
    """
    cfg = TrainConfig.make(config, **overrides)
    t0 = time.perf_counter()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = _device(cfg)
    info = D.setup(device)
    data = _training_data(data)
    train_ds, val_ds = data.train, data.val
    if len(train_ds) < 2:
        raise TrainingError(f"the training set has {len(train_ds)} examples; need at least 2")
    amp_dtype = autocast_dtype(cfg, device)
    precision = str(amp_dtype or torch.float32).removeprefix("torch.")
    use_scaler = amp_dtype == torch.float16  # bfloat16 has float32's range: no loss scaling
    torch.manual_seed(cfg.seed)
    if cfg.zero_init_residual:  # on resume the checkpoint's weights replace these
        zero_init_residual(net)
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    net.to(device, memory_format=layout).train()
    if teacher is not None:
        teacher.to(device, memory_format=layout).eval()
    model = D.wrap(net, info, device)
    loader = data.train_loader(cfg.batch_size, seed=cfg.seed, rank=info.rank, world_size=info.world_size,
                               pin_memory=device.type == "cuda")
    sampler = loader.batch_sampler
    bs = sampler.batch_size
    calib = loaders(data, bs, seed=cfg.seed)[0]  # the same seeded calibration batches at every validation
    val = data.eval_loader("val", 256) if val_ds is not None and len(val_ds) else None
    steps = len(loader)
    if steps == 0:
        raise TrainingError(f"the training set has {len(train_ds)} examples: not one batch of {cfg.batch_size}")
    opt = make_optimizer(net, cfg)
    sched = make_scheduler(opt, cfg, steps)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    phases = (progressive_phases(net.space, cfg.epochs, cfg.phase_epochs) if cfg.progressive
              else [Phase("full-space", net.space, 0, cfg.epochs)])
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    result = TrainResult(cfg)
    start = 0
    if resume and ckpt_dir is not None and (ckpt_dir / LAST).is_file():
        state = load_checkpoint(ckpt_dir / LAST, device)
        if plain(with_defaults(state["arch"])) != plain(net.arch):
            raise CheckpointError(f"{ckpt_dir / LAST} belongs to another supernet ({state['arch'].get('family')})")
        try:
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            start = int(state["epoch"]) + 1
            planned = state.get("config", {}).get("epochs") if isinstance(state.get("config"), dict) else None
            if planned is None or planned == cfg.epochs:
                sched.load_state_dict(state["scheduler"])
            else:  # a grown run: the schedule of the new length, at the step training stopped
                fast_forward(sched, start * steps)
            scaler.load_state_dict(state.get("scaler", {}))
            set_rng_state(state["rng"])
        except (KeyError, ValueError, RuntimeError, TypeError) as e:  # weights only, or other training settings
            what = f"no {e.args[0]!r} entry" if isinstance(e, KeyError) else type(e).__name__
            raise CheckpointError(f"{ckpt_dir / LAST} cannot resume this training ({what}); start over with "
                                  f"fresh checkpoints") from None
        result.history, result.resumed_from = list(state.get("history", [])), start
    log = _Log(Path(log_path) if log_path else (ckpt_dir / METRICS if ckpt_dir else None), info.is_main)
    if result.resumed_from is not None:
        log.restart(result.history)
    autocast = autocast_for(amp_dtype, device)
    with _progress(progress and info.is_main, (cfg.epochs - start) * steps) as bar:
        task = bar.add_task("train", total=(cfg.epochs - start) * steps, info="") if bar else None
        speed, done = _Speed(bs * info.world_size, (cfg.epochs - start) * steps), 0
        for epoch in range(start, cfg.epochs):
            speed.new_epoch()
            phase = phase_at(phases, epoch)
            sampler.set_epoch(epoch)
            net.train()
            sums: list[float] = []
            for step, (x, y) in enumerate(loader):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if x.dim() == 4:
                    x = x.contiguous(memory_format=layout)
                cfgs = step_configs(phase.space, cfg.rule, cfg.num_random, step_rng(cfg.seed, epoch, step),
                                    cfg.sampler)
                opt.zero_grad(set_to_none=True)
                losses = sandwich_step(net, model, cfgs, x, y, cfg, scaler, autocast, info, teacher)
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                sums = [a + b for a, b in zip(sums, losses)] if sums else list(losses)
                done += 1
                projection = speed.step(done)
                if bar:
                    if projection and info.is_main:
                        bar.console.print(projection + f"; forward passes in {precision}")
                    bar.update(task, advance=1, description=f"epoch {epoch + 1}/{cfg.epochs} {phase.name}",
                               info=f"loss {losses[0]:.3f} · {speed.epoch_rate:,.0f} img/s")
            row: dict[str, Any] = {"epoch": epoch, "phase": phase.name, "lr": opt.param_groups[0]["lr"],
                                   "loss_largest": D.all_reduce_mean(sums[0] / steps, info),
                                   "loss_others": D.all_reduce_mean(sum(sums[1:]) / steps / max(len(sums) - 1, 1), info),
                                   "epoch_s": speed.epoch_seconds,
                                   "images_per_s": speed.epoch_rate, "precision": precision}
            last = epoch == cfg.epochs - 1
            if val is not None and info.is_main and cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or last):
                for name, sub in (("largest", phase.space.largest()), ("smallest", phase.space.smallest())):
                    row[f"val_acc_{name}"] = subnet_accuracy(net, sub, calib, val, cfg.bn_calib_batches, device)
                net.train()
            result.history.append(row)
            log.write(row)
            if ckpt_dir is not None and info.is_main:
                result.checkpoint = save_checkpoint(ckpt_dir / LAST, {
                    "arch": plain(net.arch), "model": net.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state(),
                    "epoch": epoch, "config": cfg.model_dump(), "history": result.history})
            D.barrier(info)
    net.to(memory_format=torch.contiguous_format)  # what extraction, export and checkpoints expect
    net.set_active(net.space.largest())
    net.eval()
    result.elapsed_s = time.perf_counter() - t0
    return result


def sandwich_step(net: Supernet, model: torch.nn.Module, cfgs: list, x: torch.Tensor, y: torch.Tensor,
                  cfg: TrainConfig, scaler: torch.amp.GradScaler, autocast, info: D.DistInfo,
                  teacher_model: torch.nn.Module | None = None) -> list[float]:
    """Forward/backward every sub-network of one step, gradients accumulated (the optimizer steps once,
    outside). The first config is the teacher: label-smoothed cross-entropy on the labels; the others
    learn from its detached soft predictions when ``cfg.distill`` (from ``teacher_model``'s when given).
    Returns the per-pass losses."""
    teacher: torch.Tensor | None = None
    if teacher_model is not None and cfg.distill:
        with torch.no_grad(), autocast():
            teacher = teacher_model(x).float()
    losses: list[float] = []
    for i, sub in enumerate(cfgs):
        net.set_active(sub)
        sync = contextlib.nullcontext() if not info.enabled or i == len(cfgs) - 1 else model.no_sync()
        with sync:
            with autocast():
                out = model(x)
                if i == 0 or not cfg.distill or teacher is None:
                    loss = token_cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
                else:
                    loss = student_loss(out.float(), teacher, y, cfg.distill_temperature, cfg.distill_label_weight,
                                        cfg.label_smoothing)
            value = loss.detach().float()
            finite = torch.isfinite(value)
            if info.enabled:
                flag = finite.to(torch.int32).reshape(1).cpu()
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
                finite = bool(flag.item())
            if not bool(finite):
                raise TrainingError(f"loss became {value.item()} for sub-network {i} of the step "
                                    f"({'teacher' if i == 0 else 'student'}); lower the learning rate — the last "
                                    f"good checkpoint is kept")
            scaler.scale(loss).backward()
        if i == 0 and teacher_model is None:
            teacher = out.detach()
        losses.append(float(value))
    return losses
