"""Pre-flight: everything a run file names that can be checked before any training or measurement.

The run file's own validation (``supernas.config``) already checks keys, ranges, strategy options and
constraints when it is loaded. Pre-flight adds what needs this machine: the supernet's weights fit in memory,
the dataset's path and layout, every target's backend and cores, the Ray cluster's address (a TCP connection
with a short timeout, then joined once from a child process) and the disk space the run will write. Every
problem is found at once and reported as one line each (:class:`PreflightError`); the disk-space estimate is
a warning only.
"""
from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from ..config import RunConfig
from ..errors import CheckpointError, PreflightError, SupernasError
from ..measure.objectives import split_column
from ..measure.targets import unavailable_reason

RAY_CONNECT_TIMEOUT_S = 5.0
RAY_HANDSHAKE_TIMEOUT_S = 60.0
RAY_PORTS = {"ray": 10001, "": 6379}  # Ray client (ray://) and GCS addresses
STORE_BYTES_PER_EVALUATION = 2048


def _problem(fn: Callable[..., str | None], *args: Any) -> str | None:
    """Run one check: the line it returns, or the SupernasError it raises, is its problem."""
    try:
        return fn(*args)
    except SupernasError as e:
        return str(e)


def preflight(cfg: RunConfig, root: Path | None = None, *, training: bool = True) -> list[str]:
    """Check ``cfg`` against this machine; raises :class:`PreflightError` listing every problem, returns the
    warnings (lines). ``training``: the command may train (the supernet's size and the disk are checked)."""
    problems: list[str | None] = []
    weights = None
    if training:
        try:
            weights = supernet_bytes(cfg)
        except SupernasError as e:
            problems.append(f"supernet: {e}")
    problems.append(_problem(data_problem, cfg))
    problems += [_problem(unavailable_reason, cfg.targets[name]) for name in used_targets(cfg)]
    problems.append(_problem(ray_problem, cfg.search.workers, cfg.search.ray_address))
    if any(problems):
        raise PreflightError([p for p in problems if p])
    return disk_warnings(cfg, Path(root or cfg.out), weights) if weights is not None else []


def used_targets(cfg: RunConfig) -> list[str]:
    """Targets named by an objective or a constraint (only those are measured)."""
    cols = [*cfg.search.objectives, *cfg.search.constraints]
    return list(dict.fromkeys(t for c in cols if (t := split_column(c)[1]) and t in cfg.targets))


def supernet_bytes(cfg: RunConfig) -> int:
    """Bytes of the run's supernet weights (built on the meta device; the data's classes/channels/size are
    the family defaults here, an estimate); over the available memory it is a ConfigError."""
    from ..supernets import supernet_weight_bytes
    from ..supernets.base import require_memory

    args = dict(cfg.supernet.args)
    if cfg.supernet.checkpoint_file:  # its size is its weights
        path = Path(cfg.supernet.pretrained)
        if not path.is_file():
            raise CheckpointError(f"supernet.pretrained: {path} is not a file")
        weight_bytes = path.stat().st_size
        require_memory(cfg.supernet.family, weight_bytes)
        return weight_bytes
    if cfg.supernet.pretrained is not None:
        from ..supernets.hf_bert import read_hf_config, resolve_pretrained

        args = {**read_hf_config(resolve_pretrained(cfg.supernet.pretrained)), **args}
    weight_bytes = supernet_weight_bytes(cfg.supernet.family, **args)
    require_memory(cfg.supernet.family, weight_bytes)
    return weight_bytes


def data_problem(cfg: RunConfig) -> None:
    """The dataset's path and layout (text: its files), read without decoding anything."""
    from .tasks import task_of

    task_of(cfg).check_data(cfg)


def ray_problem(workers: int, address: str | None) -> str | None:
    """Ray must be installed for several workers, and a cluster address must answer within
    ``RAY_CONNECT_TIMEOUT_S`` (a TCP connection to its port) and then be joined (:func:`ray_handshake`);
    ``auto``/``local`` are left to Ray."""
    if workers <= 1 and not address:
        return None
    if importlib.util.find_spec("ray") is None:
        return "search.workers > 1 and search.ray_address need Ray: pip install 'ray[default]'"
    if not address or address in ("auto", "local"):
        return None
    scheme, _, rest = address.rpartition("://")
    host, _, port = rest.split("/")[0].rpartition(":")
    if not host:
        host, port = rest.split("/")[0], ""
    try:
        port_number = int(port) if port else RAY_PORTS.get(scheme, 6379)
    except ValueError:
        return f"search.ray_address {address!r}: {port!r} is not a port number"
    try:
        socket.create_connection((host.strip("[]"), port_number), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        return (f"search.ray_address {address!r}: nothing answers at {host}:{port_number} within "
                f"{RAY_CONNECT_TIMEOUT_S:g} s ({why}); start the cluster (`ray start --head`) or fix the address")
    return ray_handshake(address)


def ray_handshake(address: str, timeout_s: float = RAY_HANDSHAKE_TIMEOUT_S) -> str | None:
    """Join the cluster at ``address`` the way the search will (``ray.init``), in a child process that is
    given ``timeout_s``: something answering on the port is not necessarily a Ray cluster."""
    code = ("import sys, ray\n"
            "try:\n"
            "    ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False); ray.shutdown()\n"
            "except Exception as e:\n"
            "    print(f'{type(e).__name__}: {e}'.splitlines()[0]); sys.exit(3)\n")
    try:
        out = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True,
                             timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"search.ray_address {address!r}: no Ray cluster joined within {timeout_s:g} s"
    if out.returncode != 0:
        why = (out.stdout.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
        return f"search.ray_address {address!r}: cannot join the Ray cluster ({why})"
    return None


def disk_estimate(cfg: RunConfig, weight_bytes: int) -> int:
    """Bytes the run will write (an estimate): the checkpoint (weights + optimizer state), the result store,
    and the exported files of every pick (at most the supernet's size each, per format)."""
    optimizer_copies = {"sgd": 1, "adamw": 2}.get(cfg.train.optimizer, 2)
    checkpoint = weight_bytes * (1 + optimizer_copies) * 2  # last.pt and its temporary copy while it is written
    exports = weight_bytes * len(cfg.export.picks) * len(cfg.export.formats)
    return checkpoint + exports + cfg.search.evaluations * STORE_BYTES_PER_EVALUATION


def disk_warnings(cfg: RunConfig, root: Path, weight_bytes: int) -> list[str]:
    need = disk_estimate(cfg, weight_bytes)
    where = next((p for p in (root, *root.resolve().parents) if p.exists()), Path("."))
    free = shutil.disk_usage(where).free
    if free >= need:
        return []
    return [f"{root}: the run will write about {need / 2**20:,.0f} MiB (checkpoint, results, exports); "
            f"{where} has {free / 2**20:,.0f} MiB free"]
