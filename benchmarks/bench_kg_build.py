"""kg build (Beam DirectRunner) vs relbridge extract on the same sentences, model and CPU.

Prints both rates in input sentences per second and their ratio, from one run:

    python benchmarks/bench_kg_build.py --input ../shared/data/parallel/opennmt-ende-toy/tgt-train.txt \\
        --lines 1000 --lang de [--model DIR] [--beam-args='--direct_running_mode multi_processing']

Without ``--model`` a tiny random model (tests/tiny_models.py) is built; it
finds names everywhere (about 20-30 records a line, about 12 lines/s), and
``--tiny-o-bias 1.3`` (added to its tagger's ``O`` logit) brings it near a
trained model's density (0.7 records a line) at several times the speed. With
``--memory-lines 10000,100000`` each size also runs kg build in a child process
(the input repeated to the size) and prints its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time


def tiny_model(path: str, o_bias: float = 0.0) -> str:
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from tiny_models import build_tiny_encoder

    from relbridge.models.extractor import RelationExtractor
    from relbridge.models.model_config import ModelConfig

    torch.manual_seed(0)
    encoder = build_tiny_encoder(os.path.join(path, "encoder"))
    model = RelationExtractor(ModelConfig(encoder=encoder, relations=("NA", "r1", "r2")))
    with torch.no_grad():
        model.tag_head.bias[model.cfg.tags.index("O")] += o_bias
    model.save_pretrained(os.path.join(path, "model"))
    return os.path.join(path, "model")


def slice_lines(src: str, dst: str, n: int) -> None:
    with open(src, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    with open(dst, "w", encoding="utf-8") as f:
        f.writelines(lines[k % len(lines)] for k in range(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--lines", type=int, default=1000)
    ap.add_argument("--lang", default="en")
    ap.add_argument("--model")
    ap.add_argument("--tiny-o-bias", type=float, default=0.0, help="without --model: fewer names")
    ap.add_argument("--kb")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--beam-args", default="", help="extra Beam flags for kg build")
    ap.add_argument("--memory-lines", default="", help="comma-separated sizes for peak memory")
    args = ap.parse_args()

    import torch

    from relbridge.kg.build import run
    from relbridge.models.extract import extract_file

    tmp = tempfile.mkdtemp(prefix="bench_kg_")
    model = args.model or tiny_model(tmp, args.tiny_o_bias)
    data = os.path.join(tmp, "input.txt")
    slice_lines(args.input, data, args.lines)
    mentions = None
    if args.kb:
        from relbridge.kb import TextMentions

        mentions = TextMentions(args.kb, args.lang)
    t = time.perf_counter()
    records, n = extract_file(model, data, batch_size=args.batch_size, mentions_of=mentions)
    extract_s = time.perf_counter() - t
    kg_argv = ["--input", data, "--output", os.path.join(tmp, "kg"), "--model", model,
               "--lang", args.lang, "--no-split", "--batch-size", str(args.batch_size),
               *(["--kb", args.kb] if args.kb else []), *shlex.split(args.beam_args)]  # fmt: skip
    t = time.perf_counter()
    stats = run(kg_argv)
    build_s = time.perf_counter() - t
    result = {
        "sentences": n,
        "torch_threads": torch.get_num_threads(),
        "extract": {"seconds": round(extract_s, 2), "sentences_per_s": round(n / extract_s, 1),
                    "records": len(records)},
        "kg_build": {"seconds": round(build_s, 2), "sentences_per_s": round(n / build_s, 1),
                     "records": stats["records"], "triples": stats["triples"],
                     "balanced": stats["balanced"]},
        "ratio_kg_build_over_extract": round(extract_s / build_s, 3),
    }  # fmt: skip
    memory = {}
    for size in [int(s) for s in args.memory_lines.split(",") if s.strip()]:
        sized = os.path.join(tmp, f"input_{size}.txt")
        slice_lines(args.input, sized, size)
        argv = [sys.executable, "-m", "relbridge.cli.main", "kg", "build",
                *kg_argv[:1], sized, *kg_argv[2:3], os.path.join(tmp, f"kg_{size}"), *kg_argv[4:]]  # fmt: skip
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak (KiB on Linux)
        if status:
            raise RuntimeError(f"kg build on {size} lines failed: {' '.join(argv)}")
        memory[size] = {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}
    if memory:
        result["kg_build_peak_memory"] = memory
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
