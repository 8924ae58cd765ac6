"""
Train a rule and read its angle to backprop
===========================================

Feedback alignment (Lillicrap et al. 2016) sends the output error down through a fixed random
matrix ``B`` instead of the transpose of the forward weights. Its updates are not the gradient,
yet the network learns: the forward weights come to align with ``B``, and the update's angle
to the backprop gradient falls well below 90 degrees. bionn measures that angle after every
epoch, on the same weights and batch as the true gradient.
"""

import matplotlib.pyplot as plt
import torch

from bionn.core import Trainer, make_rule
from bionn.data import Digits
from bionn.metrics import angle_to_backprop

torch.manual_seed(0)
train, test = Digits(train=True), Digits(train=False)  # 8x8 digits, bundled with scikit-learn
x, y = train.normalized(), train.targets

# %%
# A rule builds the network it trains: ``fa`` converts every layer of a plain MLP into one
# whose backward pass uses the random feedback matrix.
rule = make_rule("fa")
model = rule.build_model("mlp:100", train.input_shape, train.num_classes, "tanh")
print(model)

# %%
# The rule fills ``.grad``; any torch optimizer steps. The Trainer records the test accuracy
# and the angle to backprop (per layer and overall) after every epoch.
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
trainer = Trainer(model, rule, optimizer, (x, y), (test.normalized(), test.targets),
                  batch_size=32, progress=False)
summary = trainer.fit(epochs=8)
print(f"test accuracy {summary['test_accuracy']:.1%}")

report = angle_to_backprop(rule, model, x[:500], y[:500])
print(f"angle to backprop: {report.overall:.1f} deg overall")
for layer, angle in report.per_layer.items():
    print(f"  {layer}: {angle:.1f} deg")

# %%
# The learning curve and the angle, epoch by epoch.
epochs = [r["epoch"] for r in trainer.history]
fig, (ax_acc, ax_angle) = plt.subplots(1, 2, figsize=(9, 3.5), constrained_layout=True)
ax_acc.plot(epochs, [100 * r["test_accuracy"] for r in trainer.history], marker="o")
ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="feedback alignment on digits")
ax_angle.plot(epochs, [r["angle_to_backprop_deg"] for r in trainer.history], marker="o")
ax_angle.axhline(90, color="grey", linestyle="--", label="orthogonal")
ax_angle.set(xlabel="epoch", ylabel="degrees", title="angle of the update to backprop",
             ylim=(0, 100))
ax_angle.legend()
plt.show()
