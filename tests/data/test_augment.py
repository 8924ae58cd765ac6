"""Batch augmentations and the robustness perturbations.

Oracles: translations built by hand (edge-replicating padding then a crop, or explicit
per-pixel loops), closed forms (a rotation by 0 is the identity, a quadrant swap done twice
is the identity), and counts of the exhaustive translated data.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from bionn.data.augment import (
    RandomShift,
    gaussian_noise,
    make_augmentation,
    random_rotation,
    random_shift,
    rotate_images,
    shift_images,
    swap_quadrants,
    translation_sequence,
)
from bionn.errors import ConfigError


def hand_shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """One image (C, H, W) moved dy down and dx right, edges replicated: pad, then crop."""
    _, h, w = img.shape
    m = max(abs(dy), abs(dx), 1)
    padded = F.pad(img[None], (m, m, m, m), mode="replicate")[0]
    return padded[:, m - dy : m - dy + h, m - dx : m - dx + w]


def test_a_shift_of_zero_is_the_identity():
    x = torch.randn(5, 2, 9, 7)
    zero = torch.zeros(5, dtype=torch.long)
    assert torch.equal(shift_images(x, zero, zero), x)
    assert torch.equal(random_shift(x, 0.0), x)
    assert torch.equal(RandomShift(0.0)(x), x)


def test_a_shift_moves_pixels_exactly_as_a_hand_built_translation():
    x = torch.randn(6, 3, 10, 8)
    dy = torch.tensor([0, 2, -3, 1, 5, -1])
    dx = torch.tensor([1, -2, 0, 3, -4, 7])
    out = shift_images(x, dy, dx)
    for b in range(6):
        assert torch.equal(out[b], hand_shift(x[b], int(dy[b]), int(dx[b])))
    # a pixel moved inside the image lands exactly dy rows down and dx columns right
    assert out[1, 0, 5, 3] == x[1, 0, 3, 5]


def test_zero_fill_leaves_uncovered_pixels_at_zero():
    x = torch.ones(1, 1, 5, 5)
    out = shift_images(x, torch.tensor([2]), torch.tensor([-1]), fill="zeros")
    expected = torch.zeros(5, 5)
    expected[2:, :4] = 1
    assert torch.equal(out[0, 0], expected)


def test_random_shifts_stay_within_the_fraction_and_cover_it():
    # an image that records its own coordinates shows the shift each example got
    h = w = 20
    rows = torch.arange(h, dtype=torch.float).view(1, 1, h, 1).expand(400, 1, h, w)
    g = torch.Generator().manual_seed(0)
    out = random_shift(rows.contiguous(), 0.2, g)
    shifts = (out[:, 0, 10, 0] - 10).neg()  # the centre row came from row 10 - dy
    assert shifts.abs().max() == 4 and set(shifts.long().tolist()) == set(range(-4, 5))


def test_random_shift_is_reproducible_and_its_state_round_trips():
    x = torch.randn(8, 1, 12, 12)
    a = RandomShift(0.25, seed=4)
    first = a(x)
    state = a.state_dict()
    second = a(x)
    b = RandomShift(0.25, seed=99)
    b.load_state_dict(state)
    assert torch.equal(b(x), second)
    assert not torch.equal(first, second)


def test_make_augmentation_parses_and_refuses():
    aug = make_augmentation("shift:0.5", seed=0)
    assert isinstance(aug, RandomShift) and aug.fraction == 0.5
    assert make_augmentation(None) is None and make_augmentation("none") is None
    for bad in ("shift", "shift:x", "shift:1.5", "rotate:0.2", "shift:nan"):
        with pytest.raises(ConfigError):
            make_augmentation(bad)


def test_translation_sequence_yields_every_shift_of_every_image_in_order():
    x = torch.randn(3, 1, 10, 10)
    y = torch.tensor([4, 7, 1])
    batches = list(translation_sequence(x, y, 0.2, batch_size=16))  # shifts -2..2: 25 each
    xs = torch.cat([b[0] for b in batches])
    ys = torch.cat([b[1] for b in batches])
    assert len(xs) == 75 and all(len(b[0]) <= 16 for b in batches)
    assert ys.tolist() == [4] * 25 + [7] * 25 + [1] * 25
    k = 0
    for i in range(3):
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                hand = torch.zeros(1, 10, 10)
                for r in range(10):
                    for c in range(10):
                        if 0 <= r - dy < 10 and 0 <= c - dx < 10:
                            hand[0, r, c] = x[i, 0, r - dy, c - dx]
                assert torch.equal(xs[k], hand)
                k += 1


def test_rotation_by_zero_is_the_identity_and_quadrant_swap_is_an_involution():
    x = torch.randn(4, 2, 8, 8)
    assert torch.allclose(random_rotation(x, 0.0), x, atol=1e-5)
    swapped = swap_quadrants(x)
    assert torch.equal(swapped[..., :4, 4:], x[..., 4:, :4])
    assert torch.equal(swapped[..., :4, :4], x[..., :4, :4])
    assert torch.equal(swap_quadrants(swapped), x)


def test_rotation_by_ninety_degrees_is_rot90():
    x = torch.randn(3, 2, 6, 6)
    out = rotate_images(x, torch.full((3,), 90.0))
    assert torch.allclose(out, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)
    angles = torch.tensor([0.0, 180.0, -90.0])
    out = rotate_images(x, angles)
    assert torch.allclose(out[0], x[0], atol=1e-5)
    assert torch.allclose(out[1], torch.rot90(x[1], 2, dims=(1, 2)), atol=1e-5)
    assert torch.allclose(out[2], torch.rot90(x[2], -1, dims=(1, 2)), atol=1e-5)


def test_random_rotation_stays_within_its_range():
    # a bright dot right of the centre moves on a circle; its angle is the rotation's
    x = torch.zeros(200, 1, 41, 41)
    x[:, 0, 20, 35] = 1.0
    out = random_rotation(x, 45.0, torch.Generator().manual_seed(0))
    flat = out[:, 0].flatten(1).argmax(1)
    rows, cols = (flat // 41).double() - 20, (flat % 41).double() - 20
    angles = torch.rad2deg(torch.atan2(-rows, cols))
    assert angles.abs().max() <= 45.0 + 4.0  # within the range, up to a pixel at radius 15
    assert angles.min() < -35 and angles.max() > 35


def test_gaussian_noise_has_the_requested_std_per_channel():
    x = torch.zeros(2000, 2, 4, 4)
    noisy = gaussian_noise(x, torch.tensor([0.15, 0.5]), torch.Generator().manual_seed(0))
    assert noisy[:, 0].std().item() == pytest.approx(0.15, rel=0.03)
    assert noisy[:, 1].std().item() == pytest.approx(0.5, rel=0.03)
