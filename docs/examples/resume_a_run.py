"""
Resume a run
============

Every epoch ``bionn train`` writes a checkpoint into the run folder, holding the weights, the
optimizer, the scheduler, the rule's own state and every random generator. ``--resume``
continues from it, and ``--epochs`` may be raised. With a learning rate that does not depend
on the length of the run (``--schedule constant``), a run stopped after two epochs and resumed
to four ends with the same weights, bit for bit on the CPU, as a run of four epochs. (The
default cosine schedule spans the epochs asked for, so raising ``--epochs`` changes the rates
of the epochs still to come; a run killed mid-way and resumed with the same ``--epochs`` is
bit-identical under any schedule.)
"""

import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from bionn.cli import main

tmp = Path(tempfile.mkdtemp())
common = ["--rule", "fa", "--dataset", "digits", "--model", "mlp:200", "--schedule", "constant",
          "--no-progress"]

# %%
# Two epochs, then a resume to four (as on the command line: ``bionn train ...``).
main(["train", *common, "--epochs", "2", "--out", str(tmp / "resumed")])
main(["train", "--resume", "--out", str(tmp / "resumed"), "--epochs", "4", "--no-progress"])

# %%
# The same run without the interruption.
main(["train", *common, "--epochs", "4", "--out", str(tmp / "straight")])

# %%
# The checkpoints load with ``torch.load(weights_only=True)``; the weights are identical.
resumed = torch.load(tmp / "resumed" / "checkpoint.pt", weights_only=True)["model"]
straight = torch.load(tmp / "straight" / "checkpoint.pt", weights_only=True)["model"]
print("bit-identical weights:", all(torch.equal(resumed[k], straight[k]) for k in straight))

fig, ax = plt.subplots(figsize=(5, 3.5), constrained_layout=True)
for name, style in (("straight", "-o"), ("resumed", "--x")):
    records = [json.loads(line) for line in (tmp / name / "metrics.jsonl").read_text().splitlines()]
    ax.plot([r["epoch"] for r in records], [r["angle_to_backprop_deg"] for r in records], style,
            label=name)
ax.axvline(2.5, color="grey", linewidth=1)
ax.set(xlabel="epoch", ylabel="angle to backprop (deg)", title="resumed after epoch 2")
ax.legend()
plt.show()
