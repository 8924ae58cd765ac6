"""Atomic checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain Python values (dicts, lists, numbers, strings), so
loading it never unpickles arbitrary objects. It is written to a temporary file in the same
folder, flushed to disk, then renamed over the previous one: a run killed at any instant
leaves either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from bionn.errors import CheckpointError

CHECKPOINT_NAME = "checkpoint.pt"


DIGEST_KEY = "sha256"
"""The key under which a checkpoint stores the sha256 of its own content."""


def _digest(obj: Any, h: Any) -> None:
    """Feed ``obj`` (tensors, dicts, lists, tuples and plain values) into the hash ``h``."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            _digest(key, h)
            _digest(obj[key], h)
    elif isinstance(obj, list | tuple):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode())
        for item in obj:
            _digest(item, h)
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def content_digest(state: dict[str, Any]) -> str:
    """The sha256 of a checkpoint's content (every tensor's bytes and every plain value)."""
    h = hashlib.sha256()
    _digest(state, h)
    return h.hexdigest()


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename).

    The file also holds the sha256 of the content (key :data:`DIGEST_KEY`), so a flipped bit
    anywhere, even inside a tensor, is found when it is loaded.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({**state, DIGEST_KEY: content_digest(state)}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _read_error(path: Path, exc: BaseException) -> CheckpointError:
    """Our one-line message for a checkpoint torch could not read (torch's own text advises
    loading with ``weights_only=False``, which would run any code a malicious file holds)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    if head == b"PK\x03\x04" and not isinstance(exc, pickle.UnpicklingError):
        return CheckpointError(f"cannot read checkpoint {path}: truncated or damaged")
    return CheckpointError(f"cannot read checkpoint {path}: {NOT_OURS}")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    A missing, empty, truncated or foreign file raises :class:`~bionn.errors.CheckpointError`
    with one line naming the file and what is wrong; torch's advice to load it with
    ``weights_only=False`` (which would run any code a malicious file holds) is never passed
    on. :func:`check_checkpoint` checks the structure of what was read.
    """
    path = Path(path)
    try:
        if not path.exists():
            raise CheckpointError(f"no checkpoint at {path}: nothing to resume")
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} is not a regular file")
        if path.stat().st_size == 0:
            raise CheckpointError(f"checkpoint {path} is empty (0 bytes): truncated or damaged")
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's extra lines about weights_only
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise _read_error(path, exc) from None
    if isinstance(state, dict) and DIGEST_KEY in state:
        state = dict(state)
        stored = state.pop(DIGEST_KEY)
        try:
            found = content_digest(state)
        except Exception:  # noqa: BLE001 - anything unhashable is damage too
            found = None
        if found != stored:
            raise CheckpointError(
                f"cannot read checkpoint {path}: truncated or damaged (its content does not "
                "match the sha256 it was saved with)"
            )
    return state


NOT_OURS = "not a bionn checkpoint, or damaged; bionn never unpickles code"

_REQUIRED: dict[str, tuple[type, ...]] = {
    "model": (dict,),
    "optimizer": (dict,),
    "rule": (dict,),
    "epoch": (int,),
    "global_step": (int,),
    "elapsed": (int, float),
    "history": (list,),
    "config": (dict,),
    "rng": (dict,),
    "loader_rng": (torch.Tensor,),
}


def _type_name(value: Any) -> str:
    return type(value).__name__


def check_checkpoint(state: Any, path: str | os.PathLike) -> dict[str, Any]:
    """``state`` if it has the structure :meth:`Trainer.state_dict` writes, else a
    :class:`~bionn.errors.CheckpointError` naming the first thing that is wrong.

    It also refuses weights that are not finite: such a checkpoint is not a good one to go on
    from.
    """
    where = f"checkpoint {path} is not a bionn checkpoint"
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: it holds a {_type_name(state)}, not a dict")
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        hint = " (it looks like a bare model state_dict)" if all(
            isinstance(v, torch.Tensor) for v in state.values()) and state else ""
        raise CheckpointError(f"{where}: it has no {', '.join(repr(k) for k in missing)}{hint}")
    for key, types in _REQUIRED.items():
        value = state[key]
        if not isinstance(value, types) or isinstance(value, bool):
            want = " or ".join(t.__name__ for t in types)
            raise CheckpointError(f"{where}: {key!r} is a {_type_name(value)}, not {want}")
    for key in ("epoch", "global_step"):
        if state[key] < 0:
            raise CheckpointError(f"{where}: {key!r} is negative ({state[key]})")
    if not math.isfinite(state["elapsed"]):
        raise CheckpointError(f"{where}: 'elapsed' is {state['elapsed']}")
    for name, value in state["model"].items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{where}: model entry {name!r} is a {_type_name(value)}")
    optimizer = state["optimizer"]
    if not isinstance(optimizer.get("state"), dict) or not isinstance(
        optimizer.get("param_groups"), list
    ):
        raise CheckpointError(f"{where}: 'optimizer' has no state and param_groups")
    if not isinstance(state["config"].get("rule"), str):
        raise CheckpointError(f"{where}: its config names no rule")
    if not isinstance(state["rng"].get("torch"), torch.Tensor):
        raise CheckpointError(f"{where}: 'rng' holds no torch random state")
    if "phase" in state and not isinstance(state["phase"], str):
        raise CheckpointError(f"{where}: 'phase' is a {_type_name(state['phase'])}, not str")
    if not all(isinstance(r, dict) for r in state["history"]):
        raise CheckpointError(f"{where}: 'history' is not a list of records")
    for name, value in state["model"].items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"checkpoint {path} (epoch {state['epoch']}) holds non-finite weights "
                f"({name}); the run diverged before it was saved and cannot be continued: "
                "start a new run, with a smaller learning rate"
            )
    return state


def check_model_state(model: torch.nn.Module, saved: dict[str, Any], path: str | os.PathLike,
                      rule: str) -> None:
    """Refuse, naming the first difference, a saved model state that does not fit ``model``."""
    own = model.state_dict()
    where = f"checkpoint {path} holds another model than rule {rule!r} builds from its config"
    missing = [k for k in own if k not in saved]
    extra = [k for k in saved if k not in own]
    if missing or extra:
        what = f"no {missing[0]!r}" if missing else f"an unexpected {extra[0]!r}"
        raise CheckpointError(f"{where}: it has {what}")
    for key, value in own.items():
        if tuple(saved[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{where}: {key} has shape {tuple(saved[key].shape)} there, "
                f"{tuple(value.shape)} here"
            )


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global torch random states that training may consume."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
