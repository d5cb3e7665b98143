"""KB scale: the shared index against today's in-memory matcher, at 100k to 5M entities.

    nice python benchmarks/bench_kb_scale.py --corpus ../shared/data/parallel/opennmt-ende-toy/src-train.txt \
        --sizes 100000,1000000 [--reference-max 100000] [--work /tmp/kbscale] \
        [--pipeline-pairs 10000,100000 --pipeline-args '--align-statistical off ...']

For each size it generates a KB (two aliases of 1-3 words per entity, some of
them word sequences of the corpus so that sentences match; two triples per
entity; gzip JSONL), builds its index (``relbridge kb build``'s
`build_index`), and labels the same tokenised source sentences (``--pairs``,
default 2,000) in a fresh process, as one pipeline worker's LabelWithKb does:
open the KB, then match, resolve and label every sentence. The index is built
in a process of its own too (its peak RSS is the build's). Printed side by
side, one JSON line per run: index build time and peak RSS, index size on
disk, worker open time, labelling wall time and worker peak RSS; for sizes up
to ``--reference-max`` also today's matcher (parse the KB and build a spaCy
PhraseMatcher in the worker), with a check that both give identical mentions
and labels. The demo KB gives the baseline row. Each worker runs in its own
process, so peak RSS is that worker's alone.

``--pipeline-pairs`` then runs the whole pipeline (``relbridge run``, with the
index of the largest size) on that many pairs of ``--corpus`` and its target
side (``src-`` -> ``tgt-``), repeated with new ids, and prints for each run
its wall time and the peak RSS of every process (`ProcessTreeSampler`): the
launcher, which on the local runner also holds the shuffles, and each Beam
worker process (``--direct_running_mode multi_processing``), whose memory is
what a Dataflow worker needs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO_KB = os.path.join(HERE, "..", "demo", "data", "kb")
RELATIONS = ("per:employee_of", "org:city_of_headquarters", "per:spouse", "org:members")


def peak_rss_mb() -> float:
    """This process's own peak RSS (``VmHWM``; ``ru_maxrss`` would include the parent's before exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def generate_kb(folder: str, size: int, sentences: list[list[str]], seed: int = 19) -> None:
    """``size`` entities with two aliases each: 1 in 10 a corpus n-gram, the rest made-up names."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ra", "ten", "vo", "zu", "bel", "dor", "fin", "gra", "hul"]
    ngrams = [
        s[i : i + n]
        for s in sentences[:5000]
        for n in (1, 2, 3)
        for i in range(0, max(0, len(s) - n), 3)
        if s[i][:1].isupper() and all(w.isalpha() for w in s[i : i + n])
    ]

    def name() -> str:
        if rng.random() < 0.1 and ngrams:
            return " ".join(rng.choice(ngrams))
        words = rng.choice((1, 2, 2, 3))
        return " ".join(
            "".join(rng.choices(syllables, k=rng.randint(2, 4))).capitalize() for _ in range(words)
        )

    os.makedirs(folder, exist_ok=True)
    with gzip.open(os.path.join(folder, "entities.jsonl.gz"), "wt", encoding="utf-8") as f:
        for i in range(size):
            aliases = list(dict.fromkeys([name(), name()]))
            kind = rng.choice(("PER", "ORG", "LOC"))
            f.write(json.dumps({"id": f"E{i}", "type": kind, "aliases": {"en": aliases}}) + "\n")
    with gzip.open(os.path.join(folder, "triples.jsonl.gz"), "wt", encoding="utf-8") as f:
        for i in range(size * 2):
            s, o = rng.randrange(size), rng.randrange(size)
            if s != o:
                triple = {"subject": f"E{s}", "relation": rng.choice(RELATIONS), "object": f"E{o}"}
                f.write(json.dumps(triple) + "\n")


def build(folder: str, index: str) -> dict:
    from relbridge.kb import MatchProfile, build_index

    start = time.perf_counter()
    build_index(folder, index, [MatchProfile("en", ("en",))])
    return {"build_s": round(time.perf_counter() - start, 1), "build_peak_rss_mb": peak_rss_mb()}


def worker(kind: str, kb: str, tokens_file: str) -> dict:
    """One labelling worker: open the KB, label every sentence; what a LabelWithKb process does."""
    if kind == "build":
        return build(kb, tokens_file)
    from relbridge.kb import AliasMatcher, label_relations, resolve_mentions
    from relbridge.pipeline.label import LabelConfig, label_tokens

    with open(tokens_file, encoding="utf-8") as f:
        sentences = json.load(f)
    cfg = LabelConfig(kb, "en")
    start = time.perf_counter()
    if kind == "index":
        from relbridge.kb import KbIndex

        index = KbIndex.open(kb)
        index.matcher(cfg.profile)

        def label(tokens):
            return label_tokens(tokens, index, cfg)
    else:
        from relbridge.data_specs.kb_format import load_kb

        loaded = load_kb(kb)
        relation_index = loaded.relation_index()
        matcher = AliasMatcher(loaded, "en")

        def label(tokens):
            mentions, ambiguous = resolve_mentions(
                matcher(tokens), tokens, loaded, relation_index, cfg.max_mentions
            )
            return mentions, label_relations(mentions, relation_index), ambiguous

    opened = time.perf_counter() - start
    start = time.perf_counter()
    out = [label(t) for t in sentences]
    wall = time.perf_counter() - start
    digest = json.dumps([[repr(m) for m in ms] + [repr(r) for r in rs] for ms, rs, _ in out])
    return {
        "open_s": round(opened, 2),
        "label_s": round(wall, 2),
        "sentences_per_s": round(len(sentences) / wall, 1),
        "mentions": sum(len(m) for m, _, _ in out),
        "labels": sum(len(r) for _, r, _ in out),
        "worker_peak_rss_mb": peak_rss_mb(),
        "digest": str(hash(digest)),
    }


def run_worker(kind: str, kb: str, tokens_file: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--kb", kb, "--tokens", tokens_file],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


class ProcessTreeSampler:
    """Peak RSS (``VmHWM``) of a process and all its descendants, sampled every ``period`` s."""

    def __init__(self, pid: int, period: float = 0.2):
        self.pid, self.period = pid, period
        self.peaks: dict[int, tuple[int, str]] = {}  # pid -> (peak kB, command line)
        self.total_kb = 0  # the largest sum of the tree's current RSS seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _tree(self) -> list[int]:
        parents: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                parents.setdefault(ppid, []).append(int(entry))
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += parents.get(pid, [])
        return tree

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            total = 0
            for pid in self._tree():
                try:
                    with open(f"/proc/{pid}/status") as f:
                        fields = dict(line.split(":", 1) for line in f if ":" in line)
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    continue
                if "VmHWM" not in fields:
                    continue
                peak, rss = int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0])
                total += rss
                if peak > self.peaks.get(pid, (0, ""))[0]:
                    self.peaks[pid] = (peak, cmd)
            self.total_kb = max(self.total_kb, total)


def repeated_corpus(src: str, tgt: str, pairs: int, path: str) -> None:
    """``pairs`` TSV rows ``id<TAB>src<TAB>tgt``: the corpus repeated, each copy with new ids."""
    with open(src, encoding="utf-8") as f:
        sources = [line.rstrip("\n") for line in f]
    with open(tgt, encoding="utf-8") as f:
        targets = [line.rstrip("\n") for line in f]
    with open(path, "w", encoding="utf-8") as out:
        for i in range(pairs):
            k = i % len(sources)
            out.write(f"copy{i // len(sources)}-{k}\t{sources[k]}\t{targets[k]}\n")


def run_pipeline(index: str, corpus: str, output: str, extra: list[str]) -> dict:
    """``relbridge run`` on ``corpus`` with the KB ``index``: wall time and per-process peaks."""
    relbridge = os.path.join(os.path.dirname(sys.executable), "relbridge")
    argv = [relbridge, "run", "--corpus", corpus, "--corpus-format", "tsv", "--unescape",
            "--kb", index, "--src-lang", "en", "--tgt-lang", "de", "--output", output,
            "--overwrite", *extra]  # fmt: skip
    start = time.perf_counter()
    with open(output + ".log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        with ProcessTreeSampler(proc.pid) as sampler:
            proc.wait()
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"relbridge run failed ({proc.returncode}): see {output}.log")
    with open(os.path.join(output, "stats.json")) as f:
        stats = json.load(f)
    launcher = sampler.peaks.get(proc.pid, (0, ""))[0]
    workers = [kb for pid, (kb, cmd) in sampler.peaks.items()
               if pid != proc.pid and kb > 50 * 1024]  # Beam's workers, not its helpers  # fmt: skip
    return {
        "wall_s": round(wall, 1),
        **{k: stats.get(k) for k in ("input_records", "rows", "dead_letters")},
        "launcher_peak_rss_mb": round(launcher / 1024),
        "worker_peak_rss_mb": [round(kb / 1024) for kb in sorted(workers, reverse=True)],
        "tree_peak_rss_mb": round(sampler.total_kb / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", help="source-side text, one sentence per line")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--reference-max", type=int, default=100000)
    parser.add_argument("--work", default="/tmp/relbridge-kb-scale")
    parser.add_argument("--pipeline-pairs", default="", help="e.g. 10000,100000: relbridge run")
    parser.add_argument("--pipeline-args", default="--align-statistical off",
                        help="extra flags for those runs (default: %(default)s)")
    parser.add_argument("--worker", choices=("index", "reference", "build"), help=argparse.SUPPRESS)
    parser.add_argument("--kb", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.kb, args.tokens)))
        return
    from relbridge.data_specs.tokenizer import make_tokenizer

    os.makedirs(args.work, exist_ok=True)
    tokenize = make_tokenizer("en")
    with open(args.corpus, encoding="utf-8") as f:
        sentences = [tokenize(line.strip()) for _, line in zip(range(max(args.pairs, 5000)), f)]
    tokens_file = os.path.join(args.work, "tokens.json")
    with open(tokens_file, "w", encoding="utf-8") as f:
        json.dump(sentences[: args.pairs], f)
    runs = [("demo", os.path.abspath(DEMO_KB))]
    for size in (int(s) for s in args.sizes.split(",") if s):
        folder = os.path.join(args.work, f"kb-{size}")
        if not os.path.exists(os.path.join(folder, "triples.jsonl.gz")):
            start = time.perf_counter()
            generate_kb(folder, size, sentences)
            print(json.dumps({"generated": folder, "s": round(time.perf_counter() - start, 1)}),
                  flush=True)
        runs.append((str(size), folder))
    for name, folder in runs:
        index = os.path.join(args.work, f"{name}.kbindex")
        row = {"kb": name}
        if not os.path.exists(index):
            row.update(run_worker("build", folder, index))
        row["index_mb"] = round(os.path.getsize(index) / 1e6, 1)
        new = run_worker("index", index, tokens_file)
        print(json.dumps({**row, "matcher": "index", **new}), flush=True)
        if name == "demo" or int(name) <= args.reference_max:
            old = run_worker("reference", folder, tokens_file)
            same = old.pop("digest") == new["digest"]
            print(json.dumps({"kb": name, "matcher": "PhraseMatcher", **old, "identical": same}),
                  flush=True)
    tgt_corpus = args.corpus.replace("src-", "tgt-")
    for pairs in (int(n) for n in args.pipeline_pairs.split(",") if n):
        name = runs[-1][0]
        corpus = os.path.join(args.work, f"corpus-{pairs}.tsv")
        repeated_corpus(args.corpus, tgt_corpus, pairs, corpus)
        index = os.path.join(args.work, f"{name}.kbindex")
        out = os.path.join(args.work, f"run-{pairs}")
        row = run_pipeline(index, corpus, out, args.pipeline_args.split())
        print(json.dumps({"pipeline_pairs": pairs, "kb": name, "args": args.pipeline_args, **row}),
              flush=True)


if __name__ == "__main__":
    main()
