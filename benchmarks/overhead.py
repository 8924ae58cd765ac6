"""Trainer overhead: one MNIST epoch of the bionn Trainer with Backprop against a hand loop.

Both train the same MLP (784-1000-10, ReLU, batch 100, Adam lr 1e-3) from the same initial
weights on the same in-memory tensors, and both evaluate on the test set after the epoch. The
hand loop shuffles the way most hand-written loops do, by indexing the whole training tensor
with a permutation once per epoch; bionn's iterator gathers each batch instead (the JSON also
reports the iterator's own cost per epoch). The
Trainer's epoch also does everything it always does: the progress bar, the divergence check,
the angle to backprop, the metrics line and the atomic checkpoint. Epochs are measured
alternately in one process (bionn, hand, bionn, hand, ...) so that machine noise hits both
alike, after one unmeasured warm-up epoch each; the result is the median of the per-pair
ratios.

    python benchmarks/overhead.py --data-dir DATA [--repeats 15] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bionn.core.models import MLP
from bionn.core.rule import Backprop
from bionn.core.trainer import Trainer
from bionn.data import load_dataset


def hand_epoch(model, opt, x, y, xt, yt, batch_size, generator):
    model.train()
    order = torch.randperm(len(x), generator=generator)
    x, y = x[order], y[order]
    for i in range(0, len(x), batch_size):
        opt.zero_grad()
        loss = F.cross_entropy(model(x[i : i + batch_size]), y[i : i + batch_size])
        loss.backward()
        opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(xt), 1000):
            correct += (model(xt[i : i + 1000]).argmax(1) == yt[i : i + 1000]).sum().item()
    return correct / len(xt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="data root (default $BIONN_DATA)")
    parser.add_argument("--repeats", type=int, default=15, help="epochs measured per side")
    parser.add_argument("--out", default="benchmarks/results/overhead.json")
    args = parser.parse_args()

    train = load_dataset("mnist", args.data_dir, train=True)
    test = load_dataset("mnist", args.data_dir, train=False)
    x, y = train.normalized(), train.targets
    xt, yt = test.normalized(), test.targets

    torch.manual_seed(0)
    bionn_model = MLP(784, [1000], 10)
    hand_model = nn.Sequential(nn.Flatten(1), nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 10))
    hand_model[1].load_state_dict(bionn_model.linears[0].state_dict())
    hand_model[3].load_state_dict(bionn_model.linears[1].state_dict())
    bionn_opt = torch.optim.Adam(bionn_model.parameters(), lr=1e-3)
    hand_opt = torch.optim.Adam(hand_model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(bionn_model, Backprop(), bionn_opt, (x, y), (xt, yt),
                          batch_size=100, run_dir=run_dir, progress=True)
        total = args.repeats + 1
        bionn_times, hand_times, accs = [], [], {"bionn": [], "hand": []}

        def run_bionn(epoch):
            start = time.perf_counter()
            record = trainer.run_epoch(epoch, total)
            accs["bionn"].append(record["test_accuracy"])
            return time.perf_counter() - start

        def run_hand():
            start = time.perf_counter()
            accs["hand"].append(hand_epoch(hand_model, hand_opt, x, y, xt, yt, 100, generator))
            return time.perf_counter() - start

        run_bionn(1)  # warm-up epoch on each side, not measured
        run_hand()
        for epoch in range(2, total + 1):
            # alternate which side goes first, so that slow drifts hit both alike
            if epoch % 2:
                b, h = run_bionn(epoch), run_hand()
            else:
                h, b = run_hand(), run_bionn(epoch)
            bionn_times.append(b)
            hand_times.append(h)
            print(f"epoch {epoch}: bionn {b:.3f} s, hand {h:.3f} s, ratio {b / h:.3f}")

    # data loading alone: one shuffled pass of the in-memory iterator over the training set
    from bionn.data.loader import TensorLoader

    loader = TensorLoader(x, y, batch_size=100, shuffle=True, seed=0)
    loader_times = []
    for _ in range(3):
        start = time.perf_counter()
        for _batch in loader:
            pass
        loader_times.append(time.perf_counter() - start)

    ratios = [b / h for b, h in zip(bionn_times, hand_times, strict=True)]
    result = {
        "benchmark": "overhead",
        "model": "784-1000-10 relu",
        "batch_size": 100,
        "optimizer": "adam lr 1e-3",
        "dataset": "mnist",
        "repeats": args.repeats,
        "bionn_epoch_s": bionn_times,
        "hand_epoch_s": hand_times,
        "ratios": ratios,
        "median_ratio": statistics.median(ratios),
        "ratio_of_medians": statistics.median(bionn_times) / statistics.median(hand_times),
        "target_median_ratio_at_most": 1.05,
        "test_accuracy": accs,
        "loader_epoch_s": statistics.median(loader_times),
        "loader_share_of_epoch": statistics.median(loader_times) / statistics.median(bionn_times),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
    result["passed"] = result["median_ratio"] <= 1.05
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"median ratio bionn / hand = {result['median_ratio']:.3f} (target <= 1.05)")
    print(f"data loading: {result['loader_epoch_s']:.3f} s per epoch "
          f"({100 * result['loader_share_of_epoch']:.1f}% of a bionn epoch)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
