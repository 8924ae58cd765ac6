"""Recurrent modules: step-by-step equals the whole sequence; shapes; fixed feedback."""

from __future__ import annotations

import pytest
import torch

from bionn.errors import ConfigError
from bionn.nn.recurrent import AttentionRNN, LeakyRNN


@pytest.mark.parametrize("cls", [LeakyRNN, AttentionRNN])
def test_forward_equals_steps_and_shapes(cls):
    torch.manual_seed(0)
    net = cls(3, 6, 4, alpha=0.5)
    x = torch.randn(9, 2, 3)
    out = net(x)
    assert out.shape == (9, 2, 4)
    state = net.initial_state(x)
    for t in range(9):
        o, state = net.step(x[t], state)
        assert torch.allclose(o, out[t], atol=1e-6)
    detached = net.detach_state(state)
    assert all(not s.requires_grad for s in detached)


def test_leaky_rnn_hand_computed_readout():
    torch.manual_seed(1)
    net = LeakyRNN(2, 3, 2, alpha=0.25, activation="relu")
    x = torch.randn(4, 1, 2)
    a = torch.zeros(1, 3)
    for t in range(4):
        a = 0.75 * a + 0.25 * torch.relu(a @ net.weight_hh.T + x[t] @ net.weight_ih.T + net.bias)
    assert torch.allclose(net(x)[-1], net.readout(a), atol=1e-6)


def test_attention_memory_reads_every_past_state():
    torch.manual_seed(2)
    net = AttentionRNN(3, 5, 2)
    x = torch.randn(7, 2, 3)
    weights = net.attention_weights(x)
    assert weights.shape == (7, 2)
    assert torch.allclose(weights.sum(0), torch.ones(2))
    # the output at the last step depends on the first input only through state and memory;
    # with the recurrence cut (W = 0, alpha = 1) it still does, through the read
    with torch.no_grad():
        net.weight_hh.zero_()
    net.alpha = 1.0
    x2 = x.clone()
    x2[0] += 1.0
    assert not torch.allclose(net(x)[-1], net(x2)[-1])
    plain = LeakyRNN(3, 5, 2, alpha=1.0)
    with torch.no_grad():
        plain.weight_hh.zero_()
    assert torch.allclose(plain(x)[-1], plain(x2)[-1])


def test_feedback_is_a_fixed_buffer_and_bad_sizes_are_refused():
    net = LeakyRNN(3, 8, 2, feedback_scale=2.0)
    assert "feedback" in dict(net.named_buffers())
    assert "feedback" not in dict(net.named_parameters())
    assert net.feedback.abs().max() <= 2.0 / 8**0.5
    assert LeakyRNN(3, 8, 2).feedback is None
    with pytest.raises(ConfigError):
        LeakyRNN(3, 0, 2)
    with pytest.raises(ConfigError):
        LeakyRNN(3, 4, 2, alpha=0.0)
    with pytest.raises(ConfigError):
        LeakyRNN(3, 4, 2, activation="gelu")
    with pytest.raises(ConfigError, match="time-major"):
        LeakyRNN(3, 4, 2)(torch.randn(2, 3))
