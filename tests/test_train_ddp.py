"""DDP on CPU: torchrun with 2 gloo processes trains the supernet with synchronised gradients."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

WORKER = textwrap.dedent("""
    import os, sys, torch, supernas as sn
    from torch.utils.data import TensorDataset
    from supernas.train import train
    torch.set_num_threads(1)
    out = sys.argv[1]
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)
    torch.manual_seed(0)
    net = sn.create_supernet("mbv3", num_classes=10, image_size=8, in_channels=1, width_mult=0.25, stem_stride=1,
                             dropout=0.0, depths=(1, 2), kernel_sizes=(3, 5), expand_ratios=(2, 4))
    init = {k: v.clone() for k, v in net.named_parameters()}
    r = train(net, (TensorDataset(x, y), None), epochs=2, batch_size=8, num_random=1, progress=False, lr=0.05,
              eval_every=0, checkpoint_dir=os.path.join(out, "ckpt"))
    rank = torch.distributed.get_rank()
    torch.save({"params": dict(net.named_parameters()), "init": init, "world": torch.distributed.get_world_size()}, os.path.join(out, f"rank{rank}.pt"))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_torchrun_two_processes_keep_identical_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           f"--master_port={_free_port()}", str(script), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=220, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2
    # each rank trains on its own shard; all-reduced gradients keep the replicas identical
    for name, p in r0["params"].items():
        assert torch.equal(p, r1["params"][name]), name
    changed = [n for n, p in r0["params"].items() if not torch.equal(p, r0["init"][n])]
    assert len(changed) > len(r0["params"]) // 2
    assert (tmp_path / "ckpt" / "last.pt").is_file()
