"""The topics report: a CSV and one self-contained HTML page (no script, no
network) for a :class:`~interp_engine.methods.topics.PredictionDifference`.

Per neuron: its active count and top targets with their scores (mean drop of
the target's probability when the neuron is ablated) as bars, and for topics
the topic's top words.  Neurons are listed by score, best first; never-active
neurons last.
"""
from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .html import NEURON_NUMBERING, _page

__all__ = ["write_topics_report"]


def write_topics_report(result: Any, out_dir: Union[str, "os.PathLike[str]"], *,
                        topic_words: Optional[Sequence[Sequence[str]]] = None, title: str = "Neuron topics",
                        max_neurons: Optional[int] = None, bar: Optional[float] = None,
                        params: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``topics.csv`` (:meth:`PredictionDifference.to_csv`) and
    ``index.html`` into ``out_dir``; returns the path of ``index.html``.

    ``topic_words``: per target, words shown next to it (e.g.
    ``Topics.top_words``); ``bar``: a score from which a neuron is counted as
    consistent (shown in the summary); ``params``: extra key/value rows for
    the summary table; ``max_neurons``: list only the best ones."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.to_csv(out / "topics.csv")
    score = np.asarray(result.score, np.float64)
    order = sorted(range(len(result)), key=lambda i: (math.isnan(score[i]), -np.nan_to_num(score[i], nan=0.0), i))
    if max_neurons is not None:
        order = order[:max_neurons]
    finite = result.top_scores[np.isfinite(result.top_scores)]
    peak = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    rows: List[str] = []
    for i in order:
        n = int(result.neurons[i])
        if result.counts[i] == 0:
            rows.append(f'<div class="unit"><h3>neuron <b>{n}</b> &nbsp; <span class="note">never active '
                        "(no score)</span></h3></div>")
            continue
        bars = []
        for t, s in zip(result.top_targets[i], result.top_scores[i]):
            if t < 0:
                continue
            width = max(0.0, 240.0 * float(s) / peak)
            words = ""
            if topic_words is not None and t < len(topic_words) and topic_words[t]:
                words = f' <span class="note">{html.escape(" ".join(topic_words[t]))}</span>'
            bars.append(f'<div class="bar-row"><span class="bar-label">{html.escape(result.target_names[t])}</span>'
                        f'<span class="bar" style="width:{width:.1f}px"></span>{float(s):+.4f}{words}</div>')
        mark = ""
        if bar is not None:
            mark = ' &nbsp; <span class="det">consistent</span>' if score[i] >= bar else \
                ' &nbsp; <span class="nodet">below the bar</span>'
        rows.append(f'<div class="unit"><h3>neuron <b>{n}</b> &nbsp; score {score[i]:.4f} &nbsp; '
                    f'active on {int(result.counts[i])} of {result.n_samples}{mark}</h3>'
                    f'<div class="bars">{"".join(bars)}</div></div>')
    summary: Dict[str, Any] = {"layer": result.layer, "targets": result.targets, "ablation": result.ablation,
                               "neurons": len(result), "samples": result.n_samples,
                               "never active": int((result.counts == 0).sum())}
    if bar is not None:
        summary[f"consistent (score >= {bar:g})"] = f"{int(result.consistent(bar).sum())} of {len(result)}"
    summary.update(params or {})
    ptab = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in summary.items())
    body = (f"<h1>{html.escape(title)}</h1>"
            f'<p><a href="topics.csv">topics.csv</a> &middot; score = mean drop of the target\'s probability '
            "when the neuron is ablated, over the samples where it is active</p>"
            f'<p class="note">{html.escape(NEURON_NUMBERING)}</p>'
            f'<table class="summary">{ptab}</table>' + "\n".join(rows))
    index = out / "index.html"
    index.write_text(_page(title, body), encoding="utf-8")
    return index
