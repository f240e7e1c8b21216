"""`report.md` and its PNG plots, from a Results: readable by someone who did not run it."""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from pathlib import Path

from bench.results import Results, Row

ORDER = (
    "quality", "cold start", "realistic", "realistic, per seed", "query features", "folding",
    "training scalability", "training step (issue 3)", "sampler", "serving", "pipeline",
    "checkpoints",
)  # fmt: skip
PLOTS = {  # section → (file, metrics plotted as grouped bars)
    "quality": ("quality.png", ("progressive recall@10", "progressive recall@100",
                                "holdout recall@10", "holdout recall@100")),
    "cold start": ("cold_start.png", ("recall@10 user's 1st event", "recall@10 user's first 3",
                                      "recall@10 user's first 10",
                                      "recall@10 new items (seen 1-5x)")),
    "realistic": ("realistic.png", ("warm recall@10", "warm recall@50", "warm NDCG@10",
                                    "cold-3 recall@10")),
    "query features": ("query_features.png", ("progressive recall@10", "progressive recall@100")),
    "folding": ("folding.png", ("folding rate @10",)),
    "serving": ("serving.png", ("top-100 p50 ms @ {n} items", "top-100 p99 ms @ {n} items")),
    "pipeline": ("pipeline.png", ("events/s",)),
}  # fmt: skip


def _table(rows: Sequence[Row], notes: dict[str, int]) -> list[str]:
    metrics = list(dict.fromkeys(r.metric for r in rows))
    subjects = list(dict.fromkeys(r.subject for r in rows))
    cell = {(r.subject, r.metric): r for r in rows}
    out = ["| | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for s in subjects:
        vals = []
        for m in metrics:
            r = cell.get((s, m))
            if r is None:
                vals.append("")
            elif r.value is None:
                ref = notes.setdefault(r.note, len(notes) + 1)
                vals.append(f"n/a [{ref}]")
            else:
                vals.append(r.shown())
        out.append(f"| {s} | " + " | ".join(vals) + " |")
    return out


def is_softmax(subject: str) -> bool:
    return subject.startswith("softmax")


def styles(subjects: Sequence[str]) -> dict[str, dict[str, object]]:
    """A line style per subject that no other shares: softmax variants in solid blues and
    purples (the default first, darkest and thickest), baselines dashed in oranges and greys."""
    import matplotlib

    soft = [s for s in subjects if is_softmax(s)]
    base = [s for s in subjects if not is_softmax(s)]
    cmap = matplotlib.colormaps["plasma"]
    out: dict[str, dict[str, object]] = {}
    for k, s in enumerate(soft):
        out[s] = {
            "color": cmap(0.55 * k / max(1, len(soft) - 1)),
            "linestyle": "-",
            "marker": _MARKERS[k % len(_MARKERS)],
            "linewidth": 2.6 if k == 0 else 1.4,
        }
    for k, s in enumerate(base):
        out[s] = {
            "color": _BASELINE_COLOURS[k % len(_BASELINE_COLOURS)],
            "linestyle": _DASHES[k % len(_DASHES)],
            "marker": "x" if k < len(_DASHES) else "+",
            "linewidth": 1.6,
        }
    return out


_MARKERS = "osD^vPX*h"
_BASELINE_COLOURS = ("#e6550d", "#636363", "#fdae6b", "#8c510a", "#a3a3a3", "#f16913", "#252525")
_DASHES = ("--", "-.", ":", (0, (6, 2, 1, 2, 1, 2)), (0, (3, 1)), (0, (8, 3)), (0, (1, 3)))


def _bars(rows: Sequence[Row], metrics: Sequence[str], path: Path, title: str) -> bool:
    """Grouped bars: a colour per metric; baselines' bars hatched and their names grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    chosen = [m for m in metrics if any(r.metric == m and r.measured for r in rows)]
    subjects = list(dict.fromkeys(r.subject for r in rows if r.metric in chosen and r.measured))
    if not chosen or not subjects:
        return False
    cell = {(r.subject, r.metric): r for r in rows if r.measured}
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(subjects) * len(chosen) ** 0.5 + 1.5))
    h = 0.8 / len(chosen)
    colours = matplotlib.colormaps["tab10"]
    for k, m in enumerate(chosen):
        ys = [i + k * h for i in range(len(subjects))]
        got = [cell.get((s, m)) for s in subjects]
        spread = [r.spread if r is not None and r.spread is not None else 0.0 for r in got]
        ax.barh(
            ys,
            [(r.value if r is not None else None) or 0.0 for r in got],
            height=h,
            label=m,
            color=colours(k % 10),
            hatch=["" if is_softmax(s) else "///" for s in subjects],
            edgecolor="white",
            linewidth=0.5,
            xerr=spread if any(spread) else None,
            error_kw={"elinewidth": 0.8, "capsize": 2},
        )
    ax.set_yticks([i + 0.4 - h / 2 for i in range(len(subjects))], subjects, fontsize=8)
    for label, s in zip(ax.get_yticklabels(), subjects, strict=True):
        label.set_color("#1f1f7a" if is_softmax(s) else "#6b6b6b")
    ax.invert_yaxis()
    ax.set_title(title)
    handles, _ = ax.get_legend_handles_labels()
    if not all(is_softmax(s) for s in subjects):
        handles.append(Patch(facecolor="white", edgecolor="#6b6b6b", hatch="///", label="baseline"))
    ax.legend(handles=handles, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _lines(
    series: dict[str, dict], path: Path, title: str, xlabel: str, ylabel: str, logx: bool
) -> bool:  # type: ignore[type-arg]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not series:
        return False
    fig, ax = plt.subplots(figsize=(11, 5))
    look = styles(list(series))
    for name, points in series.items():
        xs = (
            list(points) if isinstance(points, dict) else [10 * (k + 1) for k in range(len(points))]
        )
        ys = list(points.values()) if isinstance(points, dict) else list(points)
        ax.plot(xs, ys, label=name, markersize=5, **look[name])  # type: ignore[arg-type]
    if logx:
        ax.set_xscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), handlelength=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(results: Results, out: Path, mode: str, seconds: float, command: str) -> Path:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    notes: dict[str, int] = {}
    lines = [
        "# recstream benchmark report",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M %Z')} with `{command}` ({mode} mode) in "
        f"{seconds / 60:.1f} min on {platform.node() or 'this machine'}: "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads by default. Every figure below was measured in "
        "this run; `n/a [k]` marks a figure that could not be measured, with the reason in the "
        "notes at the end. Recall: share of held-out events whose true item ranks in the "
        "model's top k over the whole catalogue seen so far.",
        "",
        "## Summary",
        "",
        "| section | figure | subject | value |",
        "|---|---|---|---|",
    ]
    for r in results.rows:
        if r.headline:
            lines.append(f"| {r.section} | {r.metric} | {r.subject} | {r.shown()} |")
    sections = [s for s in ORDER if results.section(s)]
    sections += [s for s in dict.fromkeys(r.section for r in results.rows) if s not in sections]
    for s in sections:
        rows = results.section(s)
        took = results.seconds.get(s)
        lines += ["", f"## {s[0].upper()}{s[1:]}" + (f" ({took:.0f} s)" if took else ""), ""]
        lines += [*results.notes.get(s, []), ""] if results.notes.get(s) else []
        lines += _table(rows, notes)
        lines += _plots(results, s, rows, out)
    if notes:
        lines += ["", "## Notes: figures not measured", ""]
        lines += [f"{k}. {text}" for text, k in notes.items()]
    lines += ["", "Raw figures: `results.json` beside this file."]
    (out / "results.json").write_text(results.to_json())
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _plots(results: Results, section: str, rows: list[Row], out: Path) -> list[str]:
    made = []
    if section in PLOTS:
        name, metrics = PLOTS[section]
        if section == "serving":
            metrics = tuple(dict.fromkeys(r.metric for r in rows))
        if _bars(rows, metrics, out / name, section):
            made.append(name)
    extra = {
        "quality": ("recall_over_time", "recall_over_time.png",
                    "progressive recall@10 by tenth of the stream", "% of stream",
                    "recall@10", False),
        "training scalability": ("training_scalability", "training_scalability.png",
                                 "training events/s vs catalogue size", "items", "events/s", True),
        "training step (issue 3)": ("step_grid", "step_grid.png", "", "", "", False),
    }  # fmt: skip
    if section in extra:
        key, name, title, xl, yl, logx = extra[section]
        data = results.series.get(key, {})
        if key == "step_grid":
            metrics = tuple(
                dict.fromkeys(r.metric for r in rows if r.metric.startswith("events/s"))
            )
            ok = _bars(rows, metrics, out / name, "training step events/s")
        else:
            ok = _lines(data, out / name, title, xl, yl, logx)
        if ok:
            made.append(name)
    return [f"\n![{section}]({m})" for m in made]
