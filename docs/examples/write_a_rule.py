"""
Write a new rule in 40 lines
============================

A rule fills ``.grad`` with minus the paper's update and any torch optimizer steps; once
registered, the Trainer, ``bionn train --rule NAME``, ``bionn compare`` and the angle to
backprop work for it unchanged. As an example, Widrow & Hoff's delta rule (1960) trains only
the readout of a network whose hidden layers keep their random initial weights: with a softmax
output, ``Delta W = (t - y) h^T``, the output error times the presynaptic activity.
"""

import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from bionn.core import LearningRule, RuleInfo, TrainConfig, register_rule
from bionn.core.rule import batch_metrics
from bionn.core.run import run_training
from bionn.data import Digits
from bionn.metrics import angle_to_backprop


class DeltaRule(LearningRule):
    """The delta rule on the readout of an MLP; the hidden layers stay as initialised."""

    name = "delta"
    supervised = True

    def fill_grads(self, model, x, y):
        *hidden, readout = model.linears
        with torch.no_grad():
            h = x.flatten(1)
            for layer in hidden:
                h = model.activation(layer(h))
            out = readout(h)
            error = torch.nn.functional.one_hot(y, out.shape[1]) - out.softmax(1)  # t - y
            readout.weight.grad = -(error.T @ h) / len(x)  # p.grad = -Delta W
            readout.bias.grad = -error.mean(0)
            for layer in hidden:
                for p in layer.parameters():
                    p.grad = None  # not learned: the optimizer skips them
        return batch_metrics(self.loss(out, y), out, y)


register_rule(RuleInfo(
    name="delta",
    factory=DeltaRule,
    description="the delta rule on the readout; random fixed hidden layers",
    paper="Widrow & Hoff 1960, IRE WESCON Convention Record 4:96-104",
))

# %%
# The readout's update is exactly the gradient of the cross-entropy for that layer, so its
# angle to backprop is 0; the hidden layer gets no update at all (an angle to a zero vector is
# undefined, so bionn reports nan).
from bionn.core import build_model  # noqa: E402

train = Digits(train=True)
torch.manual_seed(0)
model = build_model("mlp:200", train.input_shape, train.num_classes, "relu")
report = angle_to_backprop(DeltaRule(), model, train.normalized()[:500], train.targets[:500])
for layer, angle in report.per_layer.items():
    print(f"{layer}: {angle:.1f} deg")

# %%
# Registered, it trains like any other rule (this is ``bionn train --rule delta``).
histories = {}
with tempfile.TemporaryDirectory() as tmp:
    for rule in ("delta", "bp"):
        config = TrainConfig(rule=rule, dataset="digits", model="mlp:200", epochs=10,
                             batch_size=32, out=str(Path(tmp) / rule))
        summary = run_training(config, progress=False, plot=False)
        print(f"{rule}: test accuracy {summary['test_accuracy']:.1%}")
        lines = (Path(tmp) / rule / "metrics.jsonl").read_text().splitlines()
        histories[rule] = [json.loads(line) for line in lines]

fig, ax = plt.subplots(figsize=(5, 3.5), constrained_layout=True)
for rule, records in histories.items():
    ax.plot([r["epoch"] for r in records], [100 * r["test_accuracy"] for r in records],
            marker="o", label=rule)
ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="a readout-only rule against backprop")
ax.legend()
plt.show()
