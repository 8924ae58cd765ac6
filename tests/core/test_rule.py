"""Backprop, the first rule: contract, a hand-computed oracle, and it learns.

Oracles: a NumPy hand derivation of the softmax cross-entropy gradients of a one-hidden-layer
ReLU network (independent of autograd and of bionn), and the digits test accuracy.
"""

from __future__ import annotations

import numpy as np
import torch

from bionn.core.models import MLP
from bionn.core.rule import Backprop, LearningRule
from bionn.data import Digits


def _batch(n=16, d=12, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


def _numpy_gradients(model: MLP, x: torch.Tensor, y: torch.Tensor):
    """Hand-derived gradients of mean cross-entropy for x -> relu(W1 x + b1) -> W2 h + b2."""
    W1 = model.linears[0].weight.detach().double().numpy()
    b1 = model.linears[0].bias.detach().double().numpy()
    W2 = model.linears[1].weight.detach().double().numpy()
    b2 = model.linears[1].bias.detach().double().numpy()
    X = x.double().numpy()
    n = X.shape[0]
    z1 = X @ W1.T + b1
    h = np.maximum(z1, 0)
    z2 = h @ W2.T + b2
    p = np.exp(z2 - z2.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(W2.shape[0])[y.numpy()]
    d2 = (p - onehot) / n
    d1 = (d2 @ W2) * (z1 > 0)
    return [d1.T @ X, d1.sum(0), d2.T @ h, d2.sum(0)]


def test_fill_grads_gives_every_parameter_a_finite_grad_of_its_shape_and_leaves_data():
    torch.manual_seed(1)
    model = MLP(12, [7, 6], 5)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = _batch()
    metrics = Backprop().fill_grads(model, x, y)
    assert set(metrics) >= {"loss", "accuracy"}
    # 0-d tensors, left on the device for the Trainer to convert when it logs
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad
               for v in metrics.values())
    with torch.no_grad():  # oracle: the loss and accuracy computed here
        out = model(x)
        assert float(metrics["loss"]) == torch.nn.functional.cross_entropy(out, y).item()
        assert float(metrics["accuracy"]) == (out.argmax(1) == y).float().mean().item()
    for p, b in zip(model.parameters(), before, strict=True):
        assert p.grad is not None and p.grad.shape == p.shape
        assert torch.isfinite(p.grad).all()
        assert torch.equal(p.data, b)


def test_fill_grads_replaces_rather_than_accumulates():
    torch.manual_seed(1)
    model = MLP(12, [7], 5)
    x, y = _batch()
    Backprop().fill_grads(model, x, y)
    first = [p.grad.clone() for p in model.parameters()]
    Backprop().fill_grads(model, x, y)
    for p, g in zip(model.parameters(), first, strict=True):
        assert torch.equal(p.grad, g)


def test_same_seed_gives_same_grads():
    grads = []
    for _ in range(2):
        torch.manual_seed(3)
        model = MLP(12, [7], 5)
        Backprop().fill_grads(model, *_batch(seed=4))
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


def test_sgd_lr_one_reproduces_the_hand_computed_update():
    torch.manual_seed(2)
    model = MLP(12, [9], 5).double()
    x, y = _batch()
    x = x.double()
    expected_grads = _numpy_gradients(model, x, y)
    before = [p.detach().clone().numpy() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    Backprop().fill_grads(model, x, y)
    opt.step()
    for p, b, g in zip(model.parameters(), before, expected_grads, strict=True):
        np.testing.assert_allclose(p.detach().numpy(), b - g, rtol=1e-10, atol=1e-12)


def test_default_updates_yields_fill_grads_once():
    class Counting(LearningRule):
        calls = 0

        def fill_grads(self, model, x, y):
            Counting.calls += 1
            return {"loss": 0.0}

    out = list(Counting().updates(None, None, None))
    assert out == [{"loss": 0.0}] and Counting.calls == 1


def test_backprop_learns_digits():
    train, test = Digits(train=True), Digits(train=False)
    xtr, ytr = train.normalized(), train.targets
    xte, yte = test.normalized(), test.targets
    torch.manual_seed(0)
    model = MLP(64, [128], 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rule = Backprop()
    g = torch.Generator().manual_seed(0)
    for _ in range(15):
        order = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 50):
            idx = order[i : i + 50]
            rule.fill_grads(model, xtr[idx], ytr[idx])
            opt.step()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    assert acc >= 0.95, acc


def test_batch_metrics_counts_the_given_targets_only():
    """Oracle: the hits and targets counted by hand (an ignored target counts for neither)."""
    from bionn.core.rule import batch_metrics
    from bionn.functional.targets import IGNORE_INDEX

    output = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    y = torch.tensor([0, 0, IGNORE_INDEX, 1])
    for dtype in (torch.float32, torch.float64):
        m = batch_metrics(torch.tensor(0.5, dtype=dtype), output.to(dtype), y)
        assert m["accuracy"].dtype == dtype and m["accuracy"].dim() == 0
        assert m["accuracy"].item() == torch.tensor(2.0, dtype=dtype).div(3).item()
        assert m["loss"].item() == 0.5
    none = batch_metrics(torch.tensor(0.0), output, torch.full((4,), IGNORE_INDEX))
    assert none["accuracy"].item() == 0.0
    # sequences (T, B, C) with one class per sequence: the last step's answer counts
    seq = torch.zeros(3, 2, 2)
    seq[-1, 0, 1] = seq[-1, 1, 1] = 1.0
    assert batch_metrics(torch.tensor(0.0), seq, torch.tensor([1, 0]))["accuracy"].item() == 0.5
