"""The RELX zero-shot benchmark: train on KBP37 (English), test on RELX en/de/fr.

Trains a `RelationExtractor` on KBP37 ``train.txt`` with early stopping on KBP37
``dev.txt`` and evaluates it, without any target-language training data, on
``RELX_en.txt``, ``RELX_de.txt`` and ``RELX_fr.txt`` with the RELX metric (the
mean over the 18 KBP relations of micro F1 on their two directed labels).
KBP37 has no license: it is read from where it lies and never copied.

Run::

    relbridge benchmark relx --kbp37 ../shared/data/kbp37 --relx ../shared/data/relx --output out/relx
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any

from relbridge.models.trainer import TrainConfig

logger = logging.getLogger(__name__)

RELX_LANGUAGES = ("en", "de", "fr")
PUBLISHED_MBERT = {"en": 61.8, "fr": 58.3, "de": 57.5}
"""mBERT fine-tuned on KBP37, RELX metric (Köksal & Özgür 2020, Table 3)."""


def relx_benchmark_config(kbp37: str, output: str, **overrides: Any) -> TrainConfig:
    """The benchmark's training settings: KBP37 train, dev early stopping, no tagging task.

    KBP37 marks only the two arguments of each sentence, so the tagging head
    (which would learn to call every other entity ``O``) is switched off.
    """
    settings: dict[str, Any] = {
        "output": output,
        "relx_train": (os.path.join(kbp37, "train.txt"),),
        "dev": (os.path.join(kbp37, "dev.txt"),),
        "tagging_weight": 0.0,
        "dev_metric": "relx_f1",
        "epochs": 2,
    }
    settings.update(overrides)
    return TrainConfig(**settings)


def run_relx_benchmark(
    kbp37: str,
    relx: str,
    output: str,
    languages: tuple[str, ...] = RELX_LANGUAGES,
    **overrides: Any,
) -> dict[str, Any]:
    """Trains on KBP37 and scores RELX; writes and returns ``benchmark.json``'s content."""
    from relbridge.models.evaluate import evaluate
    from relbridge.models.trainer import train

    cfg = relx_benchmark_config(kbp37, output, **overrides)
    started = time.perf_counter()
    stats = train(cfg)
    train_s = time.perf_counter() - started
    scores = {}
    for lang in languages:
        result = evaluate(
            stats["model_dir"],
            os.path.join(relx, f"RELX_{lang}.txt"),
            data_format="relx",
            lang=lang,
        )
        scores[lang] = result["overall"]
    summary = {
        "relx_f1": {lang: round(scores[lang]["relx_f1"], 2) for lang in languages},
        "published_mbert": PUBLISHED_MBERT,
        "scores": scores,
        "training": {k: v for k, v in stats.items() if k != "history"},
        "history": stats["history"],
        "config": dataclasses.asdict(cfg),
        "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    with open(os.path.join(output, "benchmark.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary
