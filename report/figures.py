"""The report's figures, drawn with matplotlib and returned as PNG bytes.

Each function takes plain data (from `relbridge.report.collect` or an
``evaluate`` result) and returns a PNG; `data_uri` embeds one in the HTML.
Figures are built as `matplotlib.figure.Figure` objects on the Agg canvas,
never through pyplot, so drawing keeps no global state and needs no display.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DPI = 110


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def plain(text: Any) -> str:
    """``text`` for matplotlib to draw as written: a ``$`` pair would start mathtext.

    Corpus words, pair ids and relation names are input; ``$x_$`` must neither
    render as a formula nor fail to parse (which would lose the whole report).
    """
    return str(text).replace("$", r"\$")


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def bar_chart(
    items: Sequence[tuple[str, float]], title: str, xlabel: str, color: str = PALETTE[0]
) -> bytes:
    """Horizontal bars, first item on top, each labelled with its value."""
    fig = Figure(figsize=(7.5, 0.9 + 0.32 * len(items)))
    ax = fig.add_subplot()
    names = [plain(name) for name, _ in items][::-1]
    values = [value for _, value in items][::-1]
    bars = ax.barh(names, values, color=color)
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8)
    ax.set_title(plain(title))
    ax.set_xlabel(xlabel)
    ax.margins(x=0.15)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def confidence_histogram(confidences: Sequence[float], min_confidence: float | None) -> bytes:
    """Projected mentions by confidence, with the run's threshold marked."""
    fig = Figure(figsize=(7.5, 3.2))
    ax = fig.add_subplot()
    ax.hist(confidences, bins=np.linspace(0, 1, 21), color=PALETTE[0], edgecolor="white")
    if min_confidence is not None:
        ax.axvline(
            min_confidence, color=PALETTE[3], linestyle="--", label="--min-projection-confidence"
        )
        ax.legend(loc="upper left")
    ax.set_title(f"Projected mentions by confidence ({len(confidences):,})")
    ax.set_xlabel("projection confidence")
    ax.set_ylabel("projected mentions")
    ax.set_xlim(0, 1)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def labels_per_language(labels: Mapping[str, Mapping[str, int]], top: int = 25) -> bytes:
    """Relation instances per label, one bar per language (the ``top`` labels overall)."""
    total: dict[str, int] = {}
    for counts in labels.values():
        for label, n in counts.items():
            total[label] = total.get(label, 0) + n
    names = sorted(total, key=lambda k: -total[k])[:top][::-1]
    langs = list(labels)
    height = 0.8 / max(len(langs), 1)
    fig = Figure(figsize=(7.5, 1.2 + 0.3 * len(names) * max(1, len(langs) / 2)))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    for k, lang in enumerate(langs):
        values = [labels[lang].get(name, 0) for name in names]
        ax.barh(y + k * height, values, height, label=plain(lang), color=PALETTE[k % len(PALETTE)])
    ax.set_yticks(y + height * (len(langs) - 1) / 2, [plain(n) for n in names], fontsize=8)
    ax.set_title("Relation instances per label and language (NA left out)")
    ax.set_xlabel("relation instances")
    ax.legend(title="language", loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def alignment_figure(row: Mapping[str, Any], char_w: float = 0.085) -> bytes:
    """One sentence pair: source words on top, target below, links between, mentions coloured.

    A projected target mention has the colour of the source mention it came
    from and its confidence beneath it. Words sit at monospace widths, so the
    layout needs no text measuring.
    """
    src, tgt = row["src_tokens"], row["tgt_tokens"]

    def positions(tokens):
        x, out = 0.0, []
        for token in tokens:
            width = max(len(token), 1) * char_w
            out.append((x, x + width))
            x += width + 2 * char_w
        return out, x

    src_pos, src_w = positions(src)
    tgt_pos, tgt_w = positions(tgt)
    width = max(src_w, tgt_w, 4.0)
    fig = Figure(figsize=(width + 0.4, 2.4))  # pairs are chosen short (collect.shard_summary)
    ax = fig.add_subplot()
    ax.set_xlim(-0.1, width + 0.1)
    ax.set_ylim(-0.75, 1.45)
    ax.axis("off")
    src_colour = {}
    for k, m in enumerate(row["src_mentions"]):
        colour = PALETTE[k % len(PALETTE)]
        for i in range(m["start"], m["end"]):
            src_colour[i] = colour
    tgt_colour = {}
    for m in row["tgt_mentions"]:
        colour = PALETTE[m["source_index"] % len(PALETTE)]
        for i in range(m["start"], m["end"]):
            tgt_colour[i] = colour
        x0, x1 = tgt_pos[m["start"]][0], tgt_pos[m["end"] - 1][1]
        ax.text(
            (x0 + x1) / 2, -0.5, f"{m['confidence']:.2f}", ha="center", fontsize=7, color=colour
        )
    for link in row["alignment"]:
        s, t = link["src"], link["tgt"]
        colour = src_colour.get(s, "#999999")
        ax.plot(
            [sum(src_pos[s]) / 2, sum(tgt_pos[t]) / 2],
            [0.85, 0.15],
            color=colour,
            linewidth=1.4 if s in src_colour else 0.7,
            alpha=0.9 if s in src_colour else 0.5,
        )
    for tokens, pos, y, colours in (
        (src, src_pos, 1.0, src_colour),
        (tgt, tgt_pos, 0.0, tgt_colour),
    ):
        for i, (token, (x0, x1)) in enumerate(zip(tokens, pos)):
            box = (
                {"facecolor": colours[i], "alpha": 0.25, "edgecolor": colours[i], "pad": 1.5}
                if i in colours
                else None
            )
            ax.text((x0 + x1) / 2, y, plain(token), ha="center", va="center", family="monospace",
                    fontsize=9, bbox=box)  # fmt: skip
    heading = plain(f"{row['pair_id']} ({row['src_lang']} -> {row['tgt_lang']})")
    ax.text(0, 1.35, heading, fontsize=8, color="#555555")
    return _png(fig)


def training_curves(history: Sequence[Mapping[str, Any]], dev_metric: str) -> bytes:
    """Training loss and the dev metric against the optimizer step."""
    steps = [h["global_step"] for h in history]
    fig = Figure(figsize=(7.5, 3.2))
    ax = fig.add_subplot()
    dev = [h.get(dev_metric, h.get("micro_f1")) for h in history]
    ax.plot(steps, dev, marker="o", color=PALETTE[0], label=f"dev {dev_metric}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"dev {dev_metric} (%)")
    ax.set_title("Training")
    lines = ax.get_lines()
    if any("train_loss" in h for h in history):
        loss_ax = ax.twinx()
        pts = [
            (h["global_step"], h["train_loss"]) for h in history if h.get("train_loss") is not None
        ]
        loss_ax.plot(*zip(*pts), marker="s", color=PALETTE[1], label="training loss")
        loss_ax.set_ylabel("training loss (mean since the last dev evaluation)")
        lines += loss_ax.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="center right")
    ax.grid(alpha=0.3)
    return _png(fig)


def pr_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]], title: str
) -> bytes:
    """Held-out precision/recall curves, one per name, AUC in the legend."""
    fig = Figure(figsize=(6.0, 4.6))
    ax = fig.add_subplot()
    for k, (name, (recall, precision, auc)) in enumerate(curves.items()):
        if len(recall):
            ax.plot(recall, precision, color=PALETTE[k % len(PALETTE)], linewidth=1.6,
                    label=plain(f"{name} (AUC {auc:.1f})"))  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_xlabel("recall (share of gold facts found)")
    ax.set_ylabel("precision")
    ax.set_title(plain(title))
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(loc="lower left")
    return _png(fig)


def confusion_matrix(labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str) -> bytes:
    """Gold (rows) against predicted (columns) counts, log-shaded, counts written in."""
    counts = np.asarray(matrix)
    n = len(labels)
    size = min(max(4.0, 0.38 * n + 2.5), 14.0)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    image = ax.imshow(np.log1p(counts), cmap="Blues")
    ax.set_xticks(range(n), [plain(t) for t in labels], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), [plain(t) for t in labels], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(plain(title))
    high = np.log1p(counts).max() / 2 if counts.size else 0
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if np.log1p(counts[i, j]) > high else "black")  # fmt: skip
    fig.colorbar(image, ax=ax, shrink=0.7, label="log(1 + count)")
    return _png(fig)
