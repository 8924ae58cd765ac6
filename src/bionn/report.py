"""``bionn report``: one self-contained HTML page for ``train``, ``compare``, ``rl`` and
``reproduce`` run folders.

The page needs nothing but itself to be viewed: the styles are inline, every figure of each
run folder (``*.png``, its sub-folders' too) is embedded as a ``data:`` URI, and it runs no
script. For each folder it shows the result tables (the reproduction table, the rules of a
comparison, the epochs of a training run), the configuration, the environment (versions,
device, seed) and the figures. A folder that is not a run folder is refused in one line.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bionn.errors import BionnError

SUMMARY_NAME = "summary.json"
COMPARE_NAME = "compare.json"
METRICS_NAME = "metrics.jsonl"
MAX_FIGURE_BYTES = 8 << 20
"""Figures larger than this (8 MiB) are listed by name rather than embedded."""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
figure { display: inline-block; margin: .5em 1em .5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .8em; color: #555; }
.meets { color: #1a7f37; font-weight: 600; } .below { color: #b42318; font-weight: 600; }
.within-tolerance { color: #b26a00; font-weight: 600; } .not-measured { color: #666; }
"""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise BionnError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BionnError(f"{path} is not valid JSON ({exc}); the run folder is damaged") from None


def _read_metrics(folder: Path) -> list[dict[str, Any]]:
    path = folder / METRICS_NAME
    if not path.is_file():
        return []
    rows = []
    try:
        for line in path.read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise BionnError(f"{path} is not one JSON record per line; the run folder is "
                         "damaged") from None
    return rows


def load_run(folder: str | Path) -> dict[str, Any]:
    """What the page shows of one run folder: its kind, summary, records and figures.

    Raises :class:`~bionn.errors.BionnError` (one line) for a path that is not a run folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise BionnError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise BionnError(f"{folder} is not a folder; bionn report takes run folders")
    summary_path, compare_path = folder / SUMMARY_NAME, folder / COMPARE_NAME
    if compare_path.is_file():
        summaries = _read_json(compare_path)
        if not isinstance(summaries, list) or not all(isinstance(s, dict) for s in summaries):
            raise BionnError(f"{compare_path} is not a list of run summaries")
        kind, summary = "compare", {"rules": summaries}
    elif summary_path.is_file():
        summary = _read_json(summary_path)
        if not isinstance(summary, dict):
            raise BionnError(f"{summary_path} is not a run summary (a JSON object)")
        if summary.get("kind") == "reproduce":
            kind = "reproduce"
        elif "agent" in summary:
            kind = "rl"
        elif "rule" in summary:
            kind = "train"
        else:
            raise BionnError(f"{summary_path} is not the summary of a bionn run")
    else:
        raise BionnError(
            f"{folder} is not a bionn run folder (it has no {SUMMARY_NAME} or {COMPARE_NAME}; "
            "give the folder of a train, compare, rl or reproduce run)"
        )
    return {"path": folder, "kind": kind, "summary": summary,
            "history": _read_metrics(folder) if kind in ("train", "rl") else [],
            "figures": sorted(p for p in folder.rglob("*.png") if p.is_file())}


def _cell(value: Any) -> str:
    if value is None:
        return "<td>-</td>"
    if isinstance(value, bool):
        return f"<td>{value}</td>"
    if isinstance(value, float):
        text = f"{value:.4g}" if abs(value) < 1e4 else f"{value:.6g}"
        return f'<td class="num">{text}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    if isinstance(value, dict | list):
        return f"<td>{html.escape(json.dumps(value, default=str))}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(value: Any) -> str | None:
    return None if not isinstance(value, int | float) else f"{100 * value:.2f}%"


def _verdict_cell(verdict: str) -> str:
    css = verdict.replace(" ", "-")
    return f'<td class="{html.escape(css)}">{html.escape(verdict)}</td>'


def _reproduce_section(summary: dict[str, Any]) -> str:
    parts = [f"<p><b>Paper.</b> {html.escape(str(summary.get('citation', '')))}</p>",
             f"<p><b>Setting.</b> {html.escape(str(summary.get('setting', '')))}</p>",
             f"<p><b>Profile.</b> {html.escape(str(summary.get('profile')))}: "
             f"{html.escape(str(summary.get('budget', '')))}; wall time "
             f"{float(summary.get('wall_time_s') or 0):.0f} s (expected about "
             f"{float(summary.get('expected_s') or 0):.0f} s)</p>"]
    head = "".join(f"<th>{h}</th>" for h in
                   ("quantity", "unit", "paper", "source", "ours", "tolerance", "verdict"))
    body = []
    for r in summary.get("rows", []):
        cells = [_cell(r.get("quantity")), _cell(r.get("unit")), _cell(r.get("paper")),
                 _cell(r.get("source")), _cell(r.get("ours")),
                 _cell(f"{r.get('direction')}, {r.get('tolerance')}"),
                 _verdict_cell(str(r.get("verdict")))]
        body.append("<tr>" + "".join(cells) + "</tr>")
    parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
                 "</table>")
    runs = summary.get("runs", [])
    if runs:
        parts.append("<h3>Runs</h3>" + _table(
            ("run", "kind", "training examples", "test accuracy", "wall time (s)"),
            [(r.get("label"), r.get("kind"), r.get("train_size") or "all",
              _pct(r.get("test_accuracy")), r.get("wall_time_s")) for r in runs]))
    return "".join(parts)


def _compare_section(summary: dict[str, Any]) -> str:
    rows = [(s.get("rule"), s.get("dataset"), s.get("model"), s.get("epochs"),
             _pct(s.get("test_accuracy")), _pct(s.get("train_accuracy")),
             s.get("angle_to_backprop_deg"), s.get("wall_time_s"))
            for s in summary["rules"]]
    return _table(("rule", "dataset", "model", "epochs", "test accuracy", "train accuracy",
                   "angle to backprop (deg)", "wall time (s)"), rows)


def _train_section(summary: dict[str, Any], history: list[dict[str, Any]]) -> str:
    keys = ("rule", "dataset", "model", "epochs", "test_accuracy", "train_accuracy",
            "angle_to_backprop_deg", "wall_time_s")
    first = _table(("quantity", "value"), [(k, _pct(summary.get(k)) if "accuracy" in k
                                            else summary.get(k)) for k in keys])
    rows = [(r.get("phase"), r.get("epoch"), r.get("train_loss"), _pct(r.get("test_accuracy")),
             r.get("angle_to_backprop_deg"), r.get("epoch_time_s")) for r in history]
    epochs = _table(("phase", "epoch", "train loss", "test accuracy", "angle to backprop (deg)",
                     "epoch time (s)"), rows) if rows else ""
    return first + ("<h3>Epochs</h3>" + epochs if epochs else "")


def _rl_section(summary: dict[str, Any], history: list[dict[str, Any]]) -> str:
    keys = ("agent", "task", "episodes", "experiments", "reward_last10", "p_better_last10",
            "steps_last10", "mean_abs_rpe_last10", "wall_time_s")
    return _table(("quantity", "value"), [(k, summary.get(k)) for k in keys]) + (
        f"<p>{len(history)} episode records in {METRICS_NAME}.</p>" if history else "")


def _config(run: dict[str, Any]) -> dict[str, Any]:
    summary = run["summary"]
    if run["kind"] == "compare":
        first = summary["rules"][0] if summary["rules"] else {}
        return {k: v for k, v in first.items() if k not in ("rule", "run_dir", "options")
                and not k.endswith(("accuracy", "_deg", "wall_time_s"))}
    if run["kind"] == "reproduce":
        return {"paper": summary.get("paper"), "profile": summary.get("profile"),
                "runs": [{"label": r.get("label"), "kind": r.get("kind"),
                          "config": r.get("config"), "train_size": r.get("train_size")}
                         for r in summary.get("runs", [])]}
    skip = {"history", "angle_per_layer_deg", "plots", "plot"}
    return {k: v for k, v in summary.items() if k not in skip}


def _environment(run: dict[str, Any]) -> tuple[dict[str, Any], str]:
    summary = run["summary"]
    if isinstance(summary.get("environment"), dict):
        return {**summary["environment"], "seed": summary.get("seed")}, "recorded by the run"
    from bionn.reproduce.runner import environment

    source = summary["rules"][0] if run["kind"] == "compare" and summary["rules"] else summary
    env = environment(str(source.get("device", "cpu")))
    env["device"] = source.get("device", "cpu")
    env["seed"] = source.get("seed")
    return env, ("the run folder does not record its machine: versions and CPU are those of "
                 "the machine that wrote this page; device and seed are the run's")


def _figure(path: Path, root: Path) -> str:
    name = html.escape(str(path.relative_to(root)))
    size = path.stat().st_size
    if size > MAX_FIGURE_BYTES:
        return f"<p>{name}: {size >> 20} MiB, too large to embed</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
            f"<figcaption>{name}</figcaption></figure>")


def _title(run: dict[str, Any]) -> str:
    summary = run["summary"]
    if run["kind"] == "reproduce":
        return f"reproduce {summary.get('paper')} ({summary.get('profile')})"
    if run["kind"] == "compare":
        return "compare " + ", ".join(str(s.get("rule")) for s in summary["rules"])
    if run["kind"] == "rl":
        return f"rl {summary.get('agent')} on {summary.get('task')}"
    return f"train {summary.get('rule')} on {summary.get('dataset')}"


def render(runs: Sequence[dict[str, Any]]) -> str:
    """The HTML page for the loaded ``runs`` (see :func:`load_run`)."""
    from bionn import __version__

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = []
    for i, run in enumerate(runs):
        summary, kind = run["summary"], run["kind"]
        if kind == "reproduce":
            body = _reproduce_section(summary)
        elif kind == "compare":
            body = _compare_section(summary)
        elif kind == "rl":
            body = _rl_section(summary, run["history"])
        else:
            body = _train_section(summary, run["history"])
        env, note = _environment(run)
        figures = "".join(_figure(p, run["path"]) for p in run["figures"]) or "<p>none</p>"
        sections.append(
            f'<section id="run-{i}"><h2>{html.escape(_title(run))}</h2>'
            f"<p>Run folder <code>{html.escape(str(run['path']))}</code> ({kind}).</p>{body}"
            f"<h3>Configuration</h3><pre>"
            f"{html.escape(json.dumps(_config(run), indent=2, default=str))}</pre>"
            f"<h3>Environment</h3><p>{html.escape(note)}</p>"
            + _table(("item", "value"), sorted(env.items()))
            + f"<h3>Figures</h3>{figures}</section>"
        )
    toc = "".join(f'<li><a href="#run-{i}">{html.escape(_title(r))}</a></li>'
                  for i, r in enumerate(runs))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>bionn report</title><style>{_STYLE}</style></head><body>"
        f"<h1>bionn report</h1><p>Written by bionn {html.escape(__version__)} on {stamp}; "
        f"{len(runs)} run folder(s).</p><ul>{toc}</ul>{''.join(sections)}</body></html>\n"
    )


def write_report(folders: Sequence[str | Path], output: str | Path) -> Path:
    """Write the page for ``folders`` to ``output``; return its path."""
    if not folders:
        raise BionnError("bionn report needs at least one run folder")
    runs = [load_run(f) for f in folders]
    output = Path(output)
    try:
        output.write_text(render(runs), encoding="utf-8")
    except OSError as exc:
        raise BionnError(f"cannot write {output}: {exc.strerror}") from None
    return output
