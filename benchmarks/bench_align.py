"""Stock simalign vs the batched `WordAligner`: pairs/s and AER, side by side in one process.

For each gold set and method (argmax, itermax, and simalign's default 'mai' =
all three at once) it aligns the same pairs with ``simalign.SentenceAligner``
(one pair per call) and with `WordAligner` (``--batch-size`` pairs per call),
configured identically (same model directory, layer, token type and
distortion), and prints one row per (set, method) plus a JSON line.

Stock simalign always runs in float32. The new aligner runs in ``--dtype``,
``auto`` by default: bfloat16 on CPUs with native bf16 (AVX-512-BF16 / AMX),
float32 elsewhere (`relbridge.runtime.devices`); the chosen dtype and
whether the CPU has native bf16 are printed, and the AER columns show what
the precision costs.

    python benchmarks/bench_align.py --limit 150 --threads 2
    python benchmarks/bench_align.py --sets enfr --methods argmax --model /path/to/e5
    python benchmarks/bench_align.py --compile   # ours through torch.compile (compiled in the warm-up)

Timing excludes model loading and a warm-up (one batch for ours, four pairs for stock).
Compare rows of one run only (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import replace

logger = logging.getLogger("bench_align")

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "alignment")
STOCK_LETTERS = {"argmax": "a", "itermax": "i", "match": "m"}
STOCK_KEYS = {"argmax": "inter", "itermax": "itermax", "match": "mwmf"}
METHOD_SETS = {
    "argmax": ("argmax",),
    "itermax": ("itermax",),
    "match": ("match",),
    "mai": ("argmax", "itermax", "match"),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="folder with enfr/, roen/, zhen/")
    p.add_argument("--sets", default="enfr,roen,zhen")
    p.add_argument(
        "--methods", default="argmax,itermax,mai", help="comma list of argmax, itermax, match, mai"
    )
    p.add_argument(
        "--model", default=None, help="encoder directory (default: the bundled e5-small)"
    )
    p.add_argument("--layer", type=int, default=6)
    p.add_argument(
        "--token-type", default="bpe", choices=("bpe", "word"), help="bpe = stock default"
    )
    p.add_argument("--distortion", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=128, help="pairs per align_batch call")
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument(
        "--dtype",
        default="auto",
        help="dtype of the new aligner: auto (bf16 on native-bf16 CPUs), float32, bfloat16",
    )
    p.add_argument("--limit", type=int, default=None, help="pairs per set (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--compile", action="store_true", help="torch.compile ours (compiled during the warm-up)"
    )
    p.add_argument("--skip-stock", action="store_true", help="only time the new aligner")
    return p.parse_args(argv)


def run_both(aligner, cfg, stock, methods, pairs, batch_size):
    """Aligns ``pairs`` with both aligners, interleaved batch by batch.

    Interleaving exposes both to the same load from other processes on a shared
    machine. Returns ``(new_links, new_seconds, stock_links, stock_seconds)``,
    links as ``{method: [links per pair]}``.
    """
    aligner.cfg = replace(cfg, method=methods[0], also=methods[1:])  # same encoder, other methods
    # warm-up: one full batch for ours (first-seen shapes allocate), a few pairs for stock
    aligner.align_batch(pairs[:batch_size])
    if stock is not None:
        stock.matching_methods = [STOCK_KEYS[m] for m in methods]
        for src, tgt in pairs[:4]:
            stock.get_word_aligns(src, tgt)
    new, stock_out = [], []
    new_s = stock_s = 0.0
    for k in range(0, len(pairs), batch_size):
        chunk = pairs[k : k + batch_size]
        start = time.perf_counter()
        new.extend(aligner.align_batch(chunk))
        new_s += time.perf_counter() - start
        if stock is not None:
            start = time.perf_counter()
            stock_out.extend(stock.get_word_aligns(src, tgt) for src, tgt in chunk)
            stock_s += time.perf_counter() - start
    new_links = {m: [r.by_method.get(m) for r in new] for m in methods}
    stock_links = {m: [o[STOCK_KEYS[m]] for o in stock_out] for m in methods}
    return new_links, new_s, stock_links, stock_s


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from relbridge.alignment.aligner import AlignConfig, WordAligner
    from relbridge.alignment.metrics import (
        alignment_scores,
        check_gold_fits,
        read_pairs,
        read_pharaoh,
    )
    from relbridge.runtime.devices import cpu_has_native_bf16

    torch.set_num_threads(args.threads)
    cfg = AlignConfig(
        model=args.model,
        layer=args.layer,
        token_type=args.token_type,
        distortion=args.distortion,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        device="cpu",
        dtype=args.dtype,
        compile=args.compile,
    )
    aligner = WordAligner(cfg)
    dtype = str(aligner.embedder.dtype).removeprefix("torch.")
    print(f"new aligner dtype: {dtype} (CPU native bf16: {cpu_has_native_bf16()})")
    stock = None
    if not args.skip_stock:
        from simalign import SentenceAligner

        stock = SentenceAligner(
            model=aligner.model_dir,
            token_type=args.token_type,
            distortion=args.distortion,
            matching_methods="a",
            device="cpu",
            layer=args.layer,
        )
    rows = []
    print(
        f"{'set':6} {'method':8} {'stock p/s':>9} {'new p/s':>8} {'ratio':>6}  AER stock -> new (%)"
    )
    for name in args.sets.split(","):
        pairs = read_pairs(os.path.join(args.data, name, f"{name}.src-tgt"), limit=args.limit)
        gold_path = os.path.join(args.data, name, f"{name}.gold")
        gold = read_pharaoh(gold_path, one_based=True)[: len(pairs)]
        check_gold_fits(gold, pairs, gold_path, one_based=True)
        for method in args.methods.split(","):
            methods = METHOD_SETS[method]
            new_links, new_s, stock_links, stock_s = run_both(
                aligner, cfg, stock, methods, pairs, args.batch_size
            )
            new_rate = len(pairs) / new_s
            new_aer = {m: alignment_scores(new_links[m], gold).aer for m in methods}
            row = {
                "set": name,
                "method": method,
                "pairs": len(pairs),
                "new_pairs_per_s": round(new_rate, 2),
            }
            row["new_aer"] = {m: round(100 * a, 2) for m, a in new_aer.items()}
            if stock is not None:
                stock_rate = len(pairs) / stock_s
                stock_aer = {m: alignment_scores(stock_links[m], gold).aer for m in methods}
                row["stock_pairs_per_s"] = round(stock_rate, 2)
                row["ratio"] = round(new_rate / stock_rate, 2)
                row["stock_aer"] = {m: round(100 * a, 2) for m, a in stock_aer.items()}
            rows.append(row)
            aers = " ".join(
                f"{m}: {row.get('stock_aer', {}).get(m, float('nan')):.1f} -> {row['new_aer'][m]:.1f}"
                for m in methods
            )
            print(
                f"{name:6} {method:8} {row.get('stock_pairs_per_s', float('nan')):9.1f} "
                f"{new_rate:8.1f} {row.get('ratio', float('nan')):6.2f}  {aers}",
                flush=True,
            )
    report = {
        "rows": rows,
        "config": {**vars(args), "model_dir": aligner.model_dir, "new_dtype": dtype},
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
