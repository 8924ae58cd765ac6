"""Data-parallel training: 2 gloo processes on the CPU, spawned by the tests.

Oracles: for the weights, a plain 1-process run in the test with the same global batch (the
same rule, model, seed, optimizer and examples); for the reductions, sums written out by hand;
for a failing rank, the wall clock and the exit status and stderr of the surviving rank.
The processes get torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT), which is all bionn reads.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from bionn.core import distributed
from bionn.data.loader import TensorLoader
from bionn.errors import ConfigError

WORLD = 2
TIMEOUT_S = 10  # the process-group timeout of the failure tests
LONG_TIMEOUT_S = 120  # one that a killed rank's partner must not need to wait for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
               LOCAL_WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _spawn(args_for_rank, cwd: Path) -> list[subprocess.Popen]:
    port = _free_port()
    return [
        subprocess.Popen(args_for_rank(rank), env=_env(rank, port), cwd=cwd, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for rank in range(WORLD)
    ]


def _wait_all(procs: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str, str]]:
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        results.append((proc.returncode, out, err))
    return results


# -- the sharding, in one process -------------------------------------------------------------
def test_shares_of_a_batch_make_up_the_one_process_batch():
    x = torch.arange(23.0)[:, None]
    y = torch.arange(23)
    whole = [b[1].tolist() for b in TensorLoader(x, y, batch_size=6, shuffle=True, seed=3)]
    shares = [[b[1].tolist() for b in TensorLoader(x, y, batch_size=6, shuffle=True, seed=3,
                                                   rank=r, world_size=3)] for r in range(3)]
    assert len(whole) == 4 and all(len(s) == 4 for s in shares)
    for k, batch in enumerate(whole):
        usable = len(batch) - len(batch) % 3  # the last batch (5 examples) is cut to 3
        for r in range(3):
            assert shares[r][k] == batch[:usable][r::3]  # strided: examples r, r + 3, ...
    assert len(TensorLoader(x, y, batch_size=6, rank=0, world_size=3)) == 4
    assert len(TensorLoader(x[:20], y[:20], batch_size=6, rank=0, world_size=3)) == 3
    with pytest.raises(ConfigError, match="multiple of 4"):
        TensorLoader(x, y, batch_size=6, rank=0, world_size=4)


def test_batch_size_must_split_across_the_processes():
    with pytest.raises(ConfigError, match="--batch-size 101 does not split across 2"):
        distributed.check_batch_size(101, distributed.Context(rank=0, world_size=2))
    distributed.check_batch_size(100, distributed.Context(rank=1, world_size=2))


def test_outside_torchrun_nothing_is_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = distributed.init(5)
    assert not ctx.enabled and ctx.world_size == 1 and ctx.is_main
    t = torch.ones(3)
    assert distributed.Reducer(ctx).mean([t])[0] is t
    with pytest.raises(ConfigError, match="--dist-timeout"):
        distributed.init(0)


# -- the same weights as one process ---------------------------------------------------------
# The builder runs in the test (world 1: the oracle) and in the spawned ranks (world 2).
BUILD = textwrap.dedent('''
    import torch
    from bionn.core.registry import make_rule
    from bionn.core.trainer import Trainer
    from bionn.data import Digits
    from bionn.data.augment import RandomShift

    N, BATCH, EPOCHS = 400, 100, 1  # 4 global batches of 100 examples, in float64

    CASES = {
        "bp": ({}, "mlp:32", True, None),
        "fa": ({}, "mlp:32", True, None),
        "pc": ({}, "mlp:32", True, None),
        "decolle": ({"encoder": "latency", "timesteps": 6, "burn_in": 2}, "mlp:32", False,
                    None),
        # random draws per example inside the step: Poisson spikes, and random shifts
        "decolle-poisson": ({"encoder": "poisson", "timesteps": 6, "burn_in": 2}, "mlp:32",
                            False, None),
        "fa-augment": ({}, "mlp:32", True, None),
        # plain SGD: the sparse step; 2 normalised steps per batch (minibatch 50)
        "krotov": ({"hidden": 40, "minibatch": 50, "kernel": "torch"}, "mlp", False,
                   "unsupervised"),
        "krotov-supervised": ({"hidden": 40}, "mlp", False, "supervised"),
    }

    def build(case):
        options, spec, normalise, phase = CASES[case]
        rule = make_rule(case.split("-")[0], options)
        train, test = Digits(train=True), Digits(train=False)
        x = (train.normalized() if normalise else train.data).double()
        xt = (test.normalized() if normalise else test.data).double()
        torch.manual_seed(0)
        model = rule.build_model(spec, (1, 8, 8), 10, "relu").double()
        if phase is not None:
            rule.set_phase(phase)
        if phase == "supervised":  # a readout on a trained-looking hidden layer
            with torch.no_grad():
                gen = torch.Generator().manual_seed(1)
                model.W.copy_(torch.randn(model.W.shape, generator=gen))
        lr = 0.05 if phase != "unsupervised" else 0.02
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
        augment = RandomShift(0.25, seed=5) if case.endswith("augment") else None
        trainer = Trainer(model, rule, opt, (x[:N], train.targets[:N]), (xt, test.targets),
                          batch_size=BATCH, seed=0, progress=False, angle_batch_size=100,
                          augment=augment)
        return model, trainer
''')

RANK_SCRIPT = BUILD + textwrap.dedent('''
    import sys
    from bionn.core import distributed
    torch.set_num_threads(1)
    ctx = distributed.init(60)
    for case in CASES:
        model, trainer = build(case)
        distributed.broadcast_model(model)
        trainer.fit(EPOCHS)
        if ctx.is_main:
            torch.save(model.state_dict(), f"{sys.argv[1]}/{case}.pt")
        print(case, ctx.rank, trainer.global_step, flush=True)
    distributed.shutdown()
''')


def test_two_processes_end_with_the_weights_of_one(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    procs = _spawn(lambda rank: [sys.executable, str(script), str(tmp_path)], tmp_path)
    oracle: dict[str, dict[str, torch.Tensor]] = {}
    oracle_steps: dict[str, int] = {}
    namespace: dict = {}
    exec(BUILD, namespace)  # the oracle: the same run in this one process, while they train
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for case in namespace["CASES"]:
            model, trainer = namespace["build"](case)
            trainer.fit(namespace["EPOCHS"])
            oracle_steps[case] = trainer.global_step
            oracle[case] = {k: v.clone() for k, v in model.state_dict().items()}
    except BaseException:
        for p in procs:
            p.kill()
        raise
    finally:
        torch.set_num_threads(torch_threads)
    # 4 global batches; decolle updates at each of its 4 steps after the burn-in, krotov
    # twice per batch (minibatch 50 of 100)
    assert oracle_steps == {"bp": 4, "fa": 4, "pc": 4, "decolle": 16, "decolle-poisson": 16,
                            "fa-augment": 4, "krotov": 8, "krotov-supervised": 4}
    results = _wait_all(procs)
    for code, _, err in results:
        assert code == 0, err
    for _, out, _ in results:
        steps = {line.split()[0]: int(line.split()[2]) for line in out.splitlines()}
        assert steps == oracle_steps
    for case, want in oracle.items():
        got = torch.load(tmp_path / f"{case}.pt", weights_only=True)
        start = namespace["build"](case)[0].state_dict()
        for key, value in want.items():
            if value.is_floating_point() and not torch.equal(start[key], value):
                torch.testing.assert_close(got[key], value, rtol=1e-10, atol=1e-12,
                                           msg=lambda m, c=case, k=key: f"{c} {k}: {m}")
            else:
                assert torch.equal(got[key], value), (case, key)


# -- the command line: rank 0 writes, --resume continues ---------------------------------------
def _train_args(out: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bionn", "train", "--rule", "bp", "--dataset", "digits",
            "--model", "mlp:32", "--epochs", str(epochs), "--out", str(out), "--no-progress",
            "--schedule", "constant", *extra]


def test_cli_under_two_processes_writes_once_and_resumes(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    first = _spawn(lambda rank: _train_args(whole, 3), tmp_path)
    second = _spawn(lambda rank: _train_args(part, 2, "--dist-timeout", "60"), tmp_path)
    for procs in (first, second):
        (code0, out0, err0), (code1, out1, err1) = _wait_all(procs)
        assert code0 == 0 and code1 == 0, err0 + err1
        assert "test accuracy" in out0 and out1 == ""  # only rank 0 reports
    resumed = _spawn(lambda rank: _train_args(part, 3, "--resume"), tmp_path)
    (code0, out0, err0), (code1, out1, err1) = _wait_all(resumed)
    assert code0 == 0 and code1 == 0, err0 + err1
    assert sorted(p.name for p in whole.iterdir()) == sorted(p.name for p in part.iterdir())
    lines = (part / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    a = torch.load(whole / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    # 14 batches of 100 and the last of 37, cut to 36 (18 per process)
    assert a["global_step"] == b["global_step"] == 3 * 15
    for key, value in a["model"].items():
        assert torch.equal(b["model"][key], value), key  # resumed = uninterrupted, bit for bit


# -- a failing rank stops the run with one line -----------------------------------------------
def _started(out: Path, procs: list[subprocess.Popen], limit: float = 600) -> None:
    """Wait until rank 0 has written its first epoch (the run is under way)."""
    deadline = time.monotonic() + limit
    while not (out / "metrics.jsonl").exists():
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            pytest.fail("the 2-process run did not start: "
                        + " | ".join(p.communicate()[1][-400:] for p in procs))
        time.sleep(0.1)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("bionn: error: "), err
    return lines[0]


def test_a_failed_rank_stops_the_others_with_one_line(tmp_path):
    """Three 2-process runs at once: rank 1 killed (SIGKILL), stopped (SIGSTOP: it holds its
    connections and answers nothing) or raising (a bad --model, after the rendezvous)."""
    timeout = str(TIMEOUT_S)
    # the killed rank's partner gets a long timeout: it must stop long before it runs out
    killed = _spawn(lambda r: _train_args(tmp_path / "killed", 10_000, "--dist-timeout",
                                          str(LONG_TIMEOUT_S)), tmp_path)
    stopped = _spawn(lambda r: _train_args(tmp_path / "stopped", 10_000, "--dist-timeout",
                                           timeout), tmp_path)
    raising = _spawn(lambda r: _train_args(tmp_path / "raising", 10_000, "--dist-timeout",
                                           timeout, *(["--model", "mlp:x"] if r else [])),
                     tmp_path)
    procs = killed + stopped + raising
    waited = {}
    try:
        _started(tmp_path / "killed", killed)
        _started(tmp_path / "stopped", stopped)
        os.kill(killed[1].pid, signal.SIGKILL)
        os.kill(stopped[1].pid, signal.SIGSTOP)
        start = time.monotonic()
        for name, pair in (("killed", killed), ("stopped", stopped), ("raising", raising)):
            try:
                pair[0].wait(timeout=TIMEOUT_S + 60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"rank 0 still runs {TIMEOUT_S + 60} s after rank 1 was {name}")
            waited[name] = time.monotonic() - start
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    errs = {name: pair[0].communicate()[1] for name, pair in
            (("killed", killed), ("stopped", stopped), ("raising", raising))}
    for name, pair in (("killed", killed), ("stopped", stopped), ("raising", raising)):
        assert pair[0].returncode == 1, (name, errs[name])
        line = _one_error_line(errs[name])
        assert "rank 0 of 2" in line and "--dist-timeout" in line, line
    # a killed rank's connections close: the others need not wait for the timeout
    assert waited["killed"] < LONG_TIMEOUT_S / 2
    assert waited["stopped"] < TIMEOUT_S + 30  # nothing comes back: the timeout ends the wait
    raised = raising[1].communicate()[1]
    assert raising[1].returncode == 2 and "mlp:x" in _one_error_line(raised)
