"""Peak memory of one inference forward pass, in bytes.

* ``cuda``: ``torch.cuda.max_memory_allocated`` during the forward (statistics reset first), model and
  input included.
* ``cpu`` / ``onnxruntime`` (the PyTorch CPU allocator keeps no statistics): the model's parameter and
  buffer bytes plus the **peak of live activation bytes**, traced exactly with a ``TorchDispatchMode``:
  every tensor an operator returns is counted (once per storage) from its creation until the last tensor
  viewing that storage is garbage-collected. The input is counted too. Allocator slack, operator-internal
  scratch buffers (e.g. oneDNN workspaces) and ONNX Runtime's own arena are not seen, so this is the
  memory the *graph* needs, the same on every backend.
"""
from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .counting import count_bytes
from .targets import TargetSpec, require_available


class _LiveBytes(TorchDispatchMode):
    """Tracks bytes of live tensor storages created by operators, and their peak."""

    def __init__(self, ignore: set[int]) -> None:
        super().__init__()
        self.ignore = ignore  # storages that existed before (weights): views of them are free
        self.live = self.peak = 0
        self._refs: dict[int, list[int]] = {}  # storage ptr -> [nbytes, live tensors viewing it]

    def track(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr in self.ignore:
            return
        entry = self._refs.get(ptr)
        if entry is None:
            entry = self._refs[ptr] = [st.nbytes(), 0]
            self.live += entry[0]
            self.peak = max(self.peak, self.live)
        entry[1] += 1
        weakref.finalize(t, self._release, ptr)

    def _release(self, ptr: int) -> None:
        entry = self._refs.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._refs[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self.track(t)
        return out


@torch.no_grad()
def peak_activation_bytes(model: nn.Module, example: torch.Tensor) -> int:
    """Peak bytes of live activations (input included) during one eval-mode forward on the CPU."""
    was_training = model.training
    model.eval()
    x = example.clone()
    mode = _LiveBytes({t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())})
    try:
        with mode:
            mode.track(x)
            out = model(x)
            del out, x
    finally:
        model.train(was_training)
    return mode.peak


def peak_memory(model: nn.Module, example: torch.Tensor, spec: TargetSpec) -> int:
    """Peak memory of one forward of ``example`` on ``spec`` (see the module docstring for the method)."""
    if spec.backend != "cuda":
        return count_bytes(model) + peak_activation_bytes(model, example)
    require_available(spec)
    dev = torch.device("cuda", spec.device)
    orig = next(iter(model.parameters()), torch.zeros(())).device
    was_training = model.training
    try:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        model.to(dev).eval()
        with torch.inference_mode():
            model(example.to(dev))
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev) - base)
    finally:
        model.to(orig).train(was_training)
