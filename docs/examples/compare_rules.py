"""
Compare rules
=============

``bionn compare`` trains several rules on the same data, network, optimizer and budget, and
reports each one's test accuracy and the angle of its update to the backprop gradient. Here a
few rules on the 8x8 digits, for a few seconds each (``bionn compare --rules bp,fa,dfa,pc``
on the command line).
"""

import tempfile

import matplotlib.pyplot as plt

from bionn.core import TrainConfig
from bionn.core.run import run_compare

rules = ["bp", "fa", "dfa", "pc"]
config = TrainConfig(dataset="digits", model="mlp:200", activation="tanh", epochs=4,
                     batch_size=32, out=tempfile.mkdtemp())
summaries, plot_path = run_compare(config, rules, progress=False)

for s in summaries:
    angle = s["angle_to_backprop_deg"]
    print(f"{s['rule']:>4}: test accuracy {s['test_accuracy']:.1%}, angle to backprop "
          f"{angle:.1f} deg, {s['wall_time_s']:.1f} s")

# %%
# Accuracy and angle side by side.
fig, (ax_acc, ax_angle) = plt.subplots(1, 2, figsize=(9, 3.5), constrained_layout=True)
names = [s["rule"] for s in summaries]
ax_acc.bar(names, [100 * s["test_accuracy"] for s in summaries])
ax_acc.set(ylabel="test accuracy (%)", ylim=(50, 100), title="digits, 4 epochs")
ax_angle.bar(names, [s["angle_to_backprop_deg"] for s in summaries])
ax_angle.axhline(90, color="grey", linestyle="--")
ax_angle.set(ylabel="degrees", title="angle of the update to backprop")
plt.show()
