"""Raw-text extraction throughput: the fast path, the exact path, and a baseline.

Runs ``relbridge extract`` as a user would, once per path, each in its own process,
on the first ``--limit`` sentences of a text file (or one column of a TSV such as
NTREX-128 in ``../shared/data/parallel/news-en-x``), and prints one table:

* startup: process start until the first sentence is scored (imports, model,
  KB index or matcher);
* sentences/s after startup;
* candidate pairs per sentence before and after pruning, encoder passes per
  sentence, records per sentence;
* peak RSS of the process (``wait4``'s ``ru_maxrss``);
* for the fast path, the share of the triples (line, subject span, relation,
  object span) that either path outputs which both output.

A baseline is another relbridge installation (``--baseline-relbridge``, e.g. a
checkout of the commit before this change with its own venv): its figures are
printed beside the new ones; counts it does not report are left blank.

    python benchmarks/bench_extract.py --model out/relx/model --kb ../shared/data/kb/wikidata-xfactr \\
        --lang en --input ../shared/data/parallel/news-en-x/ntrex128.en-de.tsv --column 1 --limit 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def write_input(path: str, column: int | None, limit: int, out: str) -> int:
    """The first ``limit`` non-blank sentences of ``path`` (or its TSV ``column``) into ``out``."""
    n = 0
    with open(path, encoding="utf-8") as src, open(out, "w", encoding="utf-8") as dst:
        for line in src:
            text = line.rstrip("\n")
            if column is not None:
                parts = text.split("\t")
                text = parts[column] if len(parts) > column else ""
            if text.strip():
                dst.write(text.strip() + "\n")
                n += 1
                if n == limit:
                    break
    return n


def run_path(relbridge: str, args: argparse.Namespace, source: str, out: str, extra: list[str]) -> dict:
    """One ``relbridge extract`` process: its summary, wall time and peak RSS."""
    cmd = [relbridge, "--log-level", "WARNING", "extract", "--model", args.model,
           "--input", source, "--output", out, *extra]  # fmt: skip
    if args.kb:
        cmd += ["--kb", args.kb, "--lang", args.lang]
        if args.kb_alias_langs:
            cmd += ["--kb-alias-langs", args.kb_alias_langs]
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    ended = time.time()
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    scoring_from = summary.get("scoring_started_at")
    summary["wall_s"] = ended - started
    summary["startup_s"] = (scoring_from - started) if scoring_from else None
    summary["loop_s"] = (ended - scoring_from) if scoring_from else summary["wall_s"]
    summary["peak_rss_mb"] = usage.ru_maxrss / 1024
    return summary


def triples(path: str) -> set[tuple]:
    with open(path, encoding="utf-8") as f:
        return {(r["line"], tuple(r["subject_span"]), r["relation"], tuple(r["object_span"]))
                for r in map(json.loads, f)}  # fmt: skip


def row(name: str, s: dict, n: int, agreement: float | None) -> str:
    def per(key):
        return f"{s[key] / n:.1f}" if key in s else "-"

    cells = [name, f"{s['startup_s']:.1f}" if s.get("startup_s") is not None else "-",
             f"{n / s['loop_s']:.1f}", f"{s['wall_s']:.1f}", per("candidate_pairs_before"),
             per("candidate_pairs"), per("encoder_passes"), f"{s['records'] / n:.1f}",
             f"{s['peak_rss_mb']:.0f}", f"{100 * agreement:.1f}%" if agreement is not None else "-"]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def header(args: argparse.Namespace, n: int) -> str:
    """What was measured: the sentences, the model, the KB and the baseline's executable."""
    column = f" (column {args.column})" if args.column is not None else ""
    baseline = f", baseline {args.baseline_relbridge}" if args.baseline_relbridge else ""
    kb = args.kb or "-"
    return f"{n} sentences of {args.input}{column}, model {args.model}, KB {kb}{baseline}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="trained model directory")
    parser.add_argument("--input", required=True, help="text file, or TSV with --column")
    parser.add_argument("--column", type=int, help="TSV column holding the sentence (0-based)")
    parser.add_argument("--limit", type=int, default=1000, help="sentences (default: 1000)")
    parser.add_argument("--kb", help="KB directory (or index) for KB mentions")
    parser.add_argument("--lang", default="en", help="language of the input (default: en)")
    parser.add_argument("--kb-alias-langs", help="KB alias languages to match")
    parser.add_argument("--baseline-relbridge", help="relbridge executable of the baseline")
    parser.add_argument("--skip-exact", action="store_true", help="leave out the exact path")
    args = parser.parse_args(argv)
    relbridge = shutil.which("relbridge") or os.path.join(os.path.dirname(sys.executable), "relbridge")
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "input.txt")
        n = write_input(args.input, args.column, args.limit, source)
        if n == 0:
            parser.error(f"{args.input}: no sentences to extract from")
        runs = {}
        if args.baseline_relbridge:
            runs["baseline"] = (run_path(args.baseline_relbridge, args, source,
                                         os.path.join(tmp, "baseline.jsonl"), []), "baseline.jsonl")  # fmt: skip
        runs["fast"] = (run_path(relbridge, args, source, os.path.join(tmp, "fast.jsonl"), []), "fast.jsonl")
        if not args.skip_exact:
            runs["exact"] = (run_path(relbridge, args, source, os.path.join(tmp, "exact.jsonl"),
                                      ["--exact"]), "exact.jsonl")  # fmt: skip
        agreement = None
        if "exact" in runs:
            a, b = (triples(os.path.join(tmp, runs[k][1])) for k in ("fast", "exact"))
            agreement = len(a & b) / max(len(a | b), 1)
    print(header(args, n))
    print("| path | startup s | sentences/s after startup | wall s | pairs/sentence before pruning"
          " | pairs/sentence | encoder passes/sentence | records/sentence | peak RSS MB | agree with exact |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (summary, _) in runs.items():
        print(row(name, summary, n, agreement if name == "fast" else None))


if __name__ == "__main__":
    main()
