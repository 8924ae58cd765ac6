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
    result = fit(data, "two-timescale", restarts=2, levels=2)
    at_truth = negative_log_likelihood(
        "two-timescale", {**true, "alpha_slow": true["alpha_slow_pos"]}, data)
    assert (result.nll <= at_truth + 0.1).all()
    assert set(result.params) == {"alpha_fast_pos", "alpha_fast_neg", "alpha_slow", "beta", "w"}


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
