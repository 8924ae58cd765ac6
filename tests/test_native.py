"""Tests of the compiled kernels (bionn.native) and of how they are built and loaded.

Oracles: NumPy's argsort (a stable sort for the tie order) for the ranking, a NumPy transcription
of the paper's update computed from the same currents, and sign(W)|W|^(p-1) in NumPy.
"""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from bionn import native
from bionn.errors import ConfigError, TrainingDiverged
from bionn.rules.krotov_hopfield import KrotovConfig, KrotovHopfield

needs_compiler = pytest.mark.skipif(native.find_compiler() is None,
                                    reason="no C compiler on this machine")


@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    """An empty kernel cache, and no library loaded yet in this process (restored after)."""
    monkeypatch.setenv("BIONN_CACHE_DIR", str(tmp_path / "cache"))
    native.load.cache_clear()
    native.krotov_kernel.cache_clear()
    native._REASONS.clear()
    yield tmp_path / "cache" / "kernels"
    native.load.cache_clear()
    native.krotov_kernel.cache_clear()
    native._REASONS.clear()


@pytest.fixture(scope="module")
def kernel():
    if native.find_compiler() is None:
        pytest.skip("no C compiler on this machine")
    built = native.krotov_kernel()
    assert built is not None, native.unavailable_reason("krotov")
    return built


def reference_from_currents(currents, v, W, k, delta, radius_p):
    """The paper's update from given currents (batch, hidden): g by a stable descending sort."""
    batch, hidden = currents.shape
    order = np.argsort(-currents, axis=1, kind="stable")
    g = np.zeros((batch, hidden))
    g[np.arange(batch), order[:, 0]] = 1.0
    g[np.arange(batch), order[:, k - 1]] -= delta
    ds = radius_p * (g.T @ v) - np.sum(g * currents, axis=0)[:, None] * W
    touched = np.unique(np.concatenate([order[:, 0], order[:, k - 1]]))
    scale = max(np.abs(ds).max(), 1e-30)
    return touched, -ds[touched] / scale, scale, order[:, 0]


@pytest.mark.parametrize("hidden", [2, 7, 31, 32, 33, 100, 2000])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_update_equals_the_reference_for_many_shapes(kernel, hidden, dtype):
    rng = np.random.default_rng(hidden)
    batch, inputs = 13, 17
    for k in sorted({2, min(7, hidden), hidden}):
        if k < 2:
            continue
        W = rng.normal(size=(hidden, inputs))
        v = rng.random((batch, inputs))
        currents = v @ (W * np.abs(W)).T  # p = 3; the kernel takes the currents as given
        t = lambda a: torch.tensor(a, dtype=dtype)  # noqa: E731
        won = torch.zeros(hidden, dtype=torch.bool)
        rows, grad, scale, winners = kernel.update(t(currents), t(v), t(W), k, 0.4, 1.7, 1e-30,
                                                   won=won)
        touched, expected, scale_ref, winners_ref = reference_from_currents(
            t(currents).double().numpy(), t(v).double().numpy(), t(W).double().numpy(), k,
            0.4, 1.7)
        tol = 1e-12 if dtype == torch.float64 else 2e-5
        np.testing.assert_array_equal(rows.numpy(), touched)
        np.testing.assert_array_equal(winners.numpy(), winners_ref)
        np.testing.assert_allclose(grad.double().numpy(), expected, rtol=tol, atol=tol)
        assert scale == pytest.approx(scale_ref, rel=tol)
        np.testing.assert_array_equal(np.flatnonzero(won.numpy()), np.unique(winners_ref))


def test_ties_keep_the_lower_unit_first(kernel):
    """Many equal currents (small integers): the k strongest in a stable descending order."""
    rng = np.random.default_rng(0)
    hidden, batch, inputs = 300, 40, 5
    currents = rng.integers(0, 6, size=(batch, hidden)).astype(np.float64)
    v, W = rng.random((batch, inputs)), rng.normal(size=(hidden, inputs))
    for k in (2, 5, 40):
        rows, grad, _, winners = kernel.update(torch.tensor(currents), torch.tensor(v),
                                               torch.tensor(W), k, 0.3, 1.0, 1e-30)
        touched, expected, _, winners_ref = reference_from_currents(currents, v, W, k, 0.3, 1.0)
        np.testing.assert_array_equal(winners.numpy(), winners_ref)
        np.testing.assert_array_equal(rows.numpy(), touched)
        np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-12, atol=1e-15)


def test_negative_currents_and_signed_zeros_rank_by_value(kernel):
    currents = torch.tensor([[-3.0, -1.0, -0.0, -2.0, -5.0], [0.0, -0.0, -1e-30, 1e-30, -7.0]],
                            dtype=torch.float64)
    v, W = torch.rand(2, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    _, _, _, winners = kernel.update(currents, v, W, 2, 0.0, 1.0, 1e-30)
    assert winners.tolist() == [2, 3]
    rows, _, _, _ = kernel.update(currents, v, W, 3, 0.5, 1.0, 1e-30)
    # the 3rd strongest: -2.0 (unit 3) in the first example; in the second 1e-30, then the
    # equal +0.0 and -0.0 in index order, so unit 1
    assert rows.tolist() == [1, 2, 3]


@pytest.mark.parametrize("p", [2.0, 3.0, 4.5])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lp_rows_refreshes_only_the_named_rows(kernel, p, dtype):
    rng = np.random.default_rng(1)
    W = rng.normal(size=(20, 9))
    W[3, 4] = 0.0
    out = torch.full((20, 9), 7.0, dtype=dtype)
    rows = torch.tensor([0, 3, 11, 19])
    kernel.lp_rows(torch.tensor(W, dtype=dtype), out, rows, p)
    expected = np.full((20, 9), 7.0)
    expected[rows.numpy()] = np.sign(W[rows.numpy()]) * np.abs(W[rows.numpy()]) ** (p - 1)
    tol = 1e-13 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("p", [2.0, 3.0, 4.5])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lp_rows_ordered_t_refreshes_the_named_rows_of_the_transposed_memory(kernel, p, dtype):
    """out[r][j] = sign(W[r][order[j]]) |W[r][order[j]]|^(p-1) for the named rows r, written into
    a matrix whose transpose is contiguous; every other entry left as it was (NumPy oracle)."""
    rng = np.random.default_rng(2)
    W = rng.normal(size=(20, 9))
    W[3, 4] = 0.0
    order = torch.tensor([4, 0, 8, 2, 6, 1, 7, 3, 5])
    out = torch.full((9, 20), 7.0, dtype=dtype).t()  # (hidden, inputs), transpose contiguous
    rows = torch.tensor([0, 3, 11, 19])
    kernel.lp_rows_ordered_t(torch.tensor(W, dtype=dtype), out, rows, order, p)
    expected = np.full((20, 9), 7.0)
    picked = W[rows.numpy()][:, order.numpy()]
    expected[rows.numpy()] = np.sign(picked) * np.abs(picked) ** (p - 1)
    tol = 1e-13 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="transpose is contiguous"):
        kernel.lp_rows_ordered_t(torch.tensor(W, dtype=dtype), out.contiguous(), rows, order, p)


def test_the_kernel_checks_its_arguments(kernel):
    with pytest.raises(ValueError, match="shapes do not match"):
        kernel.update(torch.rand(4, 10), torch.rand(4, 3), torch.rand(9, 3), 2, 0.4, 1.0, 1e-30)
    with pytest.raises(ValueError, match="shapes do not match"):
        kernel.update(torch.rand(4, 10), torch.rand(4, 3), torch.rand(10, 3), 11, 0.4, 1.0, 1e-30)
    with pytest.raises(ValueError, match="bool"):
        kernel.update(torch.rand(4, 10), torch.rand(4, 3), torch.rand(10, 3), 2, 0.4, 1.0, 1e-30,
                      won=torch.zeros(10))
    assert not kernel.supports(torch.zeros(3, dtype=torch.float16))


@pytest.mark.parametrize("choice", ["native", "torch"])
def test_a_nan_input_stops_training_with_a_clear_error(choice):
    if choice == "native" and native.find_compiler() is None:
        pytest.skip("no C compiler on this machine")
    rule = KrotovHopfield(KrotovConfig(hidden=20, k=3, minibatch=0, kernel=choice))
    model = rule.build_model("mlp", (1, 2, 3), 4, "relu").double()
    x = torch.rand(5, 1, 2, 3, dtype=torch.float64)
    x[2, 0, 1, 1] = float("nan")
    with pytest.raises(TrainingDiverged, match="NaN or inf"):
        rule.fill_grads(model, x, None)


# -- building and loading ---------------------------------------------------------------------


@needs_compiler
def test_the_kernel_is_built_once_into_the_cache(fresh_build):
    assert not fresh_build.exists()
    assert native.krotov_kernel() is not None
    built = list(fresh_build.glob("krotov-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    native.load.cache_clear()
    native.krotov_kernel.cache_clear()
    assert native.krotov_kernel() is not None  # a new process would load the cached build
    assert [p.stat().st_mtime_ns for p in fresh_build.glob("krotov-*.so")] == [stamp]


def failing_compiler(folder):
    script = folder / "broken-cc"
    script.write_text("#!/bin/sh\necho 'this compiler is broken' >&2\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.mark.skipif(os.name != "posix", reason="the stand-in compiler is a shell script")
def test_without_a_working_compiler_auto_falls_back_to_torch(fresh_build, tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(failing_compiler(tmp_path)))
    assert native.krotov_kernel() is None
    assert "this compiler is broken" in native.unavailable_reason("krotov")
    config = dict(hidden=30, p=3.0, k=3, delta=0.4, minibatch=0)
    auto = KrotovHopfield(KrotovConfig(**config))
    torch.manual_seed(4)
    model = auto.build_model("mlp", (1, 2, 3), 4, "relu").double()
    x = torch.rand(6, 1, 2, 3, dtype=torch.float64)
    with pytest.warns(native.NativeKernelWarning, match="this compiler is broken"):
        auto.fill_grads(model, x, None)
    reference = KrotovHopfield(KrotovConfig(**config, kernel="torch"))
    grad = model.W.grad.clone()
    reference.fill_grads(model, x, None)
    torch.testing.assert_close(grad, model.W.grad, rtol=0, atol=0)
    forced = KrotovHopfield(KrotovConfig(**config, kernel="native"))
    with pytest.raises(ConfigError, match="--kernel native.*this compiler is broken"):
        forced.fill_grads(model, x, None)


@needs_compiler
def test_an_unwritable_cache_falls_back_with_a_reason(fresh_build, tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("BIONN_CACHE_DIR", str(blocked))
    assert native.krotov_kernel() is None
    assert "kernel cache" in native.unavailable_reason("krotov")


def test_no_compiler_at_all_is_reported(fresh_build, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-anywhere")
    assert native.krotov_kernel() is None
    assert "no C compiler" in native.unavailable_reason("krotov")


def test_a_bad_kernel_choice_is_a_config_error():
    with pytest.raises(ConfigError, match="--kernel must be one of auto, native, torch"):
        KrotovConfig(kernel="fortran")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_several_threads_give_the_same_update_as_one(kernel, dtype, monkeypatch):
    """Examples and rows split between threads: bit-identical to one thread, and to NumPy."""
    rng = np.random.default_rng(11)
    batch, hidden, inputs, k = 64, 2000, 50, 7
    W = torch.tensor(rng.normal(size=(hidden, inputs)), dtype=dtype)
    v = torch.tensor(rng.random((batch, inputs)), dtype=dtype)
    currents = v @ (W * W.abs()).t()
    currents[5, 100:140] = currents[5].max()  # ties that span blocks
    results = {}
    previous = torch.get_num_threads()
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            monkeypatch.setattr(kernel, "parallel", threads > 1)
            assert kernel.threads() == threads
            won = torch.zeros(hidden, dtype=torch.bool)
            results[threads] = (*kernel.update(currents, v, W, k, 0.4, 1.0, 1e-30, won=won), won)
            out = torch.zeros_like(W)
            kernel.lp_rows(W, out, torch.arange(0, hidden, 3), 3.0)
            results[threads] += (out,)
    finally:
        torch.set_num_threads(previous)
    for one, several in zip(results[1], results[3], strict=True):
        if isinstance(one, torch.Tensor):
            assert torch.equal(one, several)
        else:
            assert one == several
    rows, grad, scale, winners, _, _ = results[3]
    touched, expected, scale_ref, winners_ref = reference_from_currents(
        currents.double().numpy(), v.double().numpy(), W.double().numpy(), k, 0.4, 1.0)
    np.testing.assert_array_equal(rows.numpy(), touched)
    np.testing.assert_array_equal(winners.numpy(), winners_ref)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(grad.double().numpy(), expected, rtol=tol, atol=tol)


@needs_compiler
@pytest.mark.parametrize("added, unknown", [(False, False), (True, False), (False, True)])
def test_several_threads_only_on_the_runtime_torch_already_uses(fresh_build, monkeypatch,
                                                                 added, unknown):
    """A build that brings a second OpenMP runtime into the process (its own pool of threads,
    competing with torch's) or where that cannot be told, runs on one thread."""
    calls = []

    def runtimes():
        calls.append(1)
        if unknown:
            return None
        return {"/lib/libgomp.so.1", "/other/libomp.so"} if added and len(calls) > 1 else {
            "/lib/libgomp.so.1"}

    monkeypatch.setattr(native, "_openmp_runtimes", runtimes)
    kernel = native.krotov_kernel()
    assert kernel is not None
    built_with_openmp = any(fresh_build.glob("krotov-openmp-*.so"))
    assert kernel.parallel == (built_with_openmp and not added and not unknown)
    if not kernel.parallel:
        assert kernel.threads() == 1


# -- the relaxation's step tail (bionn.native.energy) ------------------------------------------


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_relax_tail_equals_numpy_on_strided_blocks(dtype):
    """out = clip(out + c + kappa s, 0, 1) on column blocks of wider buffers, against NumPy."""
    from bionn.native.energy import relax_tail_kernel

    kernel = relax_tail_kernel()
    assert kernel is not None, native.unavailable_reason("energy")
    g = torch.Generator().manual_seed(0)
    big = torch.randn(7, 40, generator=g, dtype=dtype)
    out = big[:, 3:30]  # rows 40 apart
    c = torch.randn(7, 27, generator=g, dtype=dtype)
    s_buf = torch.randn(7, 33, generator=g, dtype=dtype)
    s = s_buf[:, :27]
    kappa = torch.randn(27, generator=g, dtype=dtype)
    want = np.clip(out.numpy() + c.numpy() + kappa.numpy() * s.numpy(), 0, 1)
    before = big.clone()
    kernel(out, c, s, kappa)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6 if dtype == torch.float32 else 1e-15)
    assert torch.equal(big[:, :3], before[:, :3]) and torch.equal(big[:, 30:], before[:, 30:])


@needs_compiler
def test_relax_tail_checks_its_arguments():
    from bionn.native.energy import relax_tail_kernel

    kernel = relax_tail_kernel()
    out, c, s, kappa = torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(4)
    with pytest.raises(ValueError, match="shape"):
        kernel(out, torch.zeros(3, 5), s, kappa)
    with pytest.raises(ValueError, match="contiguous rows"):
        kernel(out, c, torch.zeros(4, 3).t(), kappa)
    with pytest.raises(ValueError, match="kappa"):
        kernel(out, c, s, torch.zeros(5))


# -- the inference passes of predictive coding (bionn.native.predictive) ----------------------


def _pc_kernel():
    from bionn.native.predictive import inference_kernel

    kernel = inference_kernel()
    assert kernel is not None, native.unavailable_reason("predictive")
    return kernel


@needs_compiler
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_pc_rates_are_correctly_rounded_to_a_few_ulp(activation):
    """phi in C against float64 NumPy over the whole float range that matters, small values
    and the saturated tails included: at most 3 units in the last place of float32 where the
    rate is a normal float32 (above 1e-37), and within 2e-38 of it below (the kernel holds
    e^x at e^-87.3 there, where a sigmoid's rate and slope are 0 to float32 precision)."""
    kernel = _pc_kernel()
    x = torch.cat([torch.linspace(-120, 120, 400_001), torch.linspace(-1e-3, 1e-3, 20_001),
                   torch.tensor([0.0, -0.0, 0.625, -0.625, 1e-30, -1e-30])])
    got = kernel.rate(x, activation).double().numpy()
    v = x.double().numpy()
    want = {"sigmoid": lambda t: 1 / (1 + np.exp(-t)), "tanh": np.tanh,
            "relu": lambda t: np.maximum(t, 0)}[activation](v)
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    tiny = np.abs(want) < 1e-37
    assert np.all(np.abs(got - want)[~tiny] <= 3 * ulp[~tiny])
    assert np.all(np.abs(got - want)[tiny] <= 2e-38)


@needs_compiler
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_pc_update_and_error_equal_their_formulas_on_strided_blocks(activation):
    """x += gamma (phi'(x) g - e), r = phi(x); and e = (x - mu) s with sum(e^2): against the
    formulas in float64 NumPy, on column blocks of wider buffers (the rest left alone)."""
    kernel = _pc_kernel()
    g = torch.Generator().manual_seed(3)
    wide = torch.randn(6, 41, generator=g)
    x = wide[:, 2:37]  # rows 41 apart, 35 columns (two 16-lane blocks and a tail)
    top = torch.randn(6, 35, generator=g)
    e = torch.randn(6, 35, generator=g)
    phi = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[activation]
    r = phi(x)
    x64, r64 = x.double().numpy().copy(), r.double().numpy()
    slope = {"sigmoid": r64 * (1 - r64), "tanh": 1 - r64 * r64,
             "relu": (x64 > 0).astype(np.float64)}[activation]
    want_x = x64 + 0.3 * (slope * top.double().numpy() - e.double().numpy())
    before = wide.clone()
    kernel.update(x, top, e, r, 0.3, activation)
    np.testing.assert_allclose(x.double().numpy(), want_x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(r.double().numpy(), phi(torch.from_numpy(want_x)).numpy(),
                               rtol=1e-5, atol=1e-6)
    assert torch.equal(wide[:, :2], before[:, :2]) and torch.equal(wide[:, 37:], before[:, 37:])

    mu = torch.randn(6, 35, generator=g)
    total = torch.zeros(2)
    want_e = (x.double().numpy() - mu.double().numpy()) * 0.25
    out = kernel.error(x, mu, torch.empty(6, 35), 0.25, total[1])
    np.testing.assert_allclose(out.double().numpy(), want_e, rtol=1e-6, atol=1e-7)
    assert float(total[0]) == 0.0
    assert float(total[1]) == pytest.approx(float(np.sum(want_e**2)), rel=1e-6)
    in_place = kernel.error(x, mu, mu, 0.25, total[0])  # out may be mu itself
    assert in_place is mu
    np.testing.assert_allclose(mu.double().numpy(), want_e, rtol=1e-6, atol=1e-7)


@needs_compiler
def test_pc_prepared_passes_follow_their_formulas_call_after_call():
    """The passes packed once per inference (error_pass, update_pass), run with a new mu or g
    at every call as the inference does: each call against the formulas in float64 NumPy,
    the squared norms landing in the element named, the other totals left alone."""
    kernel = _pc_kernel()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 21, generator=g)
    e = torch.zeros(4, 21)
    r = torch.sigmoid(x)
    totals = torch.zeros(3, 2)
    error = kernel.error_pass(x, e, 0.5, totals)
    update = kernel.update_pass(x, e, r, 0.2, "sigmoid")
    for step in range(3):
        mu = torch.randn(4, 21, generator=g)
        want_e = (x.double().numpy() - mu.double().numpy()) * 0.5
        assert error(mu, 2 * step + 1) is e
        np.testing.assert_allclose(e.double().numpy(), want_e, rtol=1e-6, atol=1e-7)
        assert float(totals.view(-1)[2 * step + 1]) == pytest.approx(float(np.sum(want_e**2)),
                                                                      rel=1e-6)
        top = torch.randn(4, 21, generator=g)
        x64, r64 = x.double().numpy().copy(), r.double().numpy()
        want_x = x64 + 0.2 * (r64 * (1 - r64) * top.double().numpy() - want_e)
        update(top)
        np.testing.assert_allclose(x.double().numpy(), want_x, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(r.double().numpy(), 1 / (1 + np.exp(-want_x)), rtol=1e-5,
                                   atol=1e-6)
    assert torch.count_nonzero(totals.view(-1)[0::2]) == 0
    with pytest.raises(ValueError, match="one shape"):
        error(torch.zeros(4, 20))
    with pytest.raises(ValueError, match="outside"):
        error(torch.zeros(4, 21), 6)
    with pytest.raises(ValueError, match="contiguous rows"):
        update(torch.zeros(21, 4).t())
    with pytest.raises(ValueError, match="float32"):
        kernel.error_pass(x, e, 1.0, totals.double())


@needs_compiler
def test_pc_passes_check_their_arguments():
    kernel = _pc_kernel()
    a = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="one shape"):
        kernel.update(a, torch.zeros(3, 5), a.clone(), a.clone(), 0.1, "sigmoid")
    with pytest.raises(ValueError, match="float32"):
        kernel.error(a.double(), a.double(), a.double(), 1.0, torch.zeros(1))
    with pytest.raises(ValueError, match="contiguous rows"):
        kernel.error(torch.zeros(4, 3).t(), a, a.clone(), 1.0, torch.zeros(1))
    with pytest.raises(ValueError, match="one float32 element"):
        kernel.error(a, a.clone(), a.clone(), 1.0, torch.zeros(2))
    assert not kernel.supports(a, "gelu") and not kernel.supports(a.double(), "tanh")
