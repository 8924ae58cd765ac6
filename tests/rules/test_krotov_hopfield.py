"""Tests of the competing-hidden-units rule (Krotov & Hopfield 2019).

Oracles: a hand-written NumPy transcription of the published minibatch update (ranking by
argsort, g, Eq. (3), the max-normalisation); the closed form of competitive Hebbian learning for
Delta = 0; the paper's fixed point ||W_mu||_p = R; autograd for the top layer's gradient; a
random frozen hidden layer as the baseline the learned one must beat.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bionn.core.config import TrainConfig
from bionn.core.matmul import onednn_available
from bionn.core.registry import make_rule, rule_info
from bionn.core.rule import Phase
from bionn.data import load_dataset
from bionn.errors import ConfigError
from bionn.native import find_compiler, krotov_kernel
from bionn.rules.krotov_hopfield import (
    CollapseWarning,
    CompetingHiddenUnits,
    KrotovConfig,
    KrotovHopfield,
    input_counts,
    input_order,
    lp_currents,
    product_library,
    sparse_currents,
    synapse_norms,
    transposed_like,
    use_numpy_product,
)


def numpy_reference_update(W, v, p, k, delta, radius):
    """The published minibatch update ds / max|ds|, written from the paper with NumPy.

    W: (hidden, inputs); v: (batch, inputs). Units are ranked by argsort of the currents
    I = <W, v>_p; the strongest gets g = 1, the k-th strongest g = -delta.
    """
    hidden, batch = W.shape[0], v.shape[0]
    currents = (np.sign(W) * np.abs(W) ** (p - 1)) @ v.T  # (hidden, batch)
    order = np.argsort(currents, axis=0)
    g = np.zeros((hidden, batch))
    g[order[hidden - 1], np.arange(batch)] = 1.0
    g[order[hidden - k], np.arange(batch)] = -delta
    ds = radius**p * (g @ v) - np.sum(g * currents, axis=1)[:, None] * W
    return ds / np.abs(ds).max()


def make_model(config, input_shape=(1, 5, 6), classes=4, dtype=torch.float64):
    torch.manual_seed(1)
    rule = KrotovHopfield(config)
    model = rule.build_model("mlp", input_shape, classes, "relu").to(dtype)
    return rule, model


@pytest.fixture(params=["torch", "native"])
def kernel(request):
    """Both implementations of the step after the product: torch's, and the compiled C one."""
    if request.param == "native" and find_compiler() is None:
        pytest.skip("no C compiler on this machine")
    return request.param


@pytest.fixture(scope="module")
def digits():
    train = load_dataset("digits", None, train=True)
    test = load_dataset("digits", None, train=False)
    return (train.data, train.targets), (test.data, test.targets)


# -- theory: the update is the published formula --------------------------------------------


@pytest.mark.parametrize("p", [2.0, 3.0])
@pytest.mark.parametrize("k", [2, 5])
def test_minibatch_update_equals_numpy_reference(p, k, kernel):
    config = KrotovConfig(hidden=40, p=p, k=k, delta=0.4, radius=1.3, minibatch=0, kernel=kernel)
    rule, model = make_model(config)
    rng = np.random.default_rng(int(10 * p + k))
    v = rng.random((16, 30))
    W = model.W.detach().numpy().copy()
    rule.fill_grads(model, torch.tensor(v).reshape(16, 1, 5, 6), torch.zeros(16, dtype=torch.long))
    expected = numpy_reference_update(W, v, p, k, 0.4, 1.3)
    np.testing.assert_allclose(-model.W.grad.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert model.S.grad is None
    # SGD(lr=eps) takes the paper's step W += eps * ds / max|ds|
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    opt.step()
    np.testing.assert_allclose(model.W.detach().numpy(), W + 0.02 * expected, rtol=1e-12,
                               atol=1e-12)


def test_delta_zero_is_competitive_hebbian_learning(kernel):
    """Delta = 0, p = 2, one input: only the winner moves, along R^2 v - (W_w . v) W_w."""
    rng = np.random.default_rng(3)
    v = rng.random(30)
    for k in (2, 7):
        config = KrotovConfig(hidden=12, p=2.0, k=k, delta=0.0, radius=1.0, minibatch=0,
                              kernel=kernel)
        rule, model = make_model(config)
        W = model.W.detach().numpy().copy()
        rule.fill_grads(model, torch.tensor(v).reshape(1, 1, 5, 6), torch.zeros(1).long())
        winner = int(np.argmax(W @ v))
        ds = v - (W[winner] @ v) * W[winner]  # closed form of Eq. (3) with g = 1
        expected = np.zeros_like(W)
        expected[winner] = ds / np.abs(ds).max()
        np.testing.assert_allclose(-model.W.grad.numpy(), expected, rtol=1e-12, atol=1e-14)
        new = W[winner] + 0.05 * expected[winner]

        def cos(a, b):
            return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))

        assert cos(new, v) > cos(W[winner], v)  # the winner turns toward the input


# -- the sparse step under plain SGD: same trajectory as the published formula ---------------


class RecordingKrotov(KrotovHopfield):
    """Records every minibatch the rule sees and whether the gradient it wrote was sparse."""

    def __init__(self, config):
        super().__init__(config)
        self.seen, self.sparse = [], []

    def fill_grads(self, model, x, y):
        self.seen.append(x.flatten(1).detach().numpy().copy())
        metrics = super().fill_grads(model, x, y)
        self.sparse.append(model.W.grad.is_sparse)
        return metrics


def numpy_reference_trajectory(W, batches, p, k, delta, radius, lr, momentum=0.0, edit=None):
    """W after the published update at each minibatch, stepped by SGD (with momentum)."""
    W, buf = W.copy(), None
    for i, v in enumerate(batches):
        grad = -numpy_reference_update(W, v, p, k, delta, radius)
        buf = grad if buf is None else momentum * buf + grad
        W = W - lr * (buf if momentum else grad)
        if edit is not None:
            W = edit(i, W)
    return W


@pytest.mark.parametrize("p", [2.0, 3.0, 4.5])
def test_trainer_with_plain_sgd_steps_sparsely_along_the_published_trajectory(p, kernel):
    """Under the Trainer's plain SGD the gradient is sparse and sign(W)|W|^(p-1) is kept between
    steps and refreshed row by row; W must still follow the NumPy transcription step by step."""
    from bionn.core.trainer import Trainer

    config = KrotovConfig(hidden=40, p=p, k=3, delta=0.3, radius=1.2, minibatch=10, kernel=kernel)
    torch.manual_seed(2)
    rule = RecordingKrotov(config)
    model = rule.build_model("mlp", (1, 5, 6), 4, "relu").double()
    W0 = model.W.detach().numpy().copy()
    x = torch.rand(120, 1, 5, 6, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = Trainer(model, rule, opt, (x, torch.zeros(120).long()), None, batch_size=30,
                      seed=0, progress=False)
    trainer.train_epoch(1, 1)
    trainer.train_epoch(2, 2)
    assert len(rule.seen) == 24 and all(rule.sparse)
    assert rule._optimizer is None  # detached after each epoch
    expected = numpy_reference_trajectory(W0, rule.seen, p, 3, 0.3, 1.2, lr=0.05)
    np.testing.assert_allclose(model.W.detach().numpy(), expected, rtol=1e-9, atol=1e-11)


def test_momentum_sgd_gets_dense_gradients_and_the_exact_trajectory(kernel):
    """Momentum moves rows without a gradient: no sparse step, no kept matrix."""
    config = KrotovConfig(hidden=30, p=3.0, k=2, delta=0.4, minibatch=0, kernel=kernel)
    rule, model = make_model(config)
    W0 = model.W.detach().numpy().copy()
    opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9)
    rule.attach_optimizer(opt)
    rng = np.random.default_rng(5)
    batches = [rng.random((8, 30)) for _ in range(12)]
    for v in batches:
        rule.fill_grads(model, torch.tensor(v).reshape(8, 1, 5, 6), None)
        assert not model.W.grad.is_sparse
        opt.step()
    expected = numpy_reference_trajectory(W0, batches, 3.0, 2, 0.4, 1.0, lr=0.03, momentum=0.9)
    np.testing.assert_allclose(model.W.detach().numpy(), expected, rtol=1e-9, atol=1e-11)


def test_weights_edited_between_steps_are_seen_by_the_next_update(kernel):
    """An in-place change to W outside the optimizer invalidates the kept sign(W)|W|^(p-1)."""
    config = KrotovConfig(hidden=30, p=3.0, k=2, delta=0.4, minibatch=0, kernel=kernel)
    rule, model = make_model(config)
    W0 = model.W.detach().numpy().copy()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rule.attach_optimizer(opt)
    rng = np.random.default_rng(6)
    batches = [rng.random((8, 30)) for _ in range(10)]

    def edit(i, W):
        if i % 3 == 1:
            W = W.copy()
            W[i] *= -2.0  # flip and stretch one unit: it changes every ranking it enters
        return W

    for i, v in enumerate(batches):
        rule.fill_grads(model, torch.tensor(v).reshape(8, 1, 5, 6), None)
        assert model.W.grad.is_sparse
        opt.step()
        with torch.no_grad():
            model.W.copy_(torch.from_numpy(edit(i, model.W.detach().numpy())))
    expected = numpy_reference_trajectory(W0, batches, 3.0, 2, 0.4, 1.0, lr=0.05, edit=edit)
    np.testing.assert_allclose(model.W.detach().numpy(), expected, rtol=1e-9, atol=1e-11)


def test_adam_or_no_optimizer_gets_a_dense_gradient():
    config = KrotovConfig(hidden=20, p=3.0, k=3, minibatch=0)
    rule, model = make_model(config)
    x = torch.rand(8, 1, 5, 6, dtype=torch.float64)
    for opt in (None, torch.optim.Adam(model.parameters()),
                torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-4)):
        rule.attach_optimizer(opt)
        rule.fill_grads(model, x, None)
        assert not model.W.grad.is_sparse
        if opt is not None:
            opt.step()  # Adam accepts it: sparse gradients would be refused


def test_winning_units_counts_the_distinct_argmax_of_the_currents(kernel):
    """Oracle: the distinct strongest units of every example, from NumPy's currents."""
    config = KrotovConfig(hidden=50, p=3.0, k=3, delta=0.4, minibatch=0, kernel=kernel)
    rule, model = make_model(config)
    W = model.W.detach().numpy().copy()
    rng = np.random.default_rng(7)
    batches = [rng.random((6, 30)) for _ in range(5)]
    for v in batches:  # no optimizer step: W stays as it was
        rule.fill_grads(model, torch.tensor(v).reshape(6, 1, 5, 6), None)
    winners = {int(a) for v in batches for a in np.argmax(v @ (np.sign(W) * W**2).T, axis=1)}
    assert rule.epoch_metrics(model)["winning_units"] == len(winners)
    assert "winning_units" not in rule.epoch_metrics(model)  # counted afresh for each epoch


def test_a_collapsed_layer_is_reported():
    """One input shown again and again: one unit wins everything, which is a collapse."""
    config = KrotovConfig(hidden=50, p=3.0, k=3, minibatch=0)
    rule, model = make_model(config)
    x = torch.rand(1, 1, 5, 6, dtype=torch.float64).expand(8, 1, 5, 6)
    rule.fill_grads(model, x, None)
    with pytest.warns(CollapseWarning, match="only 1 of 50 hidden units"):
        assert rule.epoch_metrics(model)["winning_units"] == 1


# -- theory: the fixed point ||W_mu||_p = R ---------------------------------------------------


def test_synapse_norms_converge_to_radius(digits):
    """The paper's fixed point: every ||W_mu||_p -> R, from a random start far from it."""
    (x, _), _ = digits
    p, radius = 3.0, 1.0
    torch.manual_seed(0)
    config = KrotovConfig(hidden=10, p=p, k=2, delta=0.2, radius=radius, minibatch=50)
    rule = KrotovHopfield(config)
    model = rule.build_model("mlp", (1, 8, 8), 10, "relu")
    start = synapse_norms(model.W.detach(), p)
    assert (start - radius).min() > 2.0 * radius  # the normal start lies far outside the sphere
    epochs, eps0 = 20, 0.1
    opt = torch.optim.SGD(model.parameters(), lr=eps0)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        opt.param_groups[0]["lr"] = eps0 * (1 - epoch / epochs)  # the paper's linear anneal
        for batch in torch.randperm(len(x), generator=gen).split(100):
            for _ in rule.updates(model, x[batch], None):
                opt.step()
    norms = synapse_norms(model.W.detach(), p)
    assert torch.allclose(norms, torch.full_like(norms, radius), rtol=0.01), norms


# -- it learns: learned features beat random ones ---------------------------------------------


def train_top_layer(rule, model, train, test, epochs=25):
    rule.set_phase("supervised")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    x, y = train
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=gen).split(50):
            rule.fill_grads(model, x[batch], y[batch])
            opt.step()
    with torch.no_grad():
        return (rule.predict(model, test[0]).argmax(1) == test[1]).double().mean().item()


def test_learned_features_beat_random_frozen_features(digits):
    train, test = digits
    config = KrotovConfig(hidden=30, p=3.0, k=2, delta=0.4, minibatch=50, beta=0.1, n=2.0)
    torch.manual_seed(0)
    rule = KrotovHopfield(config)
    learned = rule.build_model("mlp", (1, 8, 8), 10, "relu")
    random = rule.build_model("mlp", (1, 8, 8), 10, "relu")
    random.load_state_dict(learned.state_dict())
    epochs, eps0 = 20, 0.1
    opt = torch.optim.SGD(learned.parameters(), lr=eps0)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        opt.param_groups[0]["lr"] = eps0 * (1 - epoch / epochs)
        for batch in torch.randperm(len(train[0]), generator=gen).split(50):
            rule.fill_grads(learned, train[0][batch], None)
            opt.step()
    with torch.no_grad():  # the same norm ||W_mu||_p = R for the random layer: a fair scale
        random.W /= synapse_norms(random.W, 3.0)[:, None].float()
    acc_learned = train_top_layer(rule, learned, train, test)
    acc_random = train_top_layer(rule, random, train, test)
    assert acc_learned >= 0.90, acc_learned
    assert acc_learned >= acc_random + 0.08, (acc_learned, acc_random)


def test_bionn_train_runs_both_phases_on_digits(tmp_path):
    """The command-line path: both phases in one run folder, accuracy, norms and figures."""
    from bionn.core.run import run_training

    config = TrainConfig(
        rule="krotov", dataset="digits", epochs=15, batch_size=50, lr=1e-2,
        out=str(tmp_path / "run"),
        options={"hidden": 30, "p": 3.0, "k": 2, "delta": 0.4, "unsupervised_epochs": 15,
                 "minibatch": 50, "eps0": 0.1, "beta": 0.1, "n": 2.0},
    )
    summary = run_training(config, progress=False, plot=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["phase"] for r in records] == ["unsupervised"] * 15 + ["supervised"] * 15
    # no readout yet in the unsupervised phase: no test accuracy, but the winning units
    assert all(r["test_accuracy"] is None for r in records[:15])
    assert all(r["test_accuracy"] is not None for r in records[15:])
    assert all(1 <= r["winning_units"] <= 30 for r in records[:15])
    assert all("winning_units" not in r for r in records[15:])
    assert summary["test_accuracy"] >= 0.88
    quantiles = records[-1]["synapse_norm_quantiles"]
    assert abs(quantiles["0.5"] - 1.0) < 0.02  # the median unit has reached R = 1
    for name in ("receptive_fields.png", "synapse_norms.png"):
        assert (tmp_path / "run" / name).stat().st_size > 1000


# -- contract ---------------------------------------------------------------------------------


def test_unsupervised_phase_contract():
    config = KrotovConfig(hidden=20, p=3.0, k=3, minibatch=0)
    rule, model = make_model(config)
    x = torch.rand(8, 1, 5, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (8,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rule.fill_grads(model, x, y)
    grad = model.W.grad.clone()
    assert grad.shape == model.W.shape and torch.isfinite(grad).all()
    assert grad.abs().max().item() == pytest.approx(1.0)  # normalised by its largest entry
    assert model.S.grad is None  # the top layer is not learned in this phase
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n])
    rule.fill_grads(model, x, y)
    assert torch.equal(model.W.grad, grad)  # same inputs, same weights -> same update


def test_supervised_phase_contract_and_autograd_oracle():
    config = KrotovConfig(hidden=20, p=3.0, k=3, n=3.0, beta=0.5, m=4.0)
    rule, model = make_model(config)
    rule.set_phase("supervised")
    x = torch.rand(8, 1, 5, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (8,))
    W, S = model.W.detach().clone(), model.S.detach().clone().requires_grad_(True)
    rule.fill_grads(model, x, y)
    assert model.W.grad is None  # the hidden layer is frozen
    # oracle: the paper's top layer and loss written out, differentiated by autograd
    h = torch.relu(x.flatten(1) @ W.t()) ** 3.0
    c = torch.tanh(0.5 * h @ S.t())
    t = -torch.ones(8, 4, dtype=torch.float64)
    t[torch.arange(8), y] = 1.0
    ((c - t).abs() ** 4.0).sum(1).mean().backward()
    torch.testing.assert_close(model.S.grad, S.grad)
    assert torch.equal(model.W.detach(), W)


def test_minibatch_splits_a_run_batch_into_normalised_steps():
    config = KrotovConfig(hidden=20, p=2.0, k=2, minibatch=3)
    rule, model = make_model(config)
    x = torch.rand(8, 1, 5, 6, dtype=torch.float64)
    sizes = []
    W = model.W.detach().clone()
    for _ in rule.updates(model, x, torch.zeros(8).long()):
        sizes.append(1)
        assert model.W.grad.abs().max().item() == pytest.approx(1.0)
    assert len(sizes) == 3  # 3 + 3 + 2
    assert torch.equal(model.W.detach(), W)


def test_phases_and_registration():
    rule = make_rule("krotov", {"hidden": 50, "p": 2.0, "k": 3, "unsupervised_epochs": 4,
                                "eps0": 0.03})
    assert isinstance(rule, KrotovHopfield)
    assert rule.phases(9) == [
        Phase("unsupervised", 4, optimizer="sgd", lr=0.03, schedule="linear", evaluate=False),
        Phase("supervised", 9),
    ]
    assert make_rule("krotov", {"supervised_epochs": 3}).phases(9)[1].epochs == 3
    info = rule_info("krotov")
    assert info.supervised is False and info.config_class is KrotovConfig
    assert KrotovHopfield.normalize_inputs is False


@pytest.mark.parametrize(
    "options, flag",
    [({"k": 1}, "-k"), ({"p": 1.5}, "-p"), ({"delta": -0.1}, "--delta"),
     ({"readout": "softmax"}, "--readout"), ({"hidden": 0}, "--hidden"),
     ({"hidden": 5, "k": 7}, "-k"), ({"radius": 0.0}, "--radius")],
)
def test_bad_options_are_config_errors(options, flag):
    with pytest.raises(ConfigError, match=flag):
        KrotovConfig(**options)


def test_colour_images_keep_their_channels(tmp_path):
    """CIFAR-shaped input: 3 * 32 * 32 synapses per unit, receptive fields drawn in colour."""
    config = KrotovConfig(hidden=12, p=3.0, k=2, minibatch=0)
    rule = KrotovHopfield(config)
    model = rule.build_model("mlp", (3, 32, 32), 10, "relu")
    assert isinstance(model, CompetingHiddenUnits) and model.W.shape == (12, 3 * 32 * 32)
    rule.fill_grads(model, torch.rand(6, 3, 32, 32), None)
    assert model.W.grad.shape == (12, 3072)
    paths = rule.plots(model, [{"epoch": 1, **rule.epoch_metrics(model)}], tmp_path,
                       (torch.rand(4, 3, 32, 32), torch.zeros(4).long()))
    assert all(p.stat().st_size > 1000 for p in paths)


def test_linear_readout_uses_cross_entropy():
    config = KrotovConfig(hidden=20, readout="linear", n=1.0)
    rule, model = make_model(config)
    assert model.b is not None
    x, y = torch.rand(5, 1, 5, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0])
    out = model(x)
    expected = torch.nn.functional.cross_entropy(out, y)
    assert math.isclose(rule.loss(out, y).item(), expected.item())


_KILL_IN_UNSUPERVISED_PHASE = """
import os, signal, sys
from bionn.core.config import TrainConfig
from bionn.core.run import run_training

def kill(info):
    if info.global_step == 70:  # unsupervised epoch 3 of 4, step 12 of 29
        os.kill(os.getpid(), signal.SIGKILL)

options = {"hidden": 30, "p": 3.0, "k": 2, "delta": 0.4, "unsupervised_epochs": 4,
           "minibatch": 50, "eps0": 0.1, "beta": 0.1, "n": 2.0}
config = TrainConfig(rule="krotov", dataset="digits", epochs=3, batch_size=50, lr=1e-2, seed=4,
                     out=sys.argv[1], options=options)
run_training(config, progress=False, plot=False,
             callbacks=[kill] if sys.argv[2] == "kill" else [])
"""


def test_run_killed_in_the_unsupervised_phase_resumes_bit_identical(tmp_path):
    """The kept sign(W)|W|^(p-1) is not in the checkpoint: the resumed run rebuilds it from W
    and must still take exactly the uninterrupted run's steps (oracle: that run)."""
    import signal
    import subprocess
    import sys

    from bionn.core.checkpoint import load_checkpoint

    def run(out, mode):
        return subprocess.run([sys.executable, "-c", _KILL_IN_UNSUPERVISED_PHASE, str(out), mode],
                              capture_output=True, text=True, timeout=300)

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run(straight, "straight").returncode == 0
    proc = run(killed, "kill")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint(killed / "checkpoint.pt")["epoch"] == 2
    resumed = subprocess.run(
        [sys.executable, "-m", "bionn", "train", "--resume", "--out", str(killed),
         "--no-progress"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(straight / "checkpoint.pt")
    b = load_checkpoint(killed / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 7
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def _digits_run(tmp_path, name, **options):
    base = {"hidden": 30, "p": 3.0, "k": 2, "delta": 0.4, "unsupervised_epochs": 2,
            "minibatch": 50, "eps0": 0.1, "beta": 0.1, "n": 2.0}
    return TrainConfig(rule="krotov", dataset="digits", epochs=3, batch_size=50, lr=1e-2, seed=4,
                       out=str(tmp_path / name), options={**base, **options})


def test_features_computed_once_train_the_same_top_layer(tmp_path):
    """Oracle: the same run computing h = ReLU(W v)^n for every batch."""
    from bionn.core.checkpoint import load_checkpoint
    from bionn.core.run import run_training

    cached = run_training(_digits_run(tmp_path, "cached"), progress=False, plot=False)
    direct = run_training(_digits_run(tmp_path, "direct", cache_features=False), progress=False,
                          plot=False)
    a = load_checkpoint(tmp_path / "cached" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "direct" / "checkpoint.pt")["model"]
    assert torch.equal(a["W"], b["W"])  # the unsupervised phase is untouched
    torch.testing.assert_close(a["S"], b["S"], rtol=1e-4, atol=1e-6)
    assert cached["test_accuracy"] == pytest.approx(direct["test_accuracy"], abs=0.01)
    assert cached["test_accuracy"] > 0.8


def test_run_stopped_in_the_supervised_phase_resumes_identical(tmp_path):
    """The features are computed again from the restored W; oracle: the uninterrupted run."""
    from bionn.core.checkpoint import load_checkpoint
    from bionn.core.run import run_training

    run_training(_digits_run(tmp_path, "whole"), progress=False, plot=False)
    config = _digits_run(tmp_path, "cut")
    steps = 29  # ceil(1437 / 50)

    def stop(info):
        if info.global_step == 3 * steps + 5:  # supervised epoch 2 of 3
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(config, progress=False, plot=False, callbacks=[stop])
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 3
    run_training(config, resume=True, progress=False, plot=False)
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 5
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_blas_currents_equal_the_float64_product(dtype):
    # oracle: the float64 product sum_i W'_mu,i v_i, computed by NumPy in float64
    g = torch.Generator().manual_seed(0)
    v = torch.rand(37, 50, generator=g, dtype=dtype)
    weights = torch.randn(41, 50, generator=g, dtype=dtype)
    oracle = v.double().numpy() @ weights.double().numpy().T
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for numpy_blas in (False, True):
        got = lp_currents(v, weights, numpy_blas)
        assert got.dtype == dtype and got.shape == (37, 41)
        np.testing.assert_allclose(got.double().numpy(), oracle, rtol=tol, atol=tol)
    # a strided (non-contiguous) minibatch, as a slice of a larger batch may be
    wide = torch.rand(37, 100, generator=g, dtype=dtype)[:, ::2]
    np.testing.assert_allclose(lp_currents(wide, weights, True).double().numpy(),
                               wide.double().numpy() @ weights.double().numpy().T,
                               rtol=tol, atol=tol)


def test_product_option_chooses_the_blas_and_refuses_other_values():
    W = torch.zeros(3, 4)
    assert not use_numpy_product("torch", W)
    assert use_numpy_product("numpy", W)
    assert not use_numpy_product("numpy", W.requires_grad_())  # autograd: torch's product
    assert not use_numpy_product("auto", torch.zeros(3, 4, dtype=torch.float16))
    with pytest.raises(ConfigError, match="--product"):
        KrotovConfig(product="mkl")


def test_an_unsupervised_step_is_the_same_update_with_either_blas():
    # oracle: the NumPy reference update of this file, for both choices of the product
    x = torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    grads = {}
    for product in ("torch", "numpy"):
        rule = make_rule("krotov", {"hidden": 30, "product": product})
        torch.manual_seed(0)
        model = rule.build_model("mlp", (1, 8, 8), 10, "relu").double()
        rule.fill_grads(model, x.double(), None)
        grads[product] = model.W.grad.to_dense()
        W = model.W.detach().double().numpy()
        cfg = rule.config
        expected = numpy_reference_update(W, x.flatten(1).double().numpy(), cfg.p, cfg.k,
                                          cfg.delta, cfg.radius)
        np.testing.assert_allclose(grads[product].numpy(), -expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads["torch"], grads["numpy"], rtol=1e-10, atol=1e-12)


def test_the_rule_refuses_another_network_spec():
    rule = make_rule("krotov", {"hidden": 10})
    for own in ("mlp", "mlp:1000"):  # its own network; mlp:1000 is the run's default
        assert rule.build_model(own, (1, 8, 8), 10, "relu").W.shape == (10, 64)
    with pytest.raises(ConfigError, match="its own network"):
        rule.build_model("cnn", (1, 8, 8), 10, "relu")


def _sparse_images(n, shape=(1, 8, 8), seed=0, dtype=torch.float64):
    """Images with a zero border and scattered zeros inside, like MNIST's strokes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g, dtype=dtype)
    x[..., 0, :] = 0
    x[..., :, -1] = 0
    x[torch.rand(x.shape, generator=g) < 0.6] = 0
    return x


def test_input_order_counts_the_examples_each_input_is_nonzero_in():
    x = _sparse_images(50)
    order, rank = input_order(x, chunk=7)  # chunks that do not divide the examples
    flat = x.flatten(1).numpy()
    counts = [(flat[:, i] != 0).sum() for i in range(flat.shape[1])]  # by hand
    assert [counts[i] for i in order.tolist()] == sorted(counts, reverse=True)
    for a, b in zip(order[:-1].tolist(), order[1:].tolist(), strict=True):
        assert counts[a] > counts[b] or (counts[a] == counts[b] and a < b)  # ties by index
    assert torch.equal(order[rank], torch.arange(flat.shape[1]))


@pytest.mark.parametrize("numpy_blas", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_currents_equal_the_dense_product(numpy_blas, dtype):
    # oracle: the float64 product v (sign(W)|W|^2)^T of all inputs, in NumPy
    g = torch.Generator().manual_seed(1)
    x = _sparse_images(200, dtype=dtype)
    order, rank = input_order(x)
    W = torch.randn(30, 64, generator=g, dtype=dtype)
    kept = (W * W.abs()).index_select(1, order)  # p = 3, columns in the input order
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    batches = [x[:10], x[10:11], torch.zeros_like(x[:4]), torch.ones_like(x[:3]), x[50:150]]
    # one input that is rare in x but used by this batch: a column gathered beyond the block
    rare = x[150:160].clone()
    rare.view(10, -1)[:, int(order[-1])] = 0.5
    batches.append(rare)
    for batch in batches:
        v = batch.flatten(1)
        oracle = v.double().numpy() @ (W * W.abs()).double().numpy().T
        got = sparse_currents(v, kept, order, rank, numpy_blas=numpy_blas)
        assert got.dtype == dtype and got.shape == (len(v), 30)
        np.testing.assert_allclose(got.double().numpy(), oracle, rtol=tol, atol=tol)
    # a column far beyond the block of the used ones (16 x 16 images drawn only in their
    # top-left 6 x 6 corner, and one batch that also uses the last pixel): it is gathered
    corner = torch.zeros(40, 1, 16, 16, dtype=dtype)
    corner[..., :6, :6] = _sparse_images(40, shape=(1, 6, 6), seed=5, dtype=dtype)
    c_order, c_rank = input_order(corner)
    W2 = torch.randn(30, 256, generator=g, dtype=dtype)
    far = corner[:10].clone()
    far.view(10, -1)[:, 255] = 0.5
    assert int(c_rank[255]) == 255 and int(c_rank[(corner != 0).flatten(1).any(0)].max()) < 36
    v = far.flatten(1)
    oracle = v.double().numpy() @ (W2 * W2.abs()).double().numpy().T
    got = sparse_currents(v, (W2 * W2.abs()).index_select(1, c_order), c_order, c_rank,
                          numpy_blas=numpy_blas)
    np.testing.assert_allclose(got.double().numpy(), oracle, rtol=tol, atol=tol)


@pytest.mark.parametrize("p", [2.0, 3.0, 4.5])
def test_skipping_zero_inputs_follows_the_published_trajectory(p, kernel):
    """A run enters the unsupervised phase through phase_inputs, which orders the inputs; the
    kept weights then hold their columns in that order, refreshed row by row (by the kernel or
    torch), and W must follow the NumPy transcription step by step."""
    from bionn.core.trainer import Trainer

    config = KrotovConfig(hidden=40, p=p, k=3, delta=0.3, radius=1.2, minibatch=10, kernel=kernel,
                          product="torch")  # the block product (sparse images: auto is sparse)
    torch.manual_seed(2)
    rule = RecordingKrotov(config)
    model = rule.build_model("mlp", (1, 8, 8), 4, "relu").double()
    W0 = model.W.detach().numpy().copy()
    x = _sparse_images(120)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = Trainer(model, rule, opt, (x, torch.zeros(120).long()), None, batch_size=30,
                      seed=0, progress=False)
    rule.set_phase("unsupervised")
    assert rule.phase_inputs(model, "unsupervised", x) is None  # the batches are unchanged
    assert rule._columns is not None
    trainer.train_epoch(1, 1)
    trainer.train_epoch(2, 2)
    assert rule._kept_order is not None and len(rule.seen) == 24 and all(rule.sparse)
    # the kept matrix, refreshed on the rows of the last step as the next step would, is
    # sign(W)|W|^(p-1) of the current W with its columns in the order
    order = rule._columns[0]
    Wt = model.W.detach()
    kept = rule._lp_weights(Wt, incremental=True, kernel=rule._kernel(Wt), order=order)
    assert kept is rule._weights  # the matrix the rule keeps
    torch.testing.assert_close(kept, (Wt.abs() ** (p - 1) * Wt.sign())[:, order],
                               rtol=1e-12, atol=1e-12)
    expected = numpy_reference_trajectory(W0, rule.seen, p, 3, 0.3, 1.2, lr=0.05)
    np.testing.assert_allclose(model.W.detach().numpy(), expected, rtol=1e-9, atol=1e-11)


@pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN product")
def test_sparse_currents_in_onednn_from_the_transposed_memory_equal_the_dense_product():
    # oracle: the float64 product v (sign(W)|W|^2)^T of all inputs, in NumPy
    g = torch.Generator().manual_seed(4)
    x = _sparse_images(120, dtype=torch.float32)
    order, rank = input_order(x)
    W = torch.randn(30, 64, generator=g)
    kept = transposed_like(W)
    kept.copy_((W * W.abs()).index_select(1, order))
    assert kept.shape == W.shape and kept.t().is_contiguous()
    # 16 x 16 images drawn only in their top-left 6 x 6 corner, and a batch that also uses the
    # last pixel: its column lies far beyond any block of the corner's columns, so it is
    # gathered
    corner = torch.zeros(40, 1, 16, 16)
    corner[..., :6, :6] = _sparse_images(40, shape=(1, 6, 6), seed=5, dtype=torch.float32)
    c_order, c_rank = input_order(corner)
    W2 = torch.randn(30, 256, generator=g)
    kept2 = transposed_like(W2)
    kept2.copy_((W2 * W2.abs()).index_select(1, c_order))
    far = corner[:10].clone()
    far.view(10, -1)[:, 255] = 0.5
    assert int(c_rank[255]) == 255 and int(c_rank[(corner != 0).flatten(1).any(0)].max()) < 36
    v = far.flatten(1)
    oracle = v.double().numpy() @ (W2 * W2.abs()).double().numpy().T
    got = sparse_currents(v, kept2, c_order, c_rank, onednn=True)
    np.testing.assert_allclose(got.double().numpy(), oracle, rtol=1e-5, atol=1e-5)
    rare = x[100:110].clone()
    rare.view(10, -1)[:, int(order[-1])] = 0.5  # a rare column
    for batch in (x[:10], x[10:11], torch.ones_like(x[:3]), x[20:100], rare):
        v = batch.flatten(1)
        oracle = v.double().numpy() @ (W * W.abs()).double().numpy().T
        got = sparse_currents(v, kept, order, rank, onednn=True)
        assert got.dtype == torch.float32 and got.shape == (len(v), 30)
        np.testing.assert_allclose(got.double().numpy(), oracle, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN product")
def test_the_onednn_block_product_follows_the_published_trajectory(kernel):
    """With oneDNN and the zero inputs skipped, the rule keeps sign(W)|W|^(p-1) in the memory
    of its transpose, refreshed row by row; W follows the NumPy transcription over two epochs
    (float32 numbers, float64 oracle)."""
    from bionn.core.trainer import Trainer

    config = KrotovConfig(hidden=40, p=3.0, k=3, delta=0.3, radius=1.2, minibatch=10,
                          kernel=kernel, product="onednn")
    torch.manual_seed(3)
    rule = RecordingKrotov(config)
    model = rule.build_model("mlp", (1, 8, 8), 4, "relu")
    W0 = model.W.detach().double().numpy().copy()
    x = _sparse_images(120, dtype=torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = Trainer(model, rule, opt, (x, torch.zeros(120).long()), None, batch_size=30,
                      seed=0, progress=False)
    rule.set_phase("unsupervised")
    rule.phase_inputs(model, "unsupervised", x)
    trainer.train_epoch(1, 1)
    trainer.train_epoch(2, 2)
    assert rule._kept_order is not None and all(rule.sparse)
    assert rule._weights.t().is_contiguous() and not rule._weights.is_contiguous()
    Wt = model.W.detach()
    kept = rule._lp_weights(Wt, incremental=True, kernel=rule._kernel(Wt),
                            order=rule._kept_order, transposed=True)
    assert kept is rule._weights
    torch.testing.assert_close(kept, (Wt.abs() * Wt)[:, rule._kept_order], rtol=1e-6,
                               atol=1e-7)
    seen = [v.astype(np.float64) for v in rule.seen]
    expected = numpy_reference_trajectory(W0, seen, 3.0, 3, 0.3, 1.2, lr=0.05)
    np.testing.assert_allclose(model.W.detach().double().numpy(), expected, rtol=1e-4,
                               atol=1e-5)


needs_compiler = pytest.mark.skipif(find_compiler() is None, reason="no C compiler on this machine")


@needs_compiler
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_sparse_kernel_currents_equal_the_dense_product(dtype, threads):
    """Oracle: the float64 product v (sign(W)|W|^2)^T of all inputs, in NumPy. Hidden sizes
    cover the kernel's tiles of 8 vectors, its tiles of one vector and the scalar tail, on any
    vector width; the batches hold an all-zero example, an all-one one, a NaN and an inf."""
    g = torch.Generator().manual_seed(6)
    x = _sparse_images(150, dtype=dtype)
    order, rank = input_order(x)
    batch = x[:100].flatten(1).clone()
    batch[3] = 0
    batch[4] = 1
    batch[5, 17] = float("nan")
    batch[6, 9] = float("inf")
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for hidden in (300, 1030, 5):
            W = torch.randn(hidden, 64, generator=g, dtype=dtype)
            lp = (W * W.abs()).double().numpy()
            kept = transposed_like(W)
            kept.copy_((W * W.abs()).index_select(1, order))
            for v in (batch, batch[7:8], x[100:].flatten(1)):
                got = sparse_currents(v, kept, order, rank, kernel=krotov_kernel())
                assert got.dtype == dtype and got.shape == (len(v), hidden)
                oracle = v.double().numpy() @ lp.T
                np.testing.assert_allclose(got.double().numpy(), oracle, rtol=tol, atol=tol)
            got = sparse_currents(batch, kept, order, rank, kernel=krotov_kernel())
            assert torch.isnan(got[5]).all() and torch.isinf(got[6]).all()
            assert (got[3] == 0).all()
    finally:
        torch.set_num_threads(old)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_sparse_product_follows_the_published_trajectory(kernel, dtype):
    """With --product sparse the rule keeps sign(W)|W|^(p-1) in the memory of its transpose,
    refreshed row by row (by the kernel or torch), and sums each example's currents over its
    own non-zero pixels; W follows the NumPy transcription over two epochs (float64 oracle)."""
    from bionn.core.trainer import Trainer

    config = KrotovConfig(hidden=150, p=3.0, k=3, delta=0.3, radius=1.2, minibatch=10,
                          kernel=kernel, product="sparse")
    torch.manual_seed(3)
    rule = RecordingKrotov(config)
    model = rule.build_model("mlp", (1, 8, 8), 4, "relu").to(dtype)
    W0 = model.W.detach().double().numpy().copy()
    x = _sparse_images(120, dtype=dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = Trainer(model, rule, opt, (x, torch.zeros(120).long()), None, batch_size=30,
                      seed=0, progress=False)
    rule.set_phase("unsupervised")
    rule.phase_inputs(model, "unsupervised", x)
    assert product_library("sparse", model.W.detach()) == "sparse"
    trainer.train_epoch(1, 1)
    trainer.train_epoch(2, 2)
    assert rule._kept_order is rule._columns[0] and all(rule.sparse)
    assert rule._weights.t().is_contiguous() and not rule._weights.is_contiguous()
    Wt = model.W.detach()
    kept = rule._lp_weights(Wt, incremental=True, kernel=rule._kernel(Wt),
                            order=rule._kept_order, transposed=True)
    assert kept is rule._weights
    tight = dtype == torch.float64
    torch.testing.assert_close(kept, (Wt.abs() * Wt)[:, rule._kept_order],
                               rtol=1e-12 if tight else 1e-6, atol=1e-12 if tight else 1e-7)
    seen = [v.astype(np.float64) for v in rule.seen]
    expected = numpy_reference_trajectory(W0, seen, 3.0, 3, 0.3, 1.2, lr=0.05)
    np.testing.assert_allclose(model.W.detach().double().numpy(), expected,
                               rtol=1e-9 if tight else 1e-4, atol=1e-11 if tight else 1e-5)


@needs_compiler
def test_the_sparse_product_gives_the_published_update_without_the_input_order():
    # oracle: the NumPy reference update; fill_grads called without phase_inputs keeps the
    # inputs in their own order
    x = _sparse_images(60, dtype=torch.float64)
    rule = make_rule("krotov", {"hidden": 30, "product": "sparse"})
    torch.manual_seed(0)
    model = rule.build_model("mlp", (1, 8, 8), 10, "relu").double()
    rule.fill_grads(model, x, None)
    assert rule._weights.t().is_contiguous()
    assert torch.equal(rule._kept_order, torch.arange(64))
    cfg = rule.config
    expected = numpy_reference_update(model.W.detach().numpy(), x.flatten(1).numpy(), cfg.p,
                                      cfg.k, cfg.delta, cfg.radius)
    np.testing.assert_allclose(model.W.grad.to_dense().numpy(), -expected, rtol=1e-9,
                               atol=1e-12)
    # autograd, or a dtype the kernel has no code for: torch's product
    assert product_library("sparse", model.W) == "torch"
    assert product_library("sparse", model.W.detach().half()) == "torch"


@needs_compiler
def test_auto_takes_the_sparse_product_for_sparse_inputs_only():
    x = _sparse_images(50, dtype=torch.float32)
    counts = input_counts(x, chunk=7)
    flat = x.flatten(1)
    assert counts.tolist() == [int((flat[:, i] != 0).sum()) for i in range(64)]  # by hand
    rule = make_rule("krotov", {"hidden": 20})
    model = rule.build_model("mlp", (1, 8, 8), 10, "relu")
    rule.set_phase("unsupervised")
    rule.phase_inputs(model, "unsupervised", x)
    assert rule._density == pytest.approx(float((flat != 0).double().mean()), abs=1e-12)
    assert rule._density < 0.35
    W = model.W.detach()
    wide = krotov_kernel().vector_bytes >= 32  # AVX or wider: auto takes the sparse product
    assert (product_library("auto", W, density=0.2) == "sparse") == wide
    assert product_library("auto", W, density=0.5) != "sparse"
    assert product_library("auto", W) != "sparse"  # the zero inputs are not skipped
    rule.fill_grads(model, x[:10], None)
    if wide:  # the sparse product
        assert rule._weights.t().is_contiguous() and rule._kept_order is rule._columns[0]
    dense = x.clone()
    dense[dense == 0] = 0.5
    rule.phase_inputs(model, "unsupervised", dense)
    assert rule._density == 1.0
    off = make_rule("krotov", {"hidden": 20, "skip_zero_inputs": False})
    off.set_phase("unsupervised")
    off.phase_inputs(model, "unsupervised", x)
    assert off._density is None


@pytest.mark.parametrize("seed", range(5))
def test_the_block_split_covers_every_used_input_at_the_least_cost(seed):
    """Oracle: brute force over every block width b: cost b + _GATHER_COST x (used positions >= b);
    the split's block is the cheapest width rounded up to a multiple of 32, and the used
    positions beyond it, every one of them, are the gathered ones."""
    from bionn.rules.krotov_hopfield import _BLOCK_ALIGN, _GATHER_COST, _block_split

    g = torch.Generator().manual_seed(seed)
    inputs = 300
    rank = torch.randperm(inputs, generator=g)
    used = torch.rand(inputs, generator=g) < torch.linspace(0.9, 0.02, inputs)[rank]
    m, extra = _block_split(used, rank, inputs)
    positions = sorted(rank[used].tolist())
    costs = [b + _GATHER_COST * sum(q >= b for q in positions) for b in range(inputs + 1)]
    cheapest = min(costs)
    assert m % _BLOCK_ALIGN == 0 or m == inputs
    assert any(costs[b] == cheapest and m - _BLOCK_ALIGN < b <= m for b in range(inputs + 1))
    assert extra.tolist() == [q for q in positions if q >= m]


def test_sparse_currents_keep_a_nan_pixel():
    """A pixel that is NaN in the minibatch (and 0 everywhere else) is used, so the currents
    carry the NaN (and the rule's divergence check sees it) instead of dropping the pixel."""
    # 16 x 16 images drawn only in their top-left 6 x 6 corner: the last pixel's column lies
    # beyond any block of the corner's, so only the split decides whether it is multiplied
    x = torch.zeros(40, 1, 16, 16)
    x[..., :6, :6] = _sparse_images(40, shape=(1, 6, 6), seed=5, dtype=torch.float32)
    order, rank = input_order(x)
    W = torch.randn(10, 256)
    kept = (W * W.abs()).index_select(1, order)
    v = x[:5].flatten(1).clone()
    v[2, 255] = float("nan")
    got = sparse_currents(v, kept, order, rank)
    assert torch.isnan(got[2]).all() and not torch.isnan(got[[0, 1, 3, 4]]).any()


def test_skip_zero_inputs_off_keeps_the_dense_product():
    rule = make_rule("krotov", {"hidden": 20, "skip_zero_inputs": False})
    model = rule.build_model("mlp", (1, 8, 8), 10, "relu")
    rule.set_phase("unsupervised")
    rule.phase_inputs(model, "unsupervised", _sparse_images(20, dtype=torch.float32))
    assert rule._columns is None


@pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN product")
def test_the_onednn_product_gives_the_published_update():
    # oracle: the NumPy reference update, in float64 from the same float32 numbers
    x = _sparse_images(60, dtype=torch.float32)
    rule = make_rule("krotov", {"hidden": 30, "product": "onednn"})
    torch.manual_seed(0)
    model = rule.build_model("mlp", (1, 8, 8), 10, "relu")
    assert product_library("onednn", model.W.detach()) == "onednn"
    rule.fill_grads(model, x, None)
    cfg = rule.config
    expected = numpy_reference_update(model.W.detach().double().numpy(),
                                      x.flatten(1).double().numpy(), cfg.p, cfg.k, cfg.delta,
                                      cfg.radius)
    np.testing.assert_allclose(model.W.grad.to_dense().double().numpy(), -expected,
                               rtol=1e-4, atol=1e-5)
    # float64, autograd or another device: not oneDNN
    assert product_library("onednn", model.W.detach().double()) == "torch"
    assert product_library("onednn", model.W) == "torch"
