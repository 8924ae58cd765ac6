"""The model converter: same forward pass, a report of what was replaced, strict mode.

Oracles: the original PyTorch model's own outputs and autograd gradients.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bionn.core.models import build_model
from bionn.errors import ConfigError
from bionn.metrics import exact_gradients
from bionn.nn import MODES, DFANetwork, FAConv2d, FALinear, convert

MODE_NAMES = sorted(MODES)


class Mixed(nn.Module):
    """A model with layer types the converter knows and ones it does not."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.conv1d = nn.Conv1d(4, 4, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.ReLU(),
                                  nn.Linear(8, 3))

    def forward(self, x):
        h = torch.relu(self.norm(self.conv(x)))
        n, c, height, width = h.shape
        h = self.conv1d(h.flatten(2)).reshape(n, c, height, width)
        return self.head(h)


@pytest.mark.parametrize("mode", MODE_NAMES)
@pytest.mark.parametrize("spec", ["mlp:16,12", "cnn"])
def test_forward_output_is_identical_to_the_original(mode, spec):
    torch.manual_seed(0)
    model = build_model(spec, (1, 8, 8), 10, "tanh")
    x = torch.randn(6, 1, 8, 8)
    converted, report = convert(model, mode)
    assert torch.equal(converted(x), model(x))
    assert report.mode == mode and len(report.replaced) == (3 if spec.startswith("mlp") else 4)
    assert report.unknown == ()


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_exact_gradients_of_a_converted_model_equal_the_originals(mode):
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10, "tanh")
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    converted, _ = convert(model, mode)
    oracle = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    with exact_gradients(converted):
        ours = torch.autograd.grad(F.cross_entropy(converted(x), y),
                                   list(converted.parameters()))
    for a, b in zip(ours, oracle, strict=True):
        torch.testing.assert_close(a, b)


def test_the_original_model_is_left_untouched_and_weights_are_copied():
    torch.manual_seed(0)
    model = build_model("mlp:16", (1, 8, 8), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted, _ = convert(model, "fa")
    assert all(type(m) is nn.Linear for m in model.linears)
    assert all(type(m) is FALinear for m in converted.linears)
    with torch.no_grad():
        for p in converted.parameters():
            p.add_(1.0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_report_lists_replaced_and_unknown_layers():
    torch.manual_seed(0)
    model = Mixed().eval()
    x = torch.randn(2, 1, 6, 6)
    converted, report = convert(model, "fa")
    assert torch.equal(converted(x), model(x))
    assert [r[0] for r in report.replaced] == ["conv", "head.1", "head.3"]
    assert report.replaced[0] == ("conv", "Conv2d", "FAConv2d")
    assert report.unknown == (("norm", "BatchNorm2d"), ("conv1d", "Conv1d"))
    assert type(converted.norm) is nn.BatchNorm2d and type(converted.conv) is FAConv2d
    text = str(report)
    assert "head.1: Linear -> FALinear" in text and "norm: BatchNorm2d" in text


def test_strict_raises_on_unknown_layers_and_names_them():
    with pytest.raises(ConfigError, match=r"norm \(BatchNorm2d\).*conv1d \(Conv1d\)"):
        convert(Mixed(), "fa", strict=True)
    convert(build_model("cnn", (1, 8, 8), 10), "fa", strict=True)  # all known: no error


def test_subclasses_of_linear_are_not_converted_silently():
    attention = nn.MultiheadAttention(8, 2)  # its out_proj subclasses nn.Linear
    _, report = convert(attention, "fa")
    assert ("out_proj", "NonDynamicallyQuantizableLinear") in report.unknown
    assert ("", "MultiheadAttention") in report.unknown  # owns in_proj_weight itself


def test_a_bare_layer_and_a_shared_layer_are_converted():
    torch.manual_seed(0)
    layer = nn.Linear(4, 4)
    converted, report = convert(layer, "fa")
    assert type(converted) is FALinear and report.replaced == (("", "Linear", "FALinear"),)
    shared = nn.Sequential(layer, nn.Tanh(), layer)
    converted, report = convert(shared, "fa")
    assert converted[0] is converted[2] and len(report.replaced) == 1
    x = torch.randn(3, 4)
    assert torch.equal(converted(x), shared(x))


def test_dfa_wraps_the_copy_and_infers_the_output_width():
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 7)
    converted, report = convert(model, "dfa")
    assert isinstance(converted, DFANetwork) and report.wrapper == "DFANetwork"
    layers = converted.dfa_layers()
    assert [n for n, _ in layers] == ["module.features.0", "module.features.3",
                                      "module.classifier.1", "module.classifier.3"]
    assert all(layer.output_features == 7 for _, layer in layers)
    assert all(layer.slot is converted.slot for _, layer in layers)
    with pytest.raises(ConfigError, match="output_features"):
        convert(nn.Sequential(nn.Conv2d(1, 2, 3)), "dfa")


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="fa, dfa"):
        convert(nn.Linear(2, 2), "bogus")


def test_feedback_scale_reaches_the_layers():
    torch.manual_seed(0)
    converted, _ = convert(nn.Sequential(nn.Conv2d(1, 8, 3), nn.Flatten(), nn.Linear(8, 2)),
                           "fa", feedback_scale=0.5)
    assert isinstance(converted[0], FAConv2d)
    assert converted[0].feedback_scale == 0.5
    assert converted[0].B.abs().max() <= 0.5 / 3.0
