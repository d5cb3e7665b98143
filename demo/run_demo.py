"""The main job on the embedded demo data: pipeline -> shards -> training -> evaluation.

    relbridge demo --output out/demo

1. Runs the Beam pipeline on the RELX en-de train corpus with the demo KB.
2. Scores the projected German labels in the shards against RELX's German gold.
3. Trains the multi-task extractor on the shards (English and projected German).
4. Calibrates its raw-text thresholds on the English training sentences, and
   evaluates it on the RELX test ids in German and English, sentences that never
   reached the shards.
5. Extracts triples from the same test sentences as raw text (no entity markers:
   the KB's aliases and the tagging head find the entities), links them to the demo KB and merges
   them into knowledge-graph triples (``OUTPUT/kg/triples.jsonl``), the path of
   `relbridge extract` and `relbridge triples`; then the same sentences through
   `relbridge kg build`, loaded into a pyoxigraph store and queried with SPARQL
   (``OUTPUT/kg/store``; `relbridge.demo.kg_step`).
6. Writes the run report (``OUTPUT/report.html``: figures and tables of every step).
7. Prints and saves a summary (``OUTPUT/summary.json``) that names the report.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from importlib import resources

from relbridge.data_specs.relx import read_relx

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Demo settings; the defaults finish in minutes on 2 CPU cores.

    Attributes:
      output: output directory (shards, model, summary).
      model: encoder for alignment and training (default: bundled e5-small).
      epochs: training epochs over the demo shards.
      max_na_ratio: relation-less pairs kept per pair with a relation (distant
        supervision labels ~90% of the demo's pairs NA).
      freeze_layers: encoder layers (from the bottom) left frozen, which halves
        the backward pass on CPU.
      pipeline_args: further `relbridge run` or Beam flags, e.g. ``--align-layer 8`` or
        ``--direct_running_mode multi_processing``.
    """

    output: str
    model: str | None = None
    epochs: int = 3
    max_na_ratio: float = 1.0
    freeze_layers: int = 4
    pipeline_args: tuple[str, ...] = ()


def data_dir() -> str:
    return str(resources.files("relbridge.demo") / "data")


def run_pipeline(cfg: DemoConfig) -> tuple[dict, str]:
    """Runs the Beam pipeline on the demo corpus; returns (stats, shard directory)."""
    from relbridge.pipeline.main import run

    data = data_dir()
    out = os.path.join(cfg.output, "pipeline")
    argv = [
        "--corpus", os.path.join(data, "relx_ende_train.tsv"), "--corpus-name", "relx_ende",
        "--kb", os.path.join(data, "kb"), "--src-lang", "en", "--tgt-lang", "de", "--output", out,
        "--overwrite",  # the demo is one whole job: a rerun replaces an older run's shards
        # RELX annotates pronouns as entities (his, it) and the demo KB is built
        # from those annotations, so here they are names, matched as annotated;
        # a general KB keeps the default and skips such one-word aliases.
        "--match-function-word-aliases",
        *(["--model", cfg.model] if cfg.model else []), *cfg.pipeline_args,
    ]  # fmt: skip
    return run(argv), os.path.join(out, "shards")


def score_projection(shards: str) -> dict:
    from relbridge.data_specs.schema import read_shards
    from relbridge.demo.projection_score import score_rows

    data = data_dir()
    en = {r.id: r for r in read_relx(os.path.join(data, "RELX_en.txt"))}
    de = {r.id: r for r in read_relx(os.path.join(data, "RELX_de.txt"))}
    return score_rows(read_shards(shards), en, de)


def train_and_evaluate(cfg: DemoConfig, shards: str) -> tuple[str, dict, dict]:
    """Trains on the shards, evaluates on the held-out RELX ids (de and en)."""
    from relbridge.models.evaluate import evaluate
    from relbridge.models.trainer import TrainConfig, train

    train_stats = train(
        TrainConfig.from_flat(
            shards=shards,
            output=os.path.join(cfg.output, "training"),
            epochs=cfg.epochs,
            max_na_ratio=cfg.max_na_ratio,
            freeze_layers=cfg.freeze_layers,
            resume=False,  # the shards were just rewritten: an old checkpoint trained on others
            **({"model": cfg.model} if cfg.model else {}),
        )
    )
    model_dir = train_stats["model_dir"]
    data = data_dir()
    with open(os.path.join(data, "split.json"), encoding="utf-8") as f:
        split = json.load(f)
    test_ids = set(split["test"])
    # The raw-text thresholds (the tagger's span threshold, the relation threshold), chosen on
    # the English sentences of the training split, never on the held-out ones. Decoded mentions
    # only: the demo's model learns no boundary negatives (they come from KBP37), and its weak
    # tagger reads so many spans as names that the lattice would double the demo's time.
    from relbridge.models.raw_text import calibrate

    calibrate(
        model_dir, os.path.join(data, "RELX_en.txt"), set(split["train"]), readings=("decoded",)
    )
    scores = {}
    for lang in ("de", "en"):
        scores[lang] = evaluate(
            model_dir,
            os.path.join(data, f"RELX_{lang}.txt"),
            data_format="relx",
            lang=lang,
            ids=test_ids,
            details=True,  # per-relation scores, confusion matrix, PR curve: for the report
        )
    return model_dir, train_stats, scores


def extract_knowledge_graph(cfg: DemoConfig, model_dir: str) -> dict:
    """Raw-text extraction on the held-out sentences, merged into KB-linked triples.

    Scores the records end to end (`relbridge.models.raw_text`): the markers are
    removed, the KB's aliases and the tagging head find the mentions, and the
    output is scored against RELX's one annotated pair per sentence (relx_f1,
    mention/pair/triple recall, precision lower bound, linked share). RELX
    leaves a sentence's other facts unannotated, so the precision is a lower bound.
    """
    from relbridge.data_specs.kb_format import load_kb
    from relbridge.models.extract import extract_with_mentions
    from relbridge.models.thresholds import records_threshold
    from relbridge.models.raw_text import gold_sentences, raw_text_scores
    from relbridge.models.triples import TriplesConfig, aggregate_triples
    from relbridge.kb import TextMentions

    data, out = data_dir(), os.path.join(cfg.output, "kg")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(data, "split.json"), encoding="utf-8") as f:
        test_ids = set(json.load(f)["test"])
    kb = load_kb(os.path.join(data, "kb"))
    records, scores = [], {}
    for lang in ("de", "en"):
        gold = gold_sentences(os.path.join(data, f"RELX_{lang}.txt"), test_ids)
        path = os.path.join(out, f"heldout_{lang}.jsonl")
        with open(path, "w", encoding="utf-8") as f:  # the raw input, one line per sentence
            f.writelines(
                json.dumps({"text": g.text, "id": g.id}, ensure_ascii=False) + "\n" for g in gold
            )
        found, mentions = extract_with_mentions(
            model_dir, [g.text for g in gold], mentions_of=TextMentions(kb, lang), threshold=None
        )
        scores[lang] = raw_text_scores(gold, found, mentions, with_kb=True)
        for r in found:  # provenance, as `relbridge extract` writes it
            r.update(source_file=path, line=r["sentence"] + 1, id=gold[r["sentence"]].id)
            r["model"] = model_dir
        records += found
    with open(os.path.join(out, "records.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    triples, counts = aggregate_triples(
        ((f"{r['source_file']}:{r['line']}", r) for r in records),
        # as `kg build` does, for the languages of the records
        TriplesConfig(min_confidence=records_threshold(model_dir), langs=tuple(scores)),
        kb,
    )
    with open(os.path.join(out, "triples.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in triples)
    return {"raw_text_extraction_vs_relx": scores, "triples": counts, "output": out}


def write_demo_report(
    cfg: DemoConfig, shards: str, model_dir: str, summary: dict, scores: dict
) -> str | None:
    """OUTPUT/report.html: the pipeline, training, held-out evaluation and raw-text scores."""
    from relbridge.report import REPORT, try_write_report

    kg = summary["knowledge_graph_from_heldout_raw_text"]
    return try_write_report(
        os.path.join(cfg.output, REPORT),
        title="relbridge demo: RELX en -> de",
        pipeline=os.path.dirname(shards),
        training=os.path.dirname(model_dir),
        evaluations={f"held-out RELX {lang}": result for lang, result in scores.items()},
        scores={
            "projected German labels against RELX gold": summary["projection_vs_relx_de_gold"],
            "raw-text extraction on held-out RELX (entities found, not given)": kg[
                "raw_text_extraction_vs_relx"
            ],
            "knowledge-graph triples from the held-out raw text": kg["triples"],
            "timings (s)": summary["timings"],
        },
    )


def run_demo(cfg: DemoConfig) -> dict:
    """Runs every step and returns the summary."""
    from relbridge.models.evaluate import without_diagnostics

    started = time.perf_counter()
    timings = {}

    t = time.perf_counter()
    stats, shards = run_pipeline(cfg)
    timings["pipeline_s"] = round(time.perf_counter() - t, 1)

    projection = score_projection(shards)

    t = time.perf_counter()
    model_dir, train_stats, scores = train_and_evaluate(cfg, shards)
    timings["train_and_evaluate_s"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    knowledge_graph = extract_knowledge_graph(cfg, model_dir)
    timings["extract_and_link_s"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    from relbridge.demo.kg_step import build_and_query

    graph = build_and_query(knowledge_graph["output"], model_dir, os.path.join(data_dir(), "kb"))
    timings["kg_build_load_query_s"] = round(time.perf_counter() - t, 1)
    timings["total_s"] = round(time.perf_counter() - started, 1)

    counts = stats["counts"]
    summary = {
        "records": {
            "input_pairs": stats["input_records"],
            "shard_rows": stats["rows"],
            "dead_letters": stats["dead_letters"],
            "balanced (input = rows + dead letters)": stats["balanced"],
            "dead_letters_by_stage": {
                k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("dead_letter:")
            },
        },
        "per_stage": {
            "source_mentions": counts.get("src_mentions", 0),
            "relation_instances": counts.get("relation_instances", 0),
            "na_instances": counts.get("na_instances", 0),
            "alignment_links": counts.get("alignment_links", 0),
            "projected_mentions": counts.get("tgt_mentions", 0),
            "projected_relation_instances": counts.get("projected_relation_instances", 0),
        },
        "shards": shards,
        "model": model_dir,
        "projection_vs_relx_de_gold": projection,
        "training": {k: v for k, v in train_stats.items() if k != "history"},
        "extraction_on_heldout_relx": without_diagnostics(scores),
        "knowledge_graph_from_heldout_raw_text": knowledge_graph,
        "knowledge_graph_store": graph,
        "timings": timings,
    }
    summary["report"] = write_demo_report(cfg, shards, model_dir, summary, scores)
    with open(os.path.join(cfg.output, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=str)
    return summary
