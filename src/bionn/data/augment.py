"""Batch augmentations and the image perturbations of the robustness evaluation.

Translated training data is how Ott et al. (2020) make free convolutions learn approximately
shared weights: every training image is shifted at random, up to a fraction A of its size, and
the pixels uncovered by the shift take the value of the nearest pixel of the image (Keras's
``fill_mode="nearest"``, which the authors' code uses). The exhaustive alternative, every shift
of every image in order like the frames of a video, is :func:`translation_sequence`.

An augmentation for the Trainer is an object with ``__call__(x) -> x`` applied to each training
batch, and ``state_dict()`` / ``load_state_dict()`` holding the state of its random generator,
which the Trainer writes into every checkpoint; a resumed run therefore draws the same shifts
as an uninterrupted one. ``make_augmentation("shift:0.2", seed)`` builds one from the
``--augment`` option.

Images are ``(batch, channels, H, W)`` tensors; every function works on any device and keeps
the values it is given (normalised or not), except :func:`gaussian_noise`, whose ``std`` is in
the units of the input.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.nn import functional as F

from bionn.data.shard import draw_rows
from bionn.errors import ConfigError

__all__ = [
    "AUGMENT_FORMS",
    "RandomShift",
    "gaussian_noise",
    "make_augmentation",
    "random_rotation",
    "random_shift",
    "rotate_images",
    "shift_images",
    "swap_quadrants",
    "translation_sequence",
]

AUGMENT_FORMS = "'shift:A' (random shifts up to a fraction A in [0, 1) of the image size)"


def shift_images(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, fill: str = "nearest"
) -> torch.Tensor:
    """Each image ``x[b]`` moved ``dy[b]`` pixels down and ``dx[b]`` pixels right.

    ``out[b, :, i, j] = x[b, :, i - dy[b], j - dx[b]]``; a pixel whose source lies outside the
    image takes the value of the nearest pixel of the image (``fill="nearest"``) or 0
    (``fill="zeros"``). ``dy`` and ``dx`` are integer tensors of shape ``(batch,)``.
    """
    if fill not in ("nearest", "zeros"):
        raise ConfigError(f"fill must be 'nearest' or 'zeros', got {fill!r}")
    b, c, h, w = x.shape
    dy = dy.to(device=x.device, dtype=torch.long).view(b, 1)
    dx = dx.to(device=x.device, dtype=torch.long).view(b, 1)
    rows = torch.arange(h, device=x.device).view(1, h) - dy  # (B, H) source rows
    cols = torch.arange(w, device=x.device).view(1, w) - dx  # (B, W) source columns
    out = x.gather(2, rows.clamp(0, h - 1).view(b, 1, h, 1).expand(b, c, h, w))
    out = out.gather(3, cols.clamp(0, w - 1).view(b, 1, 1, w).expand(b, c, h, w))
    if fill == "zeros":
        inside = ((rows >= 0) & (rows < h)).view(b, 1, h, 1) & (
            (cols >= 0) & (cols < w)
        ).view(b, 1, 1, w)
        out = out * inside
    return out


def max_shift(fraction: float, size: int) -> int:
    """The largest shift, in pixels, of a fraction of an image side (rounded down)."""
    return int(math.floor(fraction * size + 1e-9))


def random_shift(
    x: torch.Tensor, fraction: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Every image shifted by its own random (dy, dx), each uniform over the integers in
    ``[-floor(A H), floor(A H)]`` (``[-floor(A W), floor(A W)]`` for dx), nearest-pixel fill.

    The shifts are drawn on the CPU from ``generator`` (so the draws do not depend on the
    device); in a data-parallel training step, as the rank's rows of the global batch's shifts
    (:mod:`bionn.data.shard`).
    """
    b, _, h, w = x.shape
    my, mx = max_shift(fraction, h), max_shift(fraction, w)
    if my == 0 and mx == 0:
        return x
    dy = draw_rows(lambda n: torch.randint(-my, my + 1, (n,), generator=generator), b)
    dx = draw_rows(lambda n: torch.randint(-mx, mx + 1, (n,), generator=generator), b)
    return shift_images(x, dy, dx)


def random_rotation(
    x: torch.Tensor, degrees: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Every image rotated about its centre by its own angle, uniform in ``[-degrees,
    degrees]``, with bilinear interpolation and nearest-pixel fill."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=generator, dtype=torch.float64) * 2 - 1) * degrees
    return rotate_images(x, angle)


def rotate_images(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Each image ``x[b]`` rotated about its centre by ``degrees[b]`` (counter-clockwise as
    displayed, rows downwards), bilinear interpolation, nearest-pixel fill."""
    angle = torch.deg2rad(degrees.to(torch.float64))
    cos, sin = torch.cos(angle), torch.sin(angle)
    zeros = torch.zeros_like(cos)
    theta = torch.stack(
        (torch.stack((cos, -sin, zeros), 1), torch.stack((sin, cos, zeros), 1)), 1
    ).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def gaussian_noise(
    x: torch.Tensor, std: float | torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``x`` plus independent Gaussian noise of standard deviation ``std`` (a number, or one
    value per channel), drawn on the CPU from ``generator``."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    if isinstance(std, torch.Tensor):
        std = std.to(device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return x + noise * std


def swap_quadrants(x: torch.Tensor) -> torch.Tensor:
    """The top-right and bottom-left quadrants of every image exchanged (the other two stay).

    For odd sizes the quadrants are ``floor(H/2) x floor(W/2)`` corners.
    """
    h2, w2 = x.shape[-2] // 2, x.shape[-1] // 2
    out = x.clone()
    out[..., :h2, -w2:] = x[..., -h2:, :w2]
    out[..., -h2:, :w2] = x[..., :h2, -w2:]
    return out


def translation_sequence(
    x: torch.Tensor,
    y: torch.Tensor,
    fraction: float,
    batch_size: int,
    fill: str = "zeros",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every shift of every image, as batches: the exhaustive, video-like translated data.

    For each image in order, the image at every shift (dy, dx) with ``|dy| <= floor(A H)`` and
    ``|dx| <= floor(A W)``, row by row (dy outer, dx inner), so consecutive examples are the
    same digit moved by one pixel, like frames of a video. Batches of ``batch_size`` examples
    (the last may be smaller), with the labels repeated. ``fill="zeros"`` (the authors'
    generator pads with zeros) or ``"nearest"``.
    """
    if batch_size <= 0:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    h, w = x.shape[-2:]
    my, mx = max_shift(fraction, h), max_shift(fraction, w)
    grid_y, grid_x = torch.meshgrid(
        torch.arange(-my, my + 1), torch.arange(-mx, mx + 1), indexing="ij"
    )
    shifts = torch.stack((grid_y.flatten(), grid_x.flatten()), 1)  # (S, 2)
    per_image = len(shifts)
    total = len(x) * per_image
    for start in range(0, total, batch_size):
        idx = torch.arange(start, min(start + batch_size, total))
        image, shift = idx // per_image, idx % per_image
        xb = x[image.to(x.device)]
        s = shifts[shift]
        yield shift_images(xb, s[:, 0], s[:, 1], fill=fill), y[image.to(y.device)]


class RandomShift:
    """The ``shift:A`` augmentation: :func:`random_shift` of every training batch.

    Args:
        fraction: A, the largest shift as a fraction of the image size, in [0, 1).
        seed: seed of the augmentation's own CPU generator (its state is checkpointed).
    """

    def __init__(self, fraction: float, seed: int = 0) -> None:
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not (
            0.0 <= fraction < 1.0
        ):
            raise ConfigError(f"--augment shift:A needs A in [0, 1), got {fraction!r}")
        self.fraction = float(fraction)
        self.generator = torch.Generator()
        self.generator.manual_seed(int(seed))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return random_shift(x, self.fraction, self.generator)

    def state_dict(self) -> dict[str, Any]:
        """The state of the shift generator, for the checkpoint."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator state that :meth:`state_dict` returned."""
        self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return f"RandomShift(fraction={self.fraction})"


#: The augmentation's generator is seeded apart from the shuffling generator of the same run.
_SEED_OFFSET = 0x5EED


def make_augmentation(spec: str | None, seed: int = 0) -> RandomShift | None:
    """The augmentation named by ``--augment`` (None or ``"none"`` for none): ``"shift:A"``."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        raise ConfigError(f"--augment must be a string: {AUGMENT_FORMS}; got {spec!r}")
    kind, colon, value = spec.strip().partition(":")
    if kind.lower() == "none" and not colon:
        return None
    if kind.lower() != "shift" or not colon:
        raise ConfigError(f"unknown augmentation {spec!r}; use {AUGMENT_FORMS}")
    try:
        fraction = float(value)
    except ValueError:
        raise ConfigError(f"bad augmentation {spec!r}: A must be a number in [0, 1)") from None
    if not math.isfinite(fraction):
        raise ConfigError(f"bad augmentation {spec!r}: A must be a number in [0, 1)")
    return RandomShift(fraction, seed=(int(seed) + _SEED_OFFSET) % 2**63)
