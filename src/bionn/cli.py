"""The ``bionn`` command.

    bionn rules [--json]
    bionn train --rule R --dataset D [budget flags] [--resume] [--config FILE.toml] [--json]
    bionn compare [--rules a,b,c] [--dataset D] [budget flags] [--json]
    bionn data download NAME | bionn data verify NAME | bionn data list
    bionn rl --agent A --task T [--episodes N] [--seed S] [--out DIR] [--resume] [--json]
    bionn rl fit CHOICES.csv [--model rw|two-timescale] [--restarts N] [--out FILE] [--json]
    bionn reproduce PAPER [--profile quick|full] [--json] | bionn reproduce --list [--json]
    bionn report RUN_DIR... [-o report.html]

Bad input (an unknown rule, a bad flag value, a missing data set, ...) prints one line on
stderr and exits with status 2; a run whose loss diverges, or a data-parallel run (under
torchrun) one of whose processes fails, exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from bionn import __version__
from bionn.core import distributed
from bionn.errors import BionnError, ConfigError, TrainingDiverged

EXIT_USAGE = 2
EXIT_DIVERGED = 1


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _add_budget_flags(p: argparse.ArgumentParser) -> None:
    s = argparse.SUPPRESS
    p.add_argument(
        "--dataset",
        default=s,
        help="digits (default), mnist, fashion-mnist, cifar10; spiking rules also take "
        "mnist-spikes, fashion-mnist-spikes; recurrent rules take sequences: jvowels, "
        "gunpoint, italypower, basicmotions, copy[:delay=N,...], add[:length=N], pattern "
        "(see `bionn data list`)",
    )
    p.add_argument(
        "--model",
        default=s,
        help="mlp (784-1000-10), mlp:500,500, cnn, or Ott et al.'s cnn-ott, fcn-ott (free "
        "convolutions), fcn-ott:vcp=P (variable connection patterns, p = P), :init=keras (the "
        "authors' initialisation; fcn-ott:vcp=P,init=keras with both)",
    )
    p.add_argument("--activation", default=s, help="relu (default), tanh, sigmoid or gelu")
    p.add_argument("--epochs", type=int, default=s, help="passes over the data (default 10)")
    p.add_argument("--batch-size", type=int, default=s, help="examples per update (default 100)")
    p.add_argument("--optimizer", default=s, help="adam (default) or sgd")
    p.add_argument("--lr", type=float, default=s, help="learning rate (adam 1e-3, sgd 0.1)")
    p.add_argument(
        "--momentum", type=float, default=s, metavar="MU",
        help="heavy-ball momentum of --optimizer sgd, in [0, 1) (default 0: plain SGD)",
    )
    p.add_argument(
        "--nesterov", action="store_true", default=s,
        help="Nesterov momentum (--optimizer sgd with --momentum > 0)",
    )
    p.add_argument(
        "--clip-grad", type=float, default=s, metavar="NORM",
        help="before every optimizer step, scale all gradients together so that their global "
        "norm is at most NORM (default: no clipping)",
    )
    p.add_argument(
        "--schedule", default=s, help="learning rate per epoch: cosine (default), linear, constant"
    )
    p.add_argument("--seed", type=int, default=s, help="random seed (default 0)")
    p.add_argument("--device", default=s, help="cpu (default), cuda or cuda:N")
    p.add_argument(
        "--threads", type=int, default=s, metavar="N",
        help="CPU threads (default: torch's, less the cores other processes keep busy by the "
        "load average; lower it on a busy machine)",
    )
    p.add_argument("--out", default=s, help="run folder (default runs/<name>-<time>)")
    p.add_argument("--data-dir", default=s, help="data root (default $BIONN_DATA or user cache)")
    p.add_argument(
        "--download", action="store_true", default=s, help="download a missing data set"
    )
    p.add_argument(
        "--augment",
        default=s,
        metavar="shift:A",
        help="augment every training batch: shift:A shifts each image at random by up to a "
        "fraction A of its size (nearest-pixel fill)",
    )
    p.add_argument(
        "--robustness",
        action="store_true",
        default=s,
        help="at the end, test accuracy under shift 0.25, rotation 45 deg, noise 0.15 and a "
        "quadrant swap",
    )
    p.add_argument(
        "--dist-timeout", type=float, default=s, metavar="SECONDS",
        help="under torchrun: how long a process waits for the others before it stops with "
        "an error (default 300)",
    )
    p.add_argument("--config", metavar="FILE.toml", help="read any of these flags from TOML")
    _add_rule_option_flags(p)
    p.add_argument("--json", action="store_true", help="end stdout with one JSON line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_rule_option_flags(p: argparse.ArgumentParser) -> None:
    """One flag per rule hyperparameter, grouped by the first rule that has it."""
    from bionn.core.registry import rule_options

    groups: dict[str, Any] = {}
    for spec in rule_options().values():
        owner = spec.rules[0]
        if owner not in groups:
            groups[owner] = p.add_argument_group(
                f"options of rule {owner} ([rules: ...] marks an option other rules share)"
                if len(spec.rules) > 1
                else f"options of rule {owner}"
            )
        text = spec.help
        if len(spec.rules) > 1:
            text = f"{text} [rules: {', '.join(spec.rules)}]"
        switch = {"nargs": "?", "const": "true"} if spec.kind == "bool" else {}
        groups[owner].add_argument(
            *spec.flags,
            dest=f"opt__{spec.name}",
            default=argparse.SUPPRESS,
            metavar=spec.kind.upper().replace("TUPLE[", "").replace("]", ",..."),
            help=text.replace("%", "%%"),
            **switch,
        )


def build_parser() -> argparse.ArgumentParser:
    """The ``bionn`` argument parser: every subcommand, its flags and each rule's options."""
    parser = _Parser(
        prog="bionn",
        description="Biologically inspired learning rules, each measured against backprop.",
    )
    parser.add_argument("--version", action="version", version=f"bionn {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("rules", help="list the learning rules")
    p.add_argument("--json", action="store_true", help="print the list as JSON")

    p = sub.add_parser("train", help="train one rule")
    p.add_argument(
        "--rule", default=argparse.SUPPRESS,
        help="rule name (see `bionn rules`); without it, bp (backprop) is trained, and said so",
    )
    _add_budget_flags(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")

    p = sub.add_parser("compare", help="train several rules on the same budget")
    p.add_argument(
        "--rules", default=argparse.SUPPRESS, help="comma-separated (default: all supervised)"
    )
    _add_budget_flags(p)

    p = sub.add_parser("data", help="list, download or verify the data sets")
    data_sub = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    q = data_sub.add_parser("list", help="list the data sets and their parameters")
    q.add_argument("--json", action="store_true", help="print the list as JSON")
    for name, text in (("download", "download and verify"), ("verify", "check sha256")):
        q = data_sub.add_parser(name, help=f"{text} a data set's files")
        q.add_argument("name", help="mnist, fashion-mnist or cifar10")
        q.add_argument("--data-dir", default=None, help="data root")
    _add_rl_parser(sub)
    _add_reproduce_parsers(sub)
    return parser


SWITCHES = ("json", "no_progress")


def _collect(args: argparse.Namespace, allowed: Sequence[str]) -> dict[str, Any]:
    """Config values: the TOML file's, overridden by the flags given on the command line.

    The file may also switch on ``json``, ``no-progress`` (and, for ``train``, ``resume``);
    those are set on ``args`` and not returned.
    """
    from bionn.core.config import read_toml
    from bionn.core.registry import parse_option, rule_options

    switches = SWITCHES + (("resume",) if "resume" in vars(args) else ())
    option_names = tuple(rule_options())
    values: dict[str, Any] = {}
    if args.config:
        values.update(read_toml(args.config, tuple(allowed) + switches + option_names))
    for name in switches:
        if name in values:
            value = values.pop(name)
            if not isinstance(value, bool):
                raise ConfigError(
                    f"{name.replace('_', '-')} in {args.config} must be true or false, "
                    f"got {value!r}"
                )
            setattr(args, name, getattr(args, name) or value)
    for key in allowed:
        if key in vars(args):
            values[key] = getattr(args, key)
    options = {k: values.pop(k) for k in option_names if k in values}
    for key, value in vars(args).items():
        if key.startswith("opt__"):
            options[key[len("opt__") :]] = value
    if options:
        specs = rule_options()
        values["options"] = {k: parse_option(specs[k], v) for k, v in options.items()}
    return values


def _cmd_rules(args: argparse.Namespace) -> int:
    from bionn.core.registry import all_rules, rule_options

    specs = rule_options()
    rows = [
        {"name": i.name, "description": i.description, "paper": i.paper,
         "supervised": i.supervised,
         "options": [specs[n].flags[0] for n in specs if i.name in specs[n].rules]}
        for i in all_rules().values()
    ]
    if args.json:
        print(json.dumps(rows))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['description']}")
        print(f"{'':<{width}}  {r['paper']}")
        if r["options"]:
            print(f"{'':<{width}}  options: {' '.join(r['options'])}")
    return 0


def _fmt_pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _fmt_angle(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} deg"


def _json_row(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("rule", "dataset", "model", "epochs", "test_accuracy", "train_accuracy",
            "wall_time_s", "angle_to_backprop_deg", "run_dir")
    row = {k: summary.get(k) for k in keys}
    row["angle_per_layer_deg"] = summary.get("angle_per_layer_deg")
    if "plots" in summary:
        row["plots"] = summary["plots"]
    if "robustness" in summary:
        row["robustness"] = summary["robustness"]
    return row


def _with_threads(config: Any, values: dict[str, Any]) -> Any:
    """``config`` with the default thread count when neither --threads nor the TOML gave one,
    nor the run being resumed recorded one (a resumed run keeps its count, so that it ends
    bit for bit as an uninterrupted run would)."""
    if values.get("threads") is not None or config.threads is not None:
        return config
    from bionn.core.resources import default_threads

    threads = default_threads()
    logging.getLogger("bionn").info("using %d CPU thread(s) (no --threads given)", threads)
    return config.replace(threads=threads)


def _cmd_train(args: argparse.Namespace) -> int:
    from bionn.core.config import CONFIG_KEYS, TrainConfig
    from bionn.core.run import resume_config, run_training

    values = _collect(args, CONFIG_KEYS)
    if args.resume:
        if "out" not in values:
            raise ConfigError("--resume needs --out DIR, the folder of the run to continue")
        config = resume_config(values["out"], values)
    else:
        config = TrainConfig(**values)
        if "rule" not in values and distributed.env_rank() == 0:  # said first, on stdout
            print(f"no --rule given: training {config.rule} (backprop), the default", flush=True)
    config = _with_threads(config, values)
    summary = run_training(config, resume=args.resume, progress=not args.no_progress)
    if not distributed.context().is_main:
        return 0  # rank 0 of a torchrun run reports
    print(
        f"{summary['rule']} on {summary['dataset']} ({summary['model']}, {summary['epochs']} "
        f"epochs): test accuracy {_fmt_pct(summary['test_accuracy'])}, train accuracy "
        f"{_fmt_pct(summary['train_accuracy'])}, angle to backprop "
        f"{_fmt_angle(summary['angle_to_backprop_deg'])}, {summary['wall_time_s']:.1f} s"
    )
    figures = [summary["plot"]] if summary.get("plot") else []
    figures += summary.get("plots", [])
    if summary.get("robustness"):
        print("robustness: " + ", ".join(
            f"{name} {_fmt_pct(acc)}" for name, acc in summary["robustness"].items()
        ))
    print(f"run folder: {summary['run_dir']}  (plots: {', '.join(figures) or 'none'})")
    if args.json:
        print(json.dumps(_json_row(summary)))
    return 0


def _momentum_text(config: Any) -> str:
    if not config.momentum:
        return ""
    return f" momentum {config.momentum:g}" + (" (nesterov)" if config.nesterov else "")


def _optimizer_text(config: Any) -> str:
    """The optimizer settings of a compare run's header line."""
    text = f"{config.optimizer} lr {config.learning_rate:g}{_momentum_text(config)}"
    return text + (f", clip-grad {config.clip_grad:g}" if config.clip_grad is not None else "")


def _cmd_compare(args: argparse.Namespace) -> int:
    from bionn.core.config import CONFIG_KEYS, TrainConfig
    from bionn.core.registry import rule_names
    from bionn.core.run import run_compare

    allowed = tuple(k for k in CONFIG_KEYS if k != "rule") + ("rules",)
    values = _collect(args, allowed)
    rules_value = values.pop("rules", None)
    if rules_value is None:
        from bionn.core.registry import rule_info
        from bionn.data import dataset_batch_dims

        sequences = dataset_batch_dims(TrainConfig(**values).dataset)[0] != 0
        rules = [  # the rules that train on this kind of data
            r for r in rule_names(supervised_only=True)
            if getattr(rule_info(r).factory, "time_major", False) == sequences
        ]
    elif isinstance(rules_value, list):
        rules = [str(r) for r in rules_value]
    else:
        rules = [r.strip() for r in str(rules_value).split(",") if r.strip()]
    if not rules:
        raise ConfigError("--rules is empty; give comma-separated rule names")
    config = _with_threads(TrainConfig(**values), values)
    summaries, plot = run_compare(config, rules, progress=not args.no_progress)
    if not distributed.context().is_main:
        return 0  # rank 0 of a torchrun run reports
    header = ("rule", "test acc", "train acc", "angle to bp", "wall time")
    rows = [
        (s["rule"], _fmt_pct(s["test_accuracy"]), _fmt_pct(s["train_accuracy"]),
         _fmt_angle(s["angle_to_backprop_deg"]), f"{s['wall_time_s']:.1f} s")
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(
        f"{config.dataset}, {config.model}, {config.epochs} epochs, batch {config.batch_size}, "
        f"{_optimizer_text(config)}, "
        f"seed {config.seed}"
    )
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"plot: {plot}")
    if args.json:
        print(json.dumps([_json_row(s) for s in summaries]))
    return 0


def _plain_text(text: str) -> str:
    """A docstring line as plain text: ``:class:`MNIST``` -> ``MNIST``, ``:func:`~a.f``` -> ``f``,
    and no double back-quotes."""

    def role(match: re.Match[str]) -> str:
        target = match.group(2)
        return target.rsplit(".", 1)[-1] if match.group(1) else target

    return re.sub(r":[a-z]+:`(~?)([^`]*)`", role, text).replace("``", "")


def _data_rows() -> list[dict[str, Any]]:
    from bionn.data import DATASETS

    rows = []
    for name, cls in DATASETS.items():
        params = [
            {"name": p.name, "type": p.kind.__name__, "default": p.default, "help": p.help}
            for p in getattr(cls, "parameters", ())
        ]
        doc = (cls.__doc__ or "").strip().splitlines()
        rows.append({
            "name": name,
            "description": _plain_text(
                getattr(cls, "description", "") or (doc[0] if doc else "")),
            "parameters": params,
        })
    return rows


def _cmd_data(args: argparse.Namespace) -> int:
    from bionn.data import download_dataset, verify_dataset

    if args.data_command == "list":
        rows = _data_rows()
        if args.json:
            print(json.dumps(rows))
            return 0
        for row in rows:
            print(f"{row['name']:<22}{row['description']}")
            for p in row["parameters"]:
                setting = f"{p['name']}={p['default']}"
                print(f"    {setting:<18}{p['type']:<6}{p['help']}")
        print("parameters: --dataset NAME:key=value,key=value (e.g. copy:delay=40)")
        return 0
    if args.data_command == "download":
        paths = download_dataset(args.name, args.data_dir)
        for path in paths:
            print(f"ok  {path}")
        if not paths:
            print(f"{args.name} needs no download")
        return 0
    checks = verify_dataset(args.name, args.data_dir)
    bad = 0
    for c in checks:
        if c.ok:
            print(f"ok       {c.path}")
        elif c.found is None:
            bad += 1
            print(f"{'not a regular file' if c.path.exists() else 'missing'}  {c.path}")
        else:
            bad += 1
            print(f"corrupt  {c.path}  expected sha256 {c.expected}, found {c.found}")
    if not checks:
        print(f"{args.name} has no files to verify")
    if bad:
        where = f" --data-dir {args.data_dir}" if args.data_dir else ""
        print(
            f"bionn: error: {bad} file(s) of {args.name} missing, corrupt or not regular files; "
            f"run "
            f"`bionn data download {args.name}{where}` to fetch them",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return 0


# -- bionn rl: reinforcement learning (bionn.rl) ----------------------------------------------
def _add_rl_parser(sub: Any) -> None:
    """``bionn rl`` (run an agent on a task) and ``bionn rl fit CHOICES.csv``."""
    import dataclasses

    from bionn.rl.agents import AGENTS
    from bionn.rl.loop import TASKS

    s = argparse.SUPPRESS
    p = sub.add_parser("rl", help="run a reinforcement-learning agent, or fit choice data")
    p.add_argument("--agent", default=s, help=f"agent: {', '.join(AGENTS)}")
    p.add_argument(
        "--task", default=s,
        help=f"task: {', '.join(TASKS)}; reversal:100/0, :80/20 (default), :70/30, :60/40; "
        "conditioning:P adds omission probes with probability P",
    )
    p.add_argument("--episodes", type=int, default=s, help="episodes (default 100)")
    p.add_argument("--experiments", type=int, default=s,
                   help="independent experiments run at once (default 1)")
    p.add_argument("--seed", type=int, default=s, help="random seed (default 0)")
    p.add_argument("--device", default=s, help="cpu (default), cuda or cuda:N")
    p.add_argument("--out", default=s, help="run folder (default runs/rl-<agent>-<task>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--json", action="store_true", help="end stdout with one JSON line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    seen: dict[str, tuple[type, str, list[str]]] = {}
    for name, cls in AGENTS.items():
        for f in dataclasses.fields(cls.config_class):
            if f.name in seen:
                seen[f.name][2].append(name)
            else:
                seen[f.name] = (f.type, f.metadata.get("help", ""), [name])
    group = p.add_argument_group("agent options ([agents: ...] says which agents have one)")
    for name, (_, text, owners) in seen.items():
        group.add_argument(
            "--" + name.replace("_", "-"), dest=f"rlopt__{name}", type=float, default=s,
            metavar="X", help=f"{text} [agents: {', '.join(owners)}]".replace("%", "%%"),
        )
    fit_sub = p.add_subparsers(dest="rl_command", parser_class=_Parser)
    q = fit_sub.add_parser("fit", help="fit a model to a choice file by maximum likelihood")
    q.add_argument("choices", metavar="CHOICES.csv",
                   help="header subject,block,trial,choice,reward; one row per trial")
    q.add_argument("--model", default="rw", help="rw (alpha+, alpha-, beta; default) or "
                   "two-timescale (alpha_fast+, alpha_fast-, alpha_slow, beta, w)")
    q.add_argument("--restarts", type=int, default=3, help="grid cells refined per subject")
    q.add_argument("--out", default=None, help="also write the fits to this JSON file")
    q.add_argument("--json", action="store_true", help="end stdout with one JSON line")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_rl(args: argparse.Namespace) -> int:
    if getattr(args, "rl_command", None) == "fit":
        return _cmd_rl_fit(args)
    from bionn.rl.agents import AGENTS
    from bionn.rl.run import RLConfig, resume_rl_config, run_rl

    values = {k: getattr(args, k) for k in
              ("agent", "task", "episodes", "experiments", "seed", "device", "out")
              if k in vars(args)}
    options = {k[len("rlopt__"):]: v for k, v in vars(args).items() if k.startswith("rlopt__")}
    if args.resume:
        if "out" not in values:
            raise ConfigError("--resume needs --out DIR, the folder of the run to continue")
        config = resume_rl_config(values["out"], {**values, "options": options} if options
                                  else values)
    else:
        if "agent" not in values or "task" not in values:
            raise ConfigError(f"bionn rl needs --agent ({', '.join(AGENTS)}) and --task")
        config = RLConfig(**values, options=options)
    summary = run_rl(config, resume=args.resume, progress=not args.no_progress)
    parts = [f"reward per episode {summary['reward_last10']:.3f}"]
    if summary.get("p_better_last10") is not None:
        parts.append(f"P(better) {summary['p_better_last10']:.3f}")
    parts.append(f"steps {summary['steps_last10']:.1f}")
    print(
        f"{summary['agent']} on {summary['task']} ({summary['episodes']} episodes x "
        f"{summary['experiments']} experiments, last 10): {', '.join(parts)}, "
        f"{summary['wall_time_s']:.1f} s"
    )
    print(f"run folder: {summary['run_dir']}  (plots: {', '.join(summary.get('plots', []))})")
    if args.json:
        keys = ("agent", "task", "episodes", "experiments", "seed", "reward_last10",
                "p_better_last10", "steps_last10", "mean_abs_rpe_last10", "wall_time_s",
                "run_dir", "plots")
        print(json.dumps({k: summary.get(k) for k in keys}))
    return 0


def _cmd_rl_fit(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from bionn.rl.fit import MODELS, fit, read_choices_csv

    if args.model not in MODELS:
        raise ConfigError(f"--model must be one of {', '.join(MODELS)}, got {args.model!r}")
    if args.restarts < 1:
        raise ConfigError(f"--restarts must be a positive integer, got {args.restarts}")
    data = read_choices_csv(args.choices)
    start = time.perf_counter()
    result = fit(data, args.model, restarts=args.restarts, progress=not args.no_progress)
    rows = result.rows(data.subjects)
    names = list(MODELS[args.model])
    header = ["subject", *names, "nll", "trials"]
    table = [[str(r["subject"]), *(f"{r[n]:.3f}" for n in names), f"{r['nll']:.2f}",
              str(r["trials"])] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *table, strict=True)]
    for line in [header, *table]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    print(f"{args.model} fitted to {len(rows)} subject(s) in {time.perf_counter() - start:.1f} s")
    if args.out:
        try:
            Path(args.out).write_text(json.dumps({"model": args.model, "fits": rows}, indent=2)
                                      + "\n")
        except OSError as exc:
            raise BionnError(f"cannot write {args.out}: {exc.strerror}") from None
    if args.json:
        print(json.dumps({"model": args.model, "fits": rows}))
    return 0


# -- bionn reproduce and bionn report (bionn.reproduce, bionn.report) -------------------------
def _add_reproduce_parsers(sub: Any) -> None:
    """``bionn reproduce PAPER`` / ``--list`` and ``bionn report RUN_DIR...``."""
    p = sub.add_parser("reproduce", help="run a paper's benchmark and compare with its numbers")
    p.add_argument("paper", nargs="?", default=None, help="paper (see --list)")
    p.add_argument("--list", action="store_true", help="list the papers and their profiles")
    p.add_argument("--profile", default="quick",
                   help="quick (minutes on a laptop CPU, reduced budget; default) or full "
                   "(the paper's budget)")
    p.add_argument("--out", default=None, help="run folder (default runs/reproduce-<paper>-...)")
    p.add_argument("--data-dir", default=None, help="data root (default $BIONN_DATA or cache)")
    p.add_argument("--download", action="store_true", help="download a missing data set")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="end stdout with one JSON line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    q = sub.add_parser("report", help="write one self-contained HTML page for run folders")
    q.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="train, compare, rl or reproduce run folders")
    q.add_argument("-o", "--output", default="report.html", help="the page (default "
                   "report.html)")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from bionn.reproduce import PROFILES, all_papers, format_table, run_reproduction

    if args.list:
        if args.paper is not None:
            raise ConfigError("--list takes no paper; give one or the other")
        rows = [{"name": p.name, "aliases": list(p.aliases), "citation": p.citation,
                 "setting": p.setting, "docs": f"docs/rules/{p.family}.md",
                 "profiles": {k: {"budget": p.profiles[k].budget,
                                  "expected_s": p.profiles[k].expected_s} for k in PROFILES}}
                for p in all_papers().values()]
        if args.json:
            print(json.dumps(rows))
            return 0
        for row in rows:
            also = f" (also: {', '.join(row['aliases'])})" if row["aliases"] else ""
            print(f"{row['name']}{also}")
            print(f"    {row['citation']}")
            for name, prof in row["profiles"].items():
                print(f"    {name:<5} about {_minutes(prof['expected_s'])}: {prof['budget']}")
        return 0
    if args.paper is None:
        raise ConfigError("bionn reproduce needs a paper (see `bionn reproduce --list`)")
    summary = run_reproduction(args.paper, args.profile, out=args.out, data_dir=args.data_dir,
                               device=args.device, progress=not args.no_progress,
                               download=args.download)
    print(f"run folder: {summary['run_dir']}  (report: bionn report {summary['run_dir']})")
    print(format_table(summary))  # the table last (before the JSON line, with --json)
    if args.json:
        keys = ("paper", "profile", "budget", "wall_time_s", "expected_s", "rows", "run_dir")
        print(json.dumps({k: summary[k] for k in keys}))
    return 0


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _cmd_report(args: argparse.Namespace) -> int:
    from bionn.report import write_report

    path = write_report(args.run_dirs, args.output)
    print(f"report: {path} ({len(args.run_dirs)} run folder(s))")
    return 0


def _one_line(exc: Exception) -> str:
    """The error message on a single line (some wrap details from torch or urllib)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


COMMANDS = {"rules": _cmd_rules, "train": _cmd_train, "compare": _cmd_compare, "data": _cmd_data}
COMMANDS["rl"] = _cmd_rl
COMMANDS["reproduce"] = _cmd_reproduce
COMMANDS["report"] = _cmd_report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        status = COMMANDS[args.command](args)
        distributed.shutdown()
        return status
    except (TrainingDiverged, distributed.DistributedError) as exc:
        print(f"bionn: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_DIVERGED
    except BionnError as exc:
        print(f"bionn: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a file the input names that cannot be used (too long a name, ...)
        name = f"{exc.filename}: " if exc.filename else ""
        print(f"bionn: error: {name}{exc.strerror or exc}"[:400], file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        if "null byte" not in str(exc):
            raise
        print("bionn: error: a path given holds a NUL byte, which no path may", file=sys.stderr)
        return EXIT_USAGE
    except (MemoryError, RuntimeError) as exc:
        from bionn.core.resources import allocation_failure

        error = allocation_failure(exc)
        if error is None:
            raise
        print(f"bionn: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bionn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
