"""LeanAdam: the oracle is torch.optim.Adam(fused=True) itself, run side by side.

Every check demands bit-identical parameters and state (the same kernel on the same inputs),
through learning-rate changes, missing gradients, several groups, a state-dict round trip in
both directions, step hooks and the paths that defer to torch's own step.
"""

from __future__ import annotations

import torch

from bionn.core.config import TrainConfig
from bionn.core.optim import LeanAdam
from bionn.core.run import make_optimizer


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(7, 5, generator=g)),
            torch.nn.Parameter(torch.randn(5, generator=g)),
            torch.nn.Parameter(torch.randn(3, 7, generator=g))]


def _grads(step, params, skip=None):
    g = torch.Generator().manual_seed(100 + step)
    return [None if i == skip else torch.randn(p.shape, generator=g)
            for i, p in enumerate(params)]


def _run(opt, params, steps, start=0, skip_every=3):
    for t in range(start, start + steps):
        for p, g in zip(params, _grads(t, params, skip=t % skip_every), strict=True):
            p.grad = g
        opt.step()
        opt.zero_grad(set_to_none=True)
        if t == 2:
            for group in opt.param_groups:
                group["lr"] *= 0.5  # what a scheduler does between steps


def _assert_same(a_params, b_params, a_opt, b_opt):
    for a, b in zip(a_params, b_params, strict=True):
        assert torch.equal(a, b)
        sa, sb = a_opt.state[a], b_opt.state[b]
        assert set(sa) == set(sb)
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key


def test_steps_are_bit_identical_to_torch_fused_adam():
    ours, ref = _params(), _params()
    a = LeanAdam(ours, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)
    b = torch.optim.Adam(ref, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1,
                         fused=True)
    _run(a, ours, 8)
    _run(b, ref, 8)
    _assert_same(ours, ref, a, b)
    for p, g in zip(ours, _grads(0, ours), strict=True):
        p.grad = g
    assert a._lean_groups() is not None  # the steps after the first took the short path
    assert any(not torch.equal(p, q) for p, q in zip(ours, _params(), strict=True))


def test_groups_and_a_state_dict_round_trip_in_both_directions():
    ours, ref = _params(), _params()
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.003}]  # noqa: E731
    a = LeanAdam(groups(ours), lr=0.01)
    b = torch.optim.Adam(groups(ref), lr=0.01, fused=True)
    _run(a, ours, 4)
    _run(b, ref, 4)
    # swap the states: each continues from the other's state dict
    a2 = torch.optim.Adam(groups(ours), lr=0.01, fused=True)
    a2.load_state_dict(a.state_dict())
    b2 = LeanAdam(groups(ref), lr=0.01)
    b2.load_state_dict(b.state_dict())
    _run(a2, ours, 4, start=4)
    _run(b2, ref, 4, start=4)
    _assert_same(ours, ref, a2, b2)


def test_hooks_run_once_and_a_closure_defers_to_torch():
    ours, ref = _params(), _params()
    a = LeanAdam(ours, lr=0.01)
    b = torch.optim.Adam(ref, lr=0.01, fused=True)
    calls = []
    a.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    a.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))
    _run(a, ours, 3)
    _run(b, ref, 3)
    assert calls == ["pre", "post"] * 3
    for p, g in zip(ours, _grads(9, ours), strict=True):
        p.grad = g
    for p, g in zip(ref, _grads(9, ref), strict=True):
        p.grad = g
    assert a.step(lambda: torch.tensor(1.5)) == torch.tensor(1.5)
    b.step()
    _assert_same(ours, ref, a, b)


def test_amsgrad_goes_through_torch_and_stays_identical():
    ours, ref = _params(), _params()
    a = LeanAdam(ours, lr=0.01, amsgrad=True)
    b = torch.optim.Adam(ref, lr=0.01, amsgrad=True, fused=True)
    _run(a, ours, 5)
    _run(b, ref, 5)
    _assert_same(ours, ref, a, b)


def test_runs_build_it_for_adam():
    model = torch.nn.Linear(4, 3)
    opt = make_optimizer(TrainConfig(lr=1e-3), model)
    assert isinstance(opt, LeanAdam) and isinstance(opt, torch.optim.Adam)
    assert opt.defaults["fused"] is True
