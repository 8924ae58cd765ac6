"""Data-parallel training under ``torchrun`` (PyTorch's launcher and ``torch.distributed``).

``torchrun --nproc_per_node N -m bionn train ...`` starts N copies of ``bionn train``; each
finds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment and joins one process
group (gloo on the CPU, NCCL on CUDA) with a timeout (``--dist-timeout``, seconds). Then:

1. Every rank builds the same model (rank 0's weights are broadcast once, so the ranks start
   equal) and draws the same permutation of the training set every epoch.
2. Each global batch of B examples is split across the ranks by stride: rank r trains on
   examples r, r + N, r + 2N, ... of the batch, B / N of them (B must be a multiple of N). A
   last, incomplete batch of m examples is cut to the largest multiple of N below m; the
   m mod N examples left over are not seen in that epoch (an epoch of a 1-process run sees
   them), and a batch of fewer than N examples is skipped.
3. After every update a rule yields (``LearningRule.updates``), the ranks combine their
   pseudo-gradients through the rule's ``reduce_grads(model, reducer)`` hook (by default
   the mean, one all-reduce of a flattened buffer per dtype and device) before the optimizer
   steps, so every rank takes the same step. Rules fill ``.grad`` themselves, so DDP's
   backward hooks would never see them: the reduction is explicit.
4. The running means of the epoch's training metrics are averaged across the ranks; every
   rank evaluates the same weights on the same test set; only rank 0 makes the run folder and
   writes ``metrics.jsonl``, checkpoints, ``summary.json`` and figures.
5. ``--resume``: rank 0 reads the checkpoint and broadcasts it, so every rank continues from
   the same state (the run folder need only be visible to rank 0's machine).

A rank that fails makes the others fail within the process-group timeout: a collective with a
rank that has died raises at once (its connections close), one with a rank that has stopped
answering raises when the timeout runs out. Either way each surviving rank stops with one
line (:class:`DistributedError`) and ``torchrun`` reports the failure.

Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment) nothing here does anything.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from bionn.errors import BionnError, ConfigError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Context",
    "DistributedError",
    "Reducer",
    "broadcast_model",
    "check_batch_size",
    "context",
    "init",
    "launched",
    "mean_metrics",
    "on_main",
    "rank_device",
    "reduce_update",
    "shutdown",
]

DEFAULT_TIMEOUT_S = 300.0
"""The default process-group timeout in seconds (``--dist-timeout``)."""

T = TypeVar("T")


class DistributedError(BionnError):
    """Another process of a data-parallel run failed or stopped answering."""


@dataclass(frozen=True)
class Context:
    """Where this process stands in the run: its rank among ``world_size`` processes.

    ``enabled`` is False for a plain 1-process run (no process group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether a process group is up (a run started by torchrun)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes the run folder."""
        return self.rank == 0


_LOCAL = Context()
_context = _LOCAL


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer; start "
                          "a data-parallel run with torchrun") from None
    if number < 0:
        raise ConfigError(f"environment variable {name}={number} must not be negative")
    return number


def launched() -> bool:
    """Whether this process was started by torchrun (``WORLD_SIZE`` and ``RANK`` are set)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def env_rank() -> int:
    """This process's rank from the environment (0 outside torchrun), without joining."""
    return _env_int("RANK") if launched() else 0


def context() -> Context:
    """The current :class:`Context` (rank 0 of 1 outside a data-parallel run)."""
    return _context


def check_timeout(timeout_s: float) -> float:
    """``timeout_s`` as a float if it is a finite number of seconds > 0, else ConfigError."""
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not math.isfinite(timeout_s)
        or timeout_s <= 0
    ):
        raise ConfigError(f"--dist-timeout must be a finite number of seconds > 0, got "
                          f"{timeout_s!r}")
    return float(timeout_s)


def init(timeout_s: float = DEFAULT_TIMEOUT_S, device: torch.device | None = None) -> Context:
    """Join the process group that torchrun's environment describes; return the context.

    Outside torchrun this returns the 1-process context and does nothing. Inside, the backend
    is NCCL for a CUDA ``device`` and gloo otherwise; ``timeout_s`` bounds the rendezvous and
    every collective. A second call returns the group already joined.
    """
    global _context
    timeout_s = check_timeout(timeout_s)
    if not launched():
        return _LOCAL
    import torch.distributed as dist

    if dist.is_initialized():
        return _context
    rank, world = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    if world < 1 or rank >= world:
        raise ConfigError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process of "
                          "the run; start it with torchrun")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ConfigError(f"RANK and WORLD_SIZE are set but {name} is not; start a "
                              "data-parallel run with torchrun")
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(rank_device(device, local_rank))
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        dist.init_process_group(
            backend, rank=rank, world_size=world,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(
            f"rank {rank} of {world}: could not join the process group at {where} within "
            f"--dist-timeout {timeout_s:g} s ({_first_line(exc)})"
        ) from None
    _context = Context(rank, world, local_rank, timeout_s, backend)
    return _context


def shutdown() -> None:
    """Leave the process group (at the end of a successful run); the context is reset."""
    global _context
    if _context.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _context = _LOCAL


def rank_device(device: torch.device, local_rank: int | None = None) -> torch.device:
    """The device of this rank: ``cuda`` without an index becomes ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and device.index is None and (
        local_rank is not None or _context.enabled
    ):
        return torch.device("cuda", _context.local_rank if local_rank is None else local_rank)
    return device


def check_batch_size(batch_size: int, ctx: Context | None = None) -> None:
    """Refuse a global batch that does not split evenly across the ranks."""
    ctx = ctx or _context
    if batch_size % ctx.world_size:
        raise ConfigError(
            f"--batch-size {batch_size} does not split across {ctx.world_size} processes; "
            f"the global batch is shared equally, so choose a multiple of {ctx.world_size}"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:200] if text else type(exc).__name__)


def _collective(what: str, fn: Callable[[], T]) -> T:
    """Run the collective ``fn``; a failure becomes one :class:`DistributedError` line."""
    ctx = _context
    try:
        return fn()
    except RuntimeError as exc:  # torch.distributed.DistError and its kin
        raise DistributedError(
            f"rank {ctx.rank} of {ctx.world_size}: {what} failed: another process of the run "
            f"has stopped or stopped answering ({_first_line(exc)}); stopped within "
            f"--dist-timeout {ctx.timeout_s:g} s"
        ) from None


class Reducer:
    """All-reduce across the ranks of the run: what ``LearningRule.reduce_grads`` receives.

    Each method takes a list of tensors (any shapes, dense or sparse) and returns the reduced
    tensors in the same order; dense tensors are reduced in place and returned themselves, a
    sparse one comes back dense. The tensors travel as one flattened buffer per dtype and
    device, so a step costs one collective per dtype. With one process the tensors come back
    unchanged.
    """

    def __init__(self, ctx: Context | None = None) -> None:
        self.ctx = ctx or _context

    @property
    def world_size(self) -> int:
        """The number of processes whose tensors are combined."""
        return self.ctx.world_size

    def sum(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The elementwise sum over the ranks."""
        return self._reduce(tensors, "sum", scale=1.0)

    def mean(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The elementwise mean over the ranks (the sum divided by the world size)."""
        return self._reduce(tensors, "sum", scale=1.0 / self.world_size)

    def max(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The elementwise maximum over the ranks."""
        return self._reduce(tensors, "max", scale=1.0)

    def _reduce(self, tensors: Sequence[torch.Tensor], op: str, scale: float
                ) -> list[torch.Tensor]:
        out = [t.to_dense() if t.is_sparse else t for t in tensors]
        if not self.ctx.enabled or self.world_size == 1 or not out:
            return out
        import torch.distributed as dist

        reduce_op = dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX
        groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
        for i, t in enumerate(out):
            groups.setdefault((t.dtype, t.device), []).append(i)
        for indices in groups.values():
            flat = torch.cat([out[i].reshape(-1) for i in indices])
            _collective("the gradient all-reduce",
                        lambda flat=flat: dist.all_reduce(flat, op=reduce_op))
            if scale != 1.0:
                flat.mul_(scale)
            start = 0
            for i in indices:
                t = out[i]
                n = t.numel()
                piece = flat[start:start + n].view_as(t)
                if t.requires_grad:
                    out[i] = piece.clone()
                else:
                    t.copy_(piece)
                start += n
        return out


def reduce_update(rule: Any, model: nn.Module) -> None:
    """Combine the ranks' pseudo-gradients of one update through ``rule.reduce_grads``.

    Called by the Trainer after every update a rule yields and before the optimizer steps;
    it does nothing outside a data-parallel run.
    """
    if _context.enabled and _context.world_size > 1:
        rule.reduce_grads(model, Reducer(_context))


def mean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The mean over the ranks of every number in ``metrics`` (others are kept as they are).

    Every rank runs the same number of updates an epoch, so the mean of the ranks' running
    means is the running mean over the whole global batch stream.
    """
    if not _context.enabled or _context.world_size == 1:
        return metrics
    keys = sorted(k for k, v in metrics.items()
                  if isinstance(v, int | float) and not isinstance(v, bool))
    if not keys:
        return metrics
    import torch.distributed as dist

    device = torch.device("cuda", _context.local_rank) if _context.backend == "nccl" else "cpu"
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=device)
    _collective("the metrics all-reduce", lambda: dist.all_reduce(values))
    values /= _context.world_size
    return {**metrics, **dict(zip(keys, values.tolist(), strict=True))}


def broadcast_model(model: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (once, before training)."""
    if not _context.enabled or _context.world_size == 1:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            _collective("the broadcast of the initial weights",
                        lambda tensor=tensor: dist.broadcast(tensor.data, src=0))


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only; every rank gets its result, or raises its error.

    A :class:`~bionn.errors.BionnError` raised by ``fn`` on rank 0 is raised again, with the
    same message, on every rank, so all of them stop with the same line. The result travels
    pickled (``broadcast_object_list``), so it should be small or plain (a path, a
    checkpoint's state loaded on the CPU).
    """
    if not _context.enabled or _context.world_size == 1:
        return fn()
    import torch.distributed as dist

    box: list[Any] = [None]
    if _context.is_main:
        try:
            box[0] = ("ok", fn())
        except BionnError as exc:
            box[0] = ("error", type(exc), str(exc))
    _collective("the broadcast from rank 0",
                lambda: dist.broadcast_object_list(box, src=0))
    outcome = box[0]
    if outcome[0] == "error":
        cls = outcome[1] if isinstance(outcome[1], type) and issubclass(
            outcome[1], BionnError) else BionnError
        raise cls(outcome[2])
    return outcome[1]
