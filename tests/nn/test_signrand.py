"""brSF's fused draw, sign(W) times uniform magnitudes (bionn.native.signrand).

Oracles: the splitmix64 generator written with Python integers (checked against its published
test vector), the closed-form moments of a uniform law, and the C kernel against the torch code.
"""

from __future__ import annotations

import math

import pytest
import torch

from bionn import native
from bionn.native import signrand

MASK = (1 << 64) - 1


def splitmix64(seed: int, count: int) -> list[int]:
    """The reference generator: state += gamma, then the output mix (Steele et al. 2014)."""
    out, state = [], seed
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


def reference(weight: torch.Tensor, bound: float, seed: int) -> torch.Tensor:
    """The documented layout, element by element in Python."""
    w = weight.reshape(-1).tolist()
    n = len(w)
    out = [0.0] * n
    if weight.dtype == torch.float32:
        half = n // 2
        words = splitmix64(seed, half + (n & 1))
        m = [0] * n
        for k in range(half):
            m[k], m[k + half] = words[k] >> 40, (words[k] >> 8) & 0xFFFFFF
        if n & 1:
            m[n - 1] = words[half] >> 40
        scale = torch.tensor(bound, dtype=torch.float32) * 2.0**-24
        u = torch.tensor(m, dtype=torch.float32) * scale
    else:
        u = torch.tensor([r >> 11 for r in splitmix64(seed, n)], dtype=torch.float64)
        u = u * (bound * 2.0**-53)
    for i, v in enumerate(w):
        out[i] = u[i].item() * ((v > 0) - (v < 0))
    return torch.tensor(out, dtype=weight.dtype).reshape(weight.shape)


def test_the_reference_generator_gives_the_published_splitmix64_outputs():
    assert splitmix64(1234567, 5) == [6457827717110365317, 3203168211198807973,
                                      9817491932198370423, 4593380528125082431,
                                      16408922859458223821]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (2,), (7,), (5, 3), (4, 3, 3, 3)])
@pytest.mark.parametrize("seed", [0, 1234567, 2**63 - 2])
def test_the_torch_code_and_the_kernel_equal_the_reference(dtype, shape, seed, monkeypatch):
    torch.manual_seed(0)
    w = torch.randn(shape, dtype=dtype)
    w.view(-1)[0] = 0.0
    expected = reference(w, 0.3, seed)
    assert torch.equal(signrand.sign_uniform_torch(w, 0.3, seed), expected)
    assert torch.equal(signrand.sign_uniform(w, 0.3, seed), expected)  # the kernel if built
    assert signrand.sign_uniform(w, 0.3, seed).view(-1)[0] == 0  # sign(0) = 0
    monkeypatch.setattr(signrand, "USE_NATIVE", False)
    assert torch.equal(signrand.sign_uniform(w, 0.3, seed), expected)


@pytest.mark.skipif(native.find_compiler() is None, reason="no C compiler on this machine")
def test_the_kernel_is_used_on_the_cpu_and_equals_the_torch_code_on_large_tensors():
    assert signrand._kernel() is not None, native.unavailable_reason("signrand")
    for dtype in (torch.float32, torch.float64):
        w = torch.randn(301, 257, dtype=dtype)
        fast = signrand.sign_uniform(w, 0.05, 99)
        assert torch.equal(fast, signrand.sign_uniform_torch(w, 0.05, 99))
        # a non-contiguous weight gives the draw of its contiguous copy
        assert torch.equal(signrand.sign_uniform(w.T, 0.05, 99),
                           signrand.sign_uniform_torch(w.T.contiguous(), 0.05, 99))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_magnitudes_are_uniform_with_the_signs_of_w(dtype):
    # |out| ~ U(0, b): mean b/2 and variance b^2/12 within 5 standard errors over N draws,
    # Kolmogorov-Smirnov distance below its 1% critical value; signs are those of w
    n, b = 200_000, 0.7
    w = torch.randn(n, dtype=dtype)
    out = signrand.sign_uniform(w, b, 42)
    assert torch.equal(torch.sign(out), torch.sign(w))
    m = out.abs().double()
    assert 0 <= m.min() and m.max() < b
    assert abs(m.mean().item() - b / 2) <= 5 * b / math.sqrt(12 * n)
    var_sd = b * b * math.sqrt(1 / 80 - 1 / 144) / math.sqrt(n)
    assert abs(m.var().item() - b * b / 12) <= 5 * var_sd
    u = torch.sort(m / b).values
    grid = torch.arange(1, n + 1, dtype=torch.float64) / n
    assert torch.maximum((grid - u).abs(), (grid - 1 / n - u).abs()).max() <= 1.63 / math.sqrt(n)
    # the two halves of the float32 layout (two numbers per word) are uncorrelated
    half = n // 2
    r = torch.corrcoef(torch.stack([m[:half], m[half:2 * half]]))[0, 1].item()
    assert abs(r) <= 5 / math.sqrt(half)


def test_seeds_come_from_the_global_generator():
    torch.manual_seed(5)
    a = [signrand.draw_seed() for _ in range(3)]
    torch.manual_seed(5)
    assert a == [signrand.draw_seed() for _ in range(3)]
    assert len(set(a)) == 3 and all(0 <= s < 2**63 for s in a)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n, word0", [(1, 0), (3, 5), (8, 0), (1001, 77)])
def test_a_poisson_step_equals_the_reference(dtype, n, word0, monkeypatch):
    # value i: the low 15 bits of quarter i % 4 of word word0 + i // 4; a spike where it is at
    # most the bound (-1 never spikes, 32767 always does)
    g = torch.Generator().manual_seed(n)
    bound = torch.randint(-1, 32768, (n,), generator=g, dtype=torch.int64).to(torch.int16)
    words = splitmix64(99, word0 + (n + 3) // 4)[word0:]
    expected = torch.tensor([float(((words[i // 4] >> (16 * (i % 4))) & 0x7FFF) <= bound[i])
                             for i in range(n)], dtype=dtype)
    out = torch.empty(n, dtype=dtype)
    assert torch.equal(signrand.poisson_step(bound, out, 99, word0), expected)
    monkeypatch.setattr(signrand, "USE_NATIVE", False)
    assert torch.equal(signrand.poisson_step(bound, torch.empty(n, dtype=dtype), 99, word0),
                       expected)
