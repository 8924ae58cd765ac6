"""Temporal credit assignment: BPTT, truncated BPTT, RTRL, UORO and RFLO.

Oracles: central finite differences of the loss (BPTT), autograd through the unrolled network
(RTRL, TBPTT, UORO's mean), and a hand-written influence-matrix recursion with the Jacobian
replaced by (1 - alpha) I (RFLO). Learning: the synthetic delayed-recall task and the real
JapaneseVowels speakers.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from torch.nn import functional as F

from bionn.core.registry import make_rule
from bionn.core.trainer import Trainer
from bionn.data import load_dataset
from bionn.errors import ConfigError
from bionn.nn.recurrent import AttentionRNN, LeakyRNN
from bionn.rules.temporal_credit import online_gradients

T, B, FEAT, N, C = 7, 3, 4, 5, 3
ALPHA = 0.6


@pytest.fixture
def f64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _net(seed=0, feedback=None, cls=LeakyRNN):
    torch.manual_seed(seed)
    kwargs = {} if cls is AttentionRNN else {"feedback_scale": feedback}
    return cls(FEAT, N, C, alpha=ALPHA, activation="tanh", **kwargs)


def _batch(kind, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, FEAT, generator=g)
    if kind == "sequence":  # one class per sequence, at the last step
        y = torch.randint(C, (B,), generator=g)
    elif kind == "steps":  # one class per step, some steps without a target
        y = torch.randint(C, (T, B), generator=g)
        y[:2] = -100
        y[4, 1] = -100
    else:  # values at every step, some missing
        y = torch.randn(T, B, C, generator=g)
        y[:3] = math.nan
    return x, y


def _oracle_loss(out, y):
    """The loss written out independently: mean over the entries that have a target."""
    if y.dim() == 1:
        return F.cross_entropy(out[-1], y)
    if y.is_floating_point():
        keep = ~torch.isnan(y[..., 0])
        return ((out[keep] - y[keep]) ** 2).sum() / keep.sum()
    keep = y != -100
    return F.cross_entropy(out[keep], y[keep])


def _autograd(model, x, y):
    loss = _oracle_loss(model(x), y)
    return dict(zip([n for n, _ in model.named_parameters()],
                    torch.autograd.grad(loss, list(model.parameters())), strict=True))


def _fill(rule_name, model, x, y, **options):
    rule = make_rule(rule_name, options)
    rule.fill_grads(model, x, y)
    return {n: p.grad.clone() for n, p in model.named_parameters()}


# --- theory ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sequence", "steps", "values"])
def test_bptt_matches_central_finite_differences(f64, kind):
    model = _net()
    x, y = _batch(kind)
    grads = _fill("bptt", model, x, y)
    eps = 1e-6
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.view(-1)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + eps
                up = _oracle_loss(model(x), y).item()
                flat[i] = old - eps
                down = _oracle_loss(model(x), y).item()
                flat[i] = old
                fd = (up - down) / (2 * eps)
                assert abs(grads[name].view(-1)[i].item() - fd) < 1e-8, (name, i)


@pytest.mark.parametrize("kind", ["sequence", "steps", "values"])
def test_rtrl_matches_autograd_bptt_to_1e_10(f64, kind):
    model = _net()
    x, y = _batch(kind)
    expected = _autograd(model, x, y)
    got = _fill("rtrl", model, x, y)
    for name, g in expected.items():
        assert torch.allclose(got[name], g, atol=1e-10, rtol=0), name


def test_tbptt_with_k_at_least_t_equals_bptt_and_k3_does_not(f64):
    model = _net()
    x, y = _batch("steps")
    expected = _autograd(model, x, y)
    for k in (T, T + 5):
        got = _fill("tbptt", model, x, y, truncation=k)
        for name, g in expected.items():
            assert torch.allclose(got[name], g, atol=1e-12, rtol=0), (k, name)
    got = _fill("tbptt", model, x, y, truncation=3)
    diff = (got["weight_hh"] - expected["weight_hh"]).norm() / expected["weight_hh"].norm()
    assert diff > 1e-2
    # the readout's gradient needs no credit across time: truncation leaves it exact
    assert torch.allclose(got["readout.weight"], expected["readout.weight"], atol=1e-12)


def test_tbptt_k3_matches_a_hand_truncated_graph(f64):
    """Oracle: autograd through a forward pass whose state is detached every 3 steps."""
    model = _net()
    x, y = _batch("steps")
    params = model.parameters_tuple()
    a = torch.zeros(B, N)
    outs = []
    for t in range(T):
        if t % 3 == 0:
            a = a.detach()
        h = a @ params.w.T + x[t] @ params.u.T + params.b
        a = (1 - ALPHA) * a + ALPHA * torch.tanh(h)
        outs.append(model.readout(a))
    loss = _oracle_loss(torch.stack(outs), y)
    expected = torch.autograd.grad(loss, list(model.parameters()))
    got = _fill("tbptt", model, x, y, truncation=3)
    for (name, _), g in zip(model.named_parameters(), expected, strict=True):
        assert torch.allclose(got[name], g, atol=1e-12), name


def _rtrl_with_leak_jacobian(model, x, y, feedback):
    """Hand-written reference: the full influence-matrix recursion of RTRL for
    Theta = [W | U | b], with the recurrent Jacobian J_t replaced by (1 - alpha) I, and the
    error reaching the hidden units through ``feedback`` (N, C)."""
    w, u, b = (t.detach() for t in (model.weight_hh, model.weight_ih, model.bias))
    wo, bo = model.readout.weight.detach(), model.readout.bias.detach()
    d = N + FEAT + 1
    keep = y != -100
    count = keep.sum()
    grad = torch.zeros(N, d)
    for ex in range(B):
        a = torch.zeros(N)
        m = torch.zeros(N, N, d)  # m[i, k, l] = d a[i] / d Theta[k, l]
        for t in range(T):
            z = torch.cat([a, x[t, ex], torch.ones(1)])
            h = w @ a + u @ x[t, ex] + b
            dphi = 1 - torch.tanh(h) ** 2
            a = (1 - ALPHA) * a + ALPHA * torch.tanh(h)
            immediate = torch.zeros(N, N, d)
            for i in range(N):
                immediate[i, i, :] = ALPHA * dphi[i] * z
            m = (1 - ALPHA) * m + immediate  # J_t -> (1 - alpha) I
            if keep[t, ex]:
                out = wo @ a + bo
                e = torch.softmax(out, 0)
                e[y[t, ex]] -= 1
                e = e / count
                grad += torch.einsum("i,ikl->kl", feedback @ e, m)
    return grad


KERNEL_CHOICES = ["native", "torch"]


@pytest.mark.parametrize("kernel", KERNEL_CHOICES)
def test_rflo_with_b_equal_wout_transpose_is_rtrl_with_leak_jacobian(f64, kernel):
    model = _net(feedback=1.0)
    x, y = _batch("steps")
    with torch.no_grad():
        model.feedback.copy_(model.readout.weight.T)
    ref = _rtrl_with_leak_jacobian(model, x, y, model.readout.weight.detach().T)
    got = _fill("rflo", model, x, y, kernel=kernel)
    assert torch.allclose(got["weight_hh"], ref[:, :N], atol=1e-12)
    assert torch.allclose(got["weight_ih"], ref[:, N:N + FEAT], atol=1e-12)
    assert torch.allclose(got["bias"], ref[:, -1], atol=1e-12)
    # and it is not the true gradient (the Jacobian's W term is missing)
    true = _autograd(model, x, y)
    assert (got["weight_hh"] - true["weight_hh"]).norm() > 1e-3 * true["weight_hh"].norm()


@pytest.mark.parametrize("kernel", KERNEL_CHOICES)
def test_rflo_uses_its_random_feedback(f64, kernel):
    model = _net(feedback=1.0)
    x, y = _batch("steps")
    ref = _rtrl_with_leak_jacobian(model, x, y, model.feedback.clone())
    got = _fill("rflo", model, x, y, kernel=kernel)
    assert torch.allclose(got["weight_hh"], ref[:, :N], atol=1e-12)


@pytest.mark.parametrize("kernel", KERNEL_CHOICES)
@pytest.mark.parametrize("kind", ["sequence", "values"])
def test_rflo_equals_the_leak_jacobian_recursion_for_every_target_kind(f64, kernel, kind):
    """The same identity as above, written out for the other target kinds: per-sequence
    classes and per-step values with missing entries (squared error, e = 2 (y - target) / n);
    the reference is autograd through the network with the recurrent path cut (J_t -> (1 -
    alpha) I: the state enters the next step's pre-activation detached), the readout's error
    sent back through W_out^T."""
    model = _net(feedback=1.0)
    with torch.no_grad():
        model.feedback.copy_(model.readout.weight.T)
    x, y = _batch(kind)
    params = model.parameters_tuple()
    a = torch.zeros(B, N)
    outs = []
    for t in range(T):
        h = a.detach() @ params.w.T + x[t] @ params.u.T + params.b
        a = (1 - ALPHA) * a + ALPHA * torch.tanh(h)
        outs.append(model.readout(a))
    loss = _oracle_loss(torch.stack(outs), y)
    names = ["weight_hh", "weight_ih", "bias"]
    expected = torch.autograd.grad(loss, [model.weight_hh, model.weight_ih, model.bias])
    got = _fill("rflo", model, x, y, kernel=kernel)
    for name, g in zip(names, expected, strict=True):
        assert torch.allclose(got[name], g, atol=1e-12), name


@pytest.mark.parametrize("kernel", KERNEL_CHOICES)
def test_uoro_is_unbiased(f64, kernel):
    """Averaged over many draws of the random signs, UORO's estimate approaches the true
    gradient (autograd). Every copy of one sequence in a batch draws its own signs, so a batch
    of R copies gives the mean of R independent estimates; 20 batches give its standard error.
    Tolerance: every component of the mean within 5 standard errors of the truth (with ~60
    components a true z-score beyond 5 has probability < 1e-4)."""
    model = _net()
    x1, y1 = _batch("steps")
    x1, y1 = x1[:, :1], y1[:, :1]
    copies, batches = 500, 20
    x = x1.expand(T, copies, FEAT).contiguous()
    y = y1.expand(T, copies).contiguous()
    true = _autograd(model, x1, y1)
    gen = torch.Generator().manual_seed(0)
    means = []
    single = []
    for _ in range(batches):
        grads, _, _ = online_gradients(model, x, y, "uoro", generator=gen, kernel=kernel)
        means.append(torch.cat([grads[k].flatten() for k in ("weight_hh", "weight_ih", "bias")]))
        g1, _, _ = online_gradients(model, x1, y1, "uoro", generator=gen, kernel=kernel)
        single.append(torch.cat([g1[k].flatten() for k in ("weight_hh", "weight_ih", "bias")]))
    means = torch.stack(means)
    truth = torch.cat([true[k].flatten() for k in ("weight_hh", "weight_ih", "bias")])
    mean = means.mean(0)
    se = means.std(0) / math.sqrt(batches)
    z = (mean - truth).abs() / se.clamp(min=1e-12)
    assert z.max() < 5, z.max()
    rel_mean = (mean - truth).norm() / truth.norm()
    rel_single = torch.stack([(s - truth).norm() / truth.norm() for s in single]).mean()
    assert rel_mean < 0.1 and rel_single > 0.5, (rel_mean, rel_single)


def _peak_tensor_bytes(rule, model, x, y):
    """Peak live tensor bytes while ``rule.fill_grads(model, x, y)`` runs, from the
    profiler's allocation and free events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        rule.fill_grads(model, x, y)
    live = peak = 0
    for _, nbytes in sorted((e.start_ns(), e.nbytes())
                            for e in prof.profiler.kineto_results.events()
                            if e.name() == "[memory]"):
        live += nbytes
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("name", ["bptt", "rflo", "uoro"])
def test_memory_per_update_grows_with_t_for_bptt_only(name):
    """Closed-form bounds on the growth of one update's peak tensor memory from T = 20 to
    T = 80 (batch 8, N = 16, float32, the add task: one value to predict): BPTT stores at
    least the (B, N) rates of every step, >= 4 B N bytes per step; the online rules store
    nothing of size N per step (only target-sized arrays, a few B C numbers per step), so
    they grow by less than one (B, N) state per step."""
    batch, hidden = 8, 16
    peaks = []
    for length in (20, 80):
        ds = load_dataset(f"add:length={length},n_train={batch},n_test=1")
        torch.manual_seed(0)
        rule = make_rule(name)
        model = rule.build_model(f"rnn:{hidden}", ds.input_shape, ds.num_classes, "tanh")
        rule.fill_grads(model, ds.data, ds.targets)
        for p in model.parameters():
            p.grad = None
        peaks.append(_peak_tensor_bytes(rule, model, ds.data, ds.targets))
    per_step = (peaks[1] - peaks[0]) / 60
    state = 4 * batch * hidden
    if name == "bptt":
        assert per_step >= state, (per_step, state)
    else:
        assert per_step < state, (per_step, state)


# --- contract ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bptt", "tbptt", "rtrl", "uoro", "rflo"])
def test_contract(name):
    x, y = _batch("sequence")
    x = x.float()
    model = _net(feedback=1.0 if name == "rflo" else None)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    torch.manual_seed(3)
    g1 = _fill(name, model, x, y)
    for k, p in model.named_parameters():
        assert p.grad.shape == p.shape and torch.isfinite(p.grad).all(), k
        assert torch.equal(p.detach(), before[k]), "p.data must not change"
    torch.manual_seed(3)
    g2 = _fill(name, model, x, y)
    for k in g1:
        assert torch.equal(g1[k], g2[k]), k
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    for k, p in model.named_parameters():
        p.grad = g1[k].clone()
    opt.step()
    for k, p in model.named_parameters():
        assert torch.allclose(p.detach(), before[k] - g1[k]), k


def test_online_rules_refuse_the_attention_network():
    for name in ("rtrl", "uoro", "rflo"):
        with pytest.raises(ConfigError):
            make_rule(name).build_model("attention:8", (3,), 2, "tanh")
    with pytest.raises(ConfigError):
        make_rule("rflo").fill_grads(_net(cls=AttentionRNN), *_batch("sequence"))


def test_bad_options_and_models_are_refused():
    with pytest.raises(ConfigError):
        make_rule("tbptt", {"truncation": 0})
    with pytest.raises(ConfigError):
        make_rule("bptt", {"leak": 1.5})
    with pytest.raises(ConfigError):
        make_rule("rflo", {"feedback_scale": -1.0})
    with pytest.raises(ConfigError):
        make_rule("bptt").build_model("cnn", (3,), 2, "tanh")
    with pytest.raises(ConfigError):
        make_rule("bptt").build_model("rnn:x", (3,), 2, "tanh")
    with pytest.raises(ConfigError):
        make_rule("bptt").build_model("rnn", (3,), 2, "gelu")
    assert isinstance(make_rule("bptt").build_model("mlp:1000", (3,), 2, "tanh"), LeakyRNN)


def test_kernel_option_is_checked_and_native_refuses_where_it_cannot_run(monkeypatch):
    with pytest.raises(ConfigError, match="--kernel must be one of auto, native, torch"):
        make_rule("uoro", {"kernel": "fast"})
    model = _net(feedback=1.0)
    x, y = _batch("steps")
    import bionn.native.recurrent as native

    monkeypatch.setattr(native, "recurrent_kernel", lambda: None)
    with pytest.raises(ConfigError, match="--kernel native: the C kernel is not available"):
        online_gradients(model, x, y, "rflo", kernel="native")
    # auto falls back to the torch code, which gives the same update as the kernel
    fallback, _, _ = online_gradients(model, x, y, "rflo", kernel="auto")
    monkeypatch.undo()
    torch_code, _, _ = online_gradients(model, x, y, "rflo", kernel="torch")
    for name, g in torch_code.items():
        assert torch.equal(fallback[name], g), name


# --- it learns ---------------------------------------------------------------------------


def _train(name, spec, model_spec="rnn:24", epochs=3, lr=1e-2, options=None, root=None):
    train = load_dataset(spec, root, train=True)
    test = load_dataset(spec, root, train=False)
    torch.manual_seed(0)
    rule = make_rule(name, options or {})
    model = rule.build_model(model_spec, train.input_shape, train.num_classes, "tanh")
    trainer = Trainer(
        model, rule, torch.optim.Adam(model.parameters(), lr=lr),
        (train.normalized(), train.targets), (test.normalized(), test.targets),
        batch_size=32, progress=False, batch_dims=train.batch_dims, angle_batch_size=64,
    )
    return trainer.fit(epochs)


@pytest.mark.parametrize("name", ["bptt", "tbptt", "rtrl", "uoro", "rflo"])
def test_learns_delayed_recall(name):
    """Delay 6 with distractors, 4 symbols (chance 25%): at least 95% on the test set."""
    options = {"truncation": 8} if name == "tbptt" else {}
    hidden = "rnn:16" if name == "rtrl" else "rnn:24"
    summary = _train(name, "copy:delay=6,n_train=384,n_test=200", hidden, epochs=4,
                     options=options)
    assert summary["test_accuracy"] >= 0.95, summary["test_accuracy"]


def test_attention_memory_with_tbptt_recalls_beyond_its_truncation():
    """TBPTT with K = 2 on a 12-step delay: the plain RNN stays near chance, the attention
    memory recalls (credit reaches the stored cue state through the read)."""
    spec = "copy:delay=12,n_train=512,n_test=200"
    plain = _train("tbptt", spec, "rnn:24", epochs=4, options={"truncation": 2})
    memory = _train("tbptt", spec, "attention:24", epochs=4, options={"truncation": 2})
    assert plain["test_accuracy"] < 0.5, plain["test_accuracy"]
    assert memory["test_accuracy"] >= 0.9, memory["test_accuracy"]


needs_data = pytest.mark.skipif(
    not os.environ.get("BIONN_DATA"), reason="needs $BIONN_DATA with ucr-uea/"
)


@needs_data
@pytest.mark.parametrize("name,threshold", [("bptt", 0.9), ("rflo", 0.85)])
def test_learns_japanese_vowels(name, threshold):
    """9 speakers (chance 24%): BPTT and RFLO identify most test utterances."""
    summary = _train(name, "jvowels", "rnn:32", epochs=10, lr=1e-2)
    assert summary["test_accuracy"] >= threshold, summary["test_accuracy"]


# --- command line ------------------------------------------------------------------------


def _cli(capsys, *argv):
    from bionn.cli import main

    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _usage_error(result):
    code, out, err = result
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1, (code, err)
    return err


def test_cli_trains_a_recurrent_rule_on_a_synthetic_task(capsys, tmp_path):
    code, out, err = _cli(
        capsys, "train", "--rule", "tbptt", "--truncation", 3, "--dataset",
        "copy:delay=4,n_train=64,n_test=32", "--model", "attention:8", "--activation", "tanh",
        "--epochs", 1, "--batch-size", 16, "--no-progress", "--out", tmp_path / "r", "--json",
    )
    assert code == 0, err
    assert (tmp_path / "r" / "outputs.png").is_file()
    assert '"rule": "tbptt"' in out.splitlines()[-1]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["model"] == (
        "attention:8 (leaky RNN with an attention memory 9-8-4, alpha 0.5, tanh)")


def test_summary_names_the_recurrent_network_the_default_model_builds(capsys, tmp_path):
    code, _, err = _cli(
        capsys, "train", "--rule", "rflo", "--dataset", "copy:delay=2,n_train=16,n_test=8",
        "--activation", "tanh", "--epochs", 1, "--batch-size", 16, "--no-progress",
        "--out", tmp_path / "r",
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["model"].startswith("rnn:64 (leaky RNN ") and "mlp" not in summary["model"]


def test_cli_refuses_mismatched_data_and_rules(capsys, tmp_path):
    line = _usage_error(_cli(capsys, "train", "--rule", "bp", "--dataset", "copy",
                             "--no-progress", "--out", tmp_path / "a"))
    assert "time-major" in line or "images" in line
    line = _usage_error(_cli(capsys, "train", "--rule", "bptt", "--dataset", "digits",
                             "--no-progress", "--out", tmp_path / "b"))
    assert "time-major sequences" in line
    line = _usage_error(_cli(capsys, "train", "--rule", "bptt", "--dataset", "copy:delay=x",
                             "--no-progress", "--out", tmp_path / "c"))
    assert "delay must be int" in line
    line = _usage_error(_cli(capsys, "train", "--rule", "rflo", "--dataset", "jvowels",
                             "--data-dir", tmp_path, "--no-progress", "--out", tmp_path / "d"))
    assert "JapaneseVowels_TRAIN.ts is missing" in line and "--data-dir" in line


def test_cli_data_list_names_every_sequence_set_and_its_parameters(capsys):
    code, out, _ = _cli(capsys, "data", "list")
    assert code == 0
    for name in ("jvowels", "gunpoint", "italypower", "basicmotions", "copy", "add", "pattern"):
        assert name in out
    assert "delay=20" in out and "distractors=1" in out
    assert ":class:" not in out and ":func:" not in out and "``" not in out
    assert "the same files and images as MNIST." in out
