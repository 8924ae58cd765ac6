"""Model fitting: recovery of known parameters from simulated choices, the likelihood against a
hand-written reference, the convex scale fit, and the choice-file format."""

import math

import pytest
import torch

from bionn.errors import BionnError
from bionn.rl.fit import (
    ChoiceData,
    fit,
    fit_scales,
    likelihood_derivatives,
    negative_log_likelihood,
    read_choices_csv,
    simulate_choices,
    write_choices_csv,
)


def _reference_nll(alpha_pos, alpha_neg, beta, choices, rewards, new_block, q0=0.5):
    # a hand-written Rescorla-Wagner likelihood over one subject's trials (two options)
    q = [q0, q0]
    total = 0.0
    for c, r, fresh in zip(choices, rewards, new_block, strict=True):
        if fresh:
            q = [q0, q0]
        z = [math.exp(beta * v) for v in q]
        total -= math.log(z[c] / sum(z))
        delta = r - q[c]
        q[c] += (alpha_pos if delta > 0 else alpha_neg) * delta
    return total


def test_likelihood_matches_a_hand_written_reference():
    params = {"alpha_pos": torch.tensor([0.3, 0.7]), "alpha_neg": torch.tensor([0.6, 0.1]),
              "beta": torch.tensor([4.0, 9.0])}
    data, _ = simulate_choices("rw", params, "70/30", n_blocks=2, seed=3)
    nll = negative_log_likelihood("rw", params, data)
    for i in range(2):
        ref = _reference_nll(float(params["alpha_pos"][i]), float(params["alpha_neg"][i]),
                             float(params["beta"][i]), data.choice[i].tolist(),
                             data.reward[i].tolist(), data.new_block[i].tolist())
        assert nll[i].item() == pytest.approx(ref, rel=1e-4)


def test_scale_fit_finds_the_minimum_of_the_convex_objective():
    # oracle: a dense scan of beta on the same objective
    g = torch.Generator().manual_seed(0)
    feats = torch.rand(3, 40, 2, 1, generator=g)
    choice = (torch.rand(3, 40, generator=g) < 0.7).long()
    valid = torch.ones(3, 40, dtype=torch.bool)
    s, nll = fit_scales(feats, choice, valid, scale_max=50.0, iterations=30)
    betas = torch.linspace(0, 50, 20001)
    for i in range(3):
        logits = feats[i, :, :, 0][None] * betas[:, None, None]
        scan = -torch.log_softmax(logits, -1).gather(
            2, choice[i][None, :, None].expand(len(betas), -1, 1))[..., 0].sum(1)
        assert nll[i].item() == pytest.approx(scan.min().item(), abs=1e-3)
        assert s[i, 0].item() == pytest.approx(betas[scan.argmin()].item(), abs=0.02)


def test_scale_fit_with_coinciding_features_does_not_fail():
    # where the fast and slow rates coincide, both value tables are equal and the Hessian of
    # the two scales is singular; the likelihood then depends on their sum alone, so the
    # minimum equals the one-scale minimum (oracle: a dense scan of that one scale)
    g = torch.Generator().manual_seed(1)
    feats = torch.rand(4, 60, 2, 1, generator=g)
    choice = (torch.rand(4, 60, generator=g) < 0.7).long()
    valid = torch.ones(4, 60, dtype=torch.bool)
    s, nll = fit_scales(feats.expand(-1, -1, -1, 2), choice, valid, scale_max=50.0,
                        iterations=40)
    betas = torch.linspace(0, 100, 40001)
    for i in range(4):
        logits = feats[i, :, :, 0][None] * betas[:, None, None]
        scan = -torch.log_softmax(logits, -1).gather(
            2, choice[i][None, :, None].expand(len(betas), -1, 1))[..., 0].sum(1)
        assert nll[i].item() == pytest.approx(scan.min().item(), abs=1e-3)


@pytest.mark.parametrize("grid", [4, 5])
def test_two_timescale_grid_survives_a_singular_scale_hessian(grid):
    # these choices once made the coarse two-timescale grid stop with a singular-matrix error
    params = {"alpha_pos": torch.tensor([0.5, 0.2, 0.7]),
              "alpha_neg": torch.tensor([0.5, 0.4, 0.3]), "beta": torch.tensor([5.0, 3.0, 8.0])}
    data, _ = simulate_choices("rw", params, "80/20", n_blocks=3, seed=0)
    result = fit(data, "two-timescale", restarts=1, grid=grid, iterations=0)
    again = negative_log_likelihood("two-timescale", result.params, data)
    assert torch.isfinite(result.nll).all()
    torch.testing.assert_close(result.nll, again, rtol=1e-4, atol=1e-3)


def test_fit_recovers_known_parameters_from_simulated_choices():
    # 60 simulated subjects, 5 blocks of 80 trials of the 80/20 schedule. Tolerances, set
    # from the information 400 trials carry: correlation of fitted with true >= 0.8 for
    # alpha+, alpha- and beta (rank correlation: the likelihood has a ridge along which a few
    # subjects trade a small alpha+ for a large beta, at a likelihood above the truth's);
    # median absolute error <= 0.1 (rates) and <= 25% (beta); and the fit's likelihood is at
    # least that of the true parameters for nearly every subject.
    g = torch.Generator().manual_seed(0)
    e = 60
    true = {"alpha_pos": 0.1 + 0.8 * torch.rand(e, generator=g),
            "alpha_neg": 0.1 + 0.8 * torch.rand(e, generator=g),
            "beta": 2.0 + 8.0 * torch.rand(e, generator=g)}
    data, _ = simulate_choices("rw", true, "80/20", n_blocks=5, seed=1)
    result = fit(data, "rw", restarts=2)
    for name in ("alpha_pos", "alpha_neg", "beta"):
        ranks = [x.argsort().argsort().float() for x in (true[name], result.params[name])]
        r = torch.corrcoef(torch.stack(ranks))[0, 1].item()
        assert r >= 0.8, (name, r)
    err = {k: (result.params[k] - true[k]).abs() for k in true}
    assert err["alpha_pos"].median().item() <= 0.1
    assert err["alpha_neg"].median().item() <= 0.1
    assert (err["beta"] / true["beta"]).median().item() <= 0.25
    at_truth = negative_log_likelihood("rw", true, data)
    assert (result.nll <= at_truth + 0.05).float().mean().item() >= 0.95


def test_two_timescale_fit_is_at_least_as_likely_as_the_truth():
    g = torch.Generator().manual_seed(1)
    e = 12
    true = {"alpha_fast_pos": 0.6 + 0.3 * torch.rand(e, generator=g),
            "alpha_fast_neg": 0.3 + 0.3 * torch.rand(e, generator=g),
            "alpha_slow_pos": 0.05 + 0.15 * torch.rand(e, generator=g),
            "beta": 5.0 + 5.0 * torch.rand(e, generator=g),
            "w": 0.2 + 0.6 * torch.rand(e, generator=g)}
    true["alpha_slow_neg"] = true["alpha_slow_pos"]
    data, _ = simulate_choices("two-timescale", true, "70/30", n_blocks=2, seed=2)
    result = fit(data, "two-timescale", restarts=2)
    at_truth = negative_log_likelihood(
        "two-timescale", {**true, "alpha_slow": true["alpha_slow_pos"]}, data)
    assert (result.nll <= at_truth + 0.1).all()
    assert set(result.params) == {"alpha_fast_pos", "alpha_fast_neg", "alpha_slow", "beta", "w"}


@pytest.mark.parametrize("model", ["rw", "two-timescale"])
def test_likelihood_derivatives_match_autograd(model):
    # oracle: autograd through the plain likelihood (gradient), and autograd Jacobians of the
    # logits per trial for the Fisher information sum_t J^T (diag p - p p^T) J
    if model == "rw":
        params = {"alpha_pos": torch.tensor([0.3, 0.7]), "alpha_neg": torch.tensor([0.6, 0.1]),
                  "beta": torch.tensor([4.0, 9.0])}
        theta = torch.tensor([[0.3, 0.6, 4.0], [0.7, 0.1, 9.0]], dtype=torch.float64)
    else:
        params = {"alpha_fast_pos": torch.tensor([0.8, 0.6]),
                  "alpha_fast_neg": torch.tensor([0.5, 0.3]),
                  "alpha_slow_pos": torch.tensor([0.2, 0.1]),
                  "alpha_slow_neg": torch.tensor([0.2, 0.1]),
                  "beta": torch.tensor([6.0, 8.0]), "w": torch.tensor([0.4, 0.7])}
        theta = torch.tensor([[0.8, 0.5, 0.2, 2.4, 3.6], [0.6, 0.3, 0.1, 5.6, 2.4]],
                             dtype=torch.float64)
    data, _ = simulate_choices(model, params, "70/30", n_blocks=2, seed=3)
    data = ChoiceData(data.choice, data.reward.double(), data.new_block, data.valid,
                      data.subjects, 2)

    def logits_of(th, data=data):  # (E, N, K): a hand-written recursion, subject by subject
        out = []
        for i in range(th.shape[0]):
            q = [[0.5, 0.5], [0.5, 0.5]]
            rows = []
            rates = ([(th[i, 0], th[i, 1])] if model == "rw"
                     else [(th[i, 0], th[i, 1]), (th[i, 2], th[i, 2])])
            scales = th[i, 2 if model == "rw" else 3:]
            for t in range(data.choice.shape[1]):
                if bool(data.new_block[i, t]):
                    q = [[0.5, 0.5], [0.5, 0.5]]
                rows.append(torch.stack([sum(scales[j] * q[j][a] for j in range(len(rates)))
                                         for a in range(2)]))
                c, r = int(data.choice[i, t]), data.reward[i, t]
                for j, (a_pos, a_neg) in enumerate(rates):
                    delta = r - q[j][c]
                    q[j] = list(q[j])
                    q[j][c] = q[j][c] + (a_pos if delta > 0 else a_neg) * delta
            out.append(torch.stack(rows))
        return torch.stack(out)

    def nll_of(th):
        logp = torch.log_softmax(logits_of(th), -1)
        return -logp.gather(2, data.choice[..., None])[..., 0].sum(1)

    th = theta.clone().requires_grad_(True)
    ref_nll = nll_of(th)
    ref_grad, = torch.autograd.grad(ref_nll.sum(), th)
    nll, grad, _ = likelihood_derivatives(model, theta, data)
    assert torch.allclose(nll, ref_nll.detach(), atol=1e-9)
    assert torch.allclose(grad, ref_grad, atol=1e-9)
    # the Fisher information on a short stretch (30 trials, a new block at trial 15)
    new_block = data.new_block[:, :30].clone()
    new_block[:, 15] = True
    short = ChoiceData(data.choice[:, :30], data.reward[:, :30], new_block,
                       data.valid[:, :30], data.subjects, 2)
    _, _, fisher = likelihood_derivatives(model, theta, short)
    jac = torch.autograd.functional.jacobian(lambda x: logits_of(x, short).sum(0), theta)
    for i in range(theta.shape[0]):
        j_i = jac[:, :, i, :]  # (N, K, P): only subject i's own row matters
        p = torch.softmax(logits_of(theta, short)[i], -1)
        cov = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        ref_f = torch.einsum("nkp,nkl,nlq->pq", j_i, cov, j_i)
        assert torch.allclose(fisher[i], ref_f, atol=1e-8)


def test_fit_ends_at_a_local_minimum_of_the_likelihood():
    # oracle: a hand-written likelihood at the fit and at small moves of each parameter that
    # stay inside the box (rates in [0, 1], beta in [0, 50])
    g = torch.Generator().manual_seed(4)
    e = 6
    true = {"alpha_pos": 0.2 + 0.6 * torch.rand(e, generator=g),
            "alpha_neg": 0.2 + 0.6 * torch.rand(e, generator=g),
            "beta": 3.0 + 5.0 * torch.rand(e, generator=g)}
    data, _ = simulate_choices("rw", true, "80/20", n_blocks=3, seed=5)
    result = fit(data, "rw", restarts=2)
    bounds = {"alpha_pos": 1.0, "alpha_neg": 1.0, "beta": 50.0}
    for i in range(e):
        base = {k: float(v[i]) for k, v in result.params.items()}
        args = (data.choice[i].tolist(), data.reward[i].tolist(), data.new_block[i].tolist())
        at_fit = _reference_nll(base["alpha_pos"], base["alpha_neg"], base["beta"], *args)
        assert at_fit == pytest.approx(result.nll[i].item(), abs=1e-3)
        for name, h in (("alpha_pos", 0.01), ("alpha_neg", 0.01), ("beta", 0.1)):
            for sign in (-1, 1):
                moved = dict(base)
                moved[name] = min(max(base[name] + sign * h, 0.0), bounds[name])
                other = _reference_nll(moved["alpha_pos"], moved["alpha_neg"], moved["beta"],
                                       *args)
                assert other >= at_fit - 2e-3, (i, name, sign, other, at_fit)


def test_choice_file_round_trip(tmp_path):
    params = {"alpha_pos": torch.tensor([0.5, 0.2]), "alpha_neg": torch.tensor([0.5, 0.4]),
              "beta": torch.tensor([5.0, 3.0])}
    data, _ = simulate_choices("rw", params, "80/20", n_blocks=2, seed=0)
    path = write_choices_csv(data, tmp_path / "choices.csv")
    back = read_choices_csv(path)
    assert back.subjects == data.subjects and back.n_options == 2
    assert torch.equal(back.choice, data.choice) and torch.equal(back.reward, data.reward)
    assert torch.equal(back.new_block, data.new_block)


def test_ragged_subjects_are_padded_and_masked(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("trial,subject,block,choice,reward,extra\n1,a,0,0,1,x\n2,a,0,1,0,x\n"
                    "1,b,0,1,1,y\n")
    data = read_choices_csv(path)
    assert data.subjects == ["a", "b"]
    assert data.valid.tolist() == [[True, True], [True, False]]
    ref = _reference_nll(0.4, 0.3, 2.0, [1], [1.0], [True])
    nll = negative_log_likelihood(
        "rw", {"alpha_pos": torch.tensor([0.4, 0.4]), "alpha_neg": torch.tensor([0.3, 0.3]),
               "beta": torch.tensor([2.0, 2.0])}, data)
    assert nll[1].item() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subject,block,choice,reward\na,0,1,1\n", "lacks column"),
        ("subject,block,trial,choice,reward\na,0,1,left,1\n", "line 2: choice"),
        ("subject,block,trial,choice,reward\na,0,1,0,1\na,0,x,1,0\n", "line 3: block and trial"),
        ("subject,block,trial,choice,reward\na,0,1,0,nan\n", "line 2: reward"),
        ("subject,block,trial,choice,reward\na,0,2,0,1\na,0,1,1,0\n", "line 3: subject a"),
        ("subject,block,trial,choice,reward\na,0,1,-1,1\n", "line 2: choice must be >= 0"),
        ("subject,block,trial,choice,reward\n", "no trials"),
        ("subject,block,trial,choice,reward\na,0,1,0,1\na,0,2\n", "line 3: 3 fields"),
        ("", "empty"),
    ],
)
def test_bad_choice_files_name_the_row(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(BionnError, match=message):
        read_choices_csv(path)


def test_choice_data_shape():
    data = ChoiceData(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3),
                      torch.zeros(2, 3, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool),
                      ["a", "b"], 2)
    assert data.n == 2
