"""
Convert an existing model to feedback alignment
===============================================

:func:`bionn.nn.convert` copies any model and swaps each ``nn.Linear`` and ``nn.Conv2d`` for
its feedback-alignment counterpart: the forward pass and the weights are unchanged, only the
backward pass sends the error through a fixed random matrix. The copy trains with plain
autograd (``loss.backward()``) and any optimizer, so an existing training loop needs no change.
"""

import matplotlib.pyplot as plt
import torch
from torch import nn

from bionn.data import Digits
from bionn.nn import convert

torch.manual_seed(0)
train, test = Digits(train=True), Digits(train=False)
x, y = train.normalized().flatten(1), train.targets
x_test, y_test = test.normalized().flatten(1), test.targets

# %%
# Any model: here a small MLP written the usual way.
model = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 10))
fa_model, report = convert(model, "fa")
print(report)
print(fa_model)

# %%
# The converted copy computes the same outputs as the original.
with torch.no_grad():
    print("same forward pass:", torch.allclose(model(x), fa_model(x)))


# %%
# An ordinary training loop, run on both: the original learns with backprop, the copy with
# feedback alignment.
def train_loop(net, epochs=15):
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    accuracies = []
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
        with torch.no_grad():
            accuracies.append((net(x_test).argmax(1) == y_test).float().mean().item())
    return accuracies


curves = {"backprop": train_loop(model), "feedback alignment": train_loop(fa_model)}
for name, acc in curves.items():
    print(f"{name}: test accuracy {acc[-1]:.1%}")

fig, ax = plt.subplots(figsize=(5, 3.5), constrained_layout=True)
for name, acc in curves.items():
    ax.plot(range(1, len(acc) + 1), [100 * a for a in acc], marker="o", label=name)
ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="same loop, two backward passes")
ax.legend()
plt.show()
