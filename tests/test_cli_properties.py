"""Property-based tests of the command line's bad-input contract (hypothesis).

Properties:

1. ``bionn train`` and ``bionn compare`` with generated argument lists (wrong types, huge and
   non-finite numbers, unicode, NUL bytes, unknown names) either get as far as training (the
   Trainer's ``fit`` is replaced by a stop, so nothing trains) or print exactly one line on
   stderr and exit with status 2; never a traceback.
2. The same for generated TOML config files (wrong types, huge and non-finite numbers,
   unicode, missing and extra keys, nested tables) and for files of undecodable bytes.
3. ``bionn data verify`` with generated names and data roots: status 0 or 2, at most one line.
4. Generated damaged checkpoints (truncated at a random byte, bytes flipped, foreign
   structures, an entry edited behind the stored sha256's back) are refused with one line,
   or, where the damage touched only bytes torch ignores (zip padding, a serialisation id)
   or an edit wrote back the same value, load exactly the saved content; the file is never
   overwritten.

The number of generated cases of each property is printed at the end of the run.
Oracle: the documented contract (README, "Bad input"), not bionn's own output.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bionn.cli import main
from bionn.core.checkpoint import content_digest, load_checkpoint
from bionn.core.registry import rule_names
from bionn.core.trainer import Trainer

CASES: Counter[str] = Counter()
SETTINGS = dict(
    deadline=timedelta(seconds=20),  # a shared CI machine: timing is not the property
    derandomize=True,  # the same cases on every run, so CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class _Started(Exception):
    """Raised instead of training: the input was accepted."""


def _stop(*args, **kwargs):
    raise _Started


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request):
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    lines = [f"hypothesis property {name}: {count} generated cases"
             for name, count in sorted(CASES.items())]
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + "\n".join(lines))


def _run(argv: list[str]) -> tuple[int | str, str, list[str]]:
    """``main(argv)`` with training stopped before its first step: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), mock.patch.object(
        Trainer, "fit", _stop
    ):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        except _Started:
            code = "started"
    return code, out.getvalue(), err.getvalue().splitlines()


def _check_contract(code, err: list[str]) -> None:
    if code == "started" or code == 0:
        assert not any("Traceback" in line for line in err), err
        return
    assert code == 2, (code, err)
    assert len(err) == 1, err
    assert err[0].startswith("bionn"), err


# -- generated values ---------------------------------------------------------------------------

_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="/."), max_size=12
).filter(lambda s: not s.startswith("-"))
_numbers = st.one_of(
    st.integers(-3, 40), st.sampled_from([10**9, 10**12, 10**23, 2**63, -(2**70)]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
)
_value = st.one_of(_text, _numbers.map(str), st.sampled_from(["", "nan", "inf", "1e309",
                                                              "\x00", "é", "0x10"]))
_model = st.one_of(
    st.sampled_from(["mlp:8", "mlp:8,8", "cnn", "mlp", "mlp:0", "mlp:-3", "mlp:", "cnn:3",
                     "mlp:1000000000000", "mlp:" + ",".join(["1000000"] * 30000)]),
    st.lists(st.integers(-2, 48), min_size=1, max_size=4).map(
        lambda h: "mlp:" + ",".join(map(str, h))),
    _text,
)
_small_ints = st.one_of(st.integers(-3, 40), st.just(10**12)).map(str)
_FLAGS = {
    "--dataset": st.one_of(st.sampled_from(["digits", "mnist", "cifar10", "mnist-spikes"]), _text),
    "--model": _model,
    "--activation": st.one_of(st.sampled_from(["relu", "tanh", "gelu"]), _value),
    "--epochs": st.one_of(_numbers.map(str), _value),
    "--batch-size": st.one_of(_numbers.map(str), _value),
    "--optimizer": st.one_of(st.sampled_from(["adam", "sgd"]), _value),
    "--lr": st.one_of(_numbers.map(str), _value),
    "--schedule": st.one_of(st.sampled_from(["cosine", "linear", "constant"]), _value),
    "--seed": st.one_of(st.integers(-(2**70), 2**70).map(str), _value),
    "--device": st.one_of(st.sampled_from(["cpu", "cuda", "cuda:7", "mps", "tpu"]), _value),
    # rule options (bounded where a valid value allocates: no test may exhaust memory)
    "--hidden": _small_ints,
    "--timesteps": st.one_of(st.integers(-2, 30).map(str), st.just(str(10**9))),
    "--burn-in": st.integers(-2, 30).map(str),
    "--inference-steps": st.one_of(_small_ints, _value),
    "--feedback-scale": st.one_of(_numbers.map(str), _value),
    "--detach-reset": st.one_of(st.sampled_from(["true", "false", "maybe"]), _value),
    "--lif-alpha": st.one_of(_numbers.map(str), _value),
    "-p": st.one_of(_numbers.map(str), _value),
}
_pairs = st.lists(st.sampled_from(sorted(_FLAGS)), max_size=5, unique=True).flatmap(
    lambda flags: st.tuples(*(st.tuples(st.just(f), _FLAGS[f]) for f in flags))
)
_rule = st.one_of(st.sampled_from(rule_names()), _text)


def _argv(command: str, pairs, tmp: str, extra: list[str]) -> list[str]:
    argv = [command]
    for flag, value in pairs:
        argv += [flag, value]
    return argv + extra + ["--out", os.path.join(tmp, "run"), "--data-dir",
                           os.path.join(tmp, "data"), "--no-progress"]


@settings(max_examples=40, **SETTINGS)
@given(rule=_rule, pairs=_pairs)
def test_train_with_generated_arguments_runs_or_refuses_in_one_line(rule, pairs):
    CASES["train arguments"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        code, _, err = _run(_argv("train", pairs, tmp, ["--rule", rule]))
    _check_contract(code, err)


@settings(max_examples=20, **SETTINGS)
@given(rules=st.lists(_rule, min_size=0, max_size=3), pairs=_pairs)
def test_compare_with_generated_arguments_runs_or_refuses_in_one_line(rules, pairs):
    CASES["compare arguments"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        code, _, err = _run(_argv("compare", pairs, tmp, ["--rules", ",".join(rules)]))
    _check_contract(code, err)


@settings(max_examples=10, **SETTINGS)
@given(out=st.one_of(st.text(max_size=300), st.just("a" * 300), st.just("x\x00y")))
def test_hostile_output_folder_names(out):
    CASES["output folder names"] += 1
    out = out.replace("/", "_").replace(".", "_") or "_"
    with tempfile.TemporaryDirectory() as tmp:
        code, _, err = _run(["train", "--model", "mlp:8", "--no-progress", "--out",
                             os.path.join(tmp, out)])
    _check_contract(code, err)


# -- TOML config files --------------------------------------------------------------------------

_KEYS = ["rule", "dataset", "model", "activation", "epochs", "batch-size", "batch_size",
         "optimizer", "lr", "schedule", "seed", "device", "json", "no-progress", "resume",
         "hidden", "timesteps", "burn-in", "inference_steps", "feedback-scale", "rules",
         "options", "unknown", "é", "out"]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(
            value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_scalar = st.one_of(
    st.booleans(), st.integers(-(2**70), 2**70), st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True), _text,
    st.sampled_from(["digits", "mlp:8", "bp", "fa", "adam", "cpu", "cosine"]),
)
_toml_values = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)),
    max_leaves=4,
)
_toml = st.dictionaries(st.sampled_from(_KEYS), _toml_values, max_size=6).map(
    lambda d: "".join(f'"{k}" = {_toml_value(v)}\n' for k, v in d.items()).encode()
)
_config_bytes = st.one_of(
    _toml, _toml.map(lambda b: b + b"[table]\nx = 1\n"), st.binary(max_size=64),
    st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
)


@settings(max_examples=40, **SETTINGS)
@given(content=_config_bytes, command=st.sampled_from(["train", "compare"]))
@example(content=b'"rule" = "krotov"\n"hidden" = []\n', command="train")  # found by this test
@example(content=b'"rule" = "krotov"\n"delta" = ' + b"9" * 400 + b"\n", command="train")
def test_generated_config_files_run_or_are_refused_in_one_line(content, command):
    CASES["config files"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.toml")
        with open(path, "wb") as f:
            f.write(content)
        argv = [command, "--config", path, "--out", os.path.join(tmp, "run"), "--data-dir",
                os.path.join(tmp, "data"), "--no-progress"]
        if command == "compare":
            argv += ["--rules", "bp"]
        code, _, err = _run(argv)
    _check_contract(code, err)


# -- data ---------------------------------------------------------------------------------------

@settings(max_examples=25, **SETTINGS)
@given(name=st.one_of(st.sampled_from(["mnist", "fashion-mnist", "cifar10", "digits"]), _text),
       root=st.sampled_from(["missing", "file", "empty", "dir-as-file", "nul"]))
def test_data_verify_with_generated_names_and_roots(name, root):
    CASES["data verify"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "root"
        if root == "file":
            base.write_text("")
        elif root == "empty":
            base.mkdir()
        elif root == "dir-as-file":
            (base / "mnist" / "train-images-idx3-ubyte.gz").mkdir(parents=True)
        where = f"{base}\x00" if root == "nul" else str(base)
        code, _, err = _run(["data", "verify", name, "--data-dir", where])
    assert code in (0, 2), (code, err)
    assert len(err) <= 1, err
    if code == 2:
        assert len(err) == 1


# -- damaged checkpoints ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("prop") / "run"
    assert main(["train", "--dataset", "digits", "--model", "mlp:12", "--epochs", "1",
                 "--batch-size", "500", "--no-progress", "--out", str(out)]) == 0
    return out


_tensors = st.builds(lambda shape, v: torch.full(shape, v, dtype=torch.float64),
                     st.lists(st.integers(0, 3), max_size=2).map(tuple),
                     st.floats(allow_nan=True, allow_infinity=True))
_foreign = st.recursive(
    st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=5),
              st.none(), _tensors),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["model", "optimizer", "epoch", "config", "rng",
                                         "history", "rule", "x"]), inner, max_size=5),
    ),
    max_leaves=8,
)
_damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                                  st.integers(1, 255)), min_size=1,
                                        max_size=3)),
    st.tuples(st.just("foreign"), _foreign),
    st.tuples(st.just("replace key"), st.sampled_from(["model", "optimizer", "epoch",
                                                       "config", "rng", "loader_rng"]),
              _foreign),
)


@settings(max_examples=40, **SETTINGS)
@given(damage=_damage)
def test_damaged_checkpoints_are_refused_in_one_line_and_never_overwritten(good_run, damage):
    CASES["damaged checkpoints"] += 1
    original = (good_run / "checkpoint.pt").read_bytes()
    saved = load_checkpoint(good_run / "checkpoint.pt")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(good_run, run)
        ckpt = run / "checkpoint.pt"
        kind = damage[0]
        if kind == "truncate":
            ckpt.write_bytes(original[: int(damage[1] * len(original))])
        elif kind == "flip":
            data = bytearray(original)
            for where, mask in damage[1]:
                data[int(where * len(data))] ^= mask
            ckpt.write_bytes(bytes(data))
        elif kind == "foreign":
            torch.save(damage[1], ckpt)
        else:  # an edited entry, the stored sha256 of the content left as it was
            raw = torch.load(good_run / "checkpoint.pt", weights_only=True)
            torch.save({**raw, damage[1]: damage[2]}, ckpt)
        before = ckpt.read_bytes()
        code, _, err = _run(["train", "--resume", "--out", str(run), "--epochs", "2",
                             "--no-progress"])
        assert ckpt.read_bytes() == before  # never overwritten
        if code == "started":  # accepted: only where the content is exactly what was saved
            assert kind in ("flip", "replace key")
            assert content_digest(load_checkpoint(ckpt)) == content_digest(saved)
            return
        assert code == 2, (code, err)
        assert len(err) == 1, err
        assert str(ckpt) in err[0]
        assert "weights_only" not in err[0] and "Traceback" not in err[0]
