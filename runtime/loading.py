"""Loading a saved encoder and its tokenizer for inference, in bounded memory and time.

Two costs of the stock loaders, measured on e5-small (2 EPYC cores):

* ``AutoModel.from_pretrained`` memory-maps ``model.safetensors``. Every page of
  the float32 file it touches counts in the process's RSS beside the copy it
  builds, so loading the encoder in bf16, or converting it afterwards, peaks at
  1,369 MB for a process that then holds 920. `load_encoder` builds the model
  uninitialised in the target dtype and reads the file into it a few MB at a
  time: the file's pages stay in the page cache, out of the process.
* transformers 5 saves a tokenizer's added tokens only in ``tokenizer.json``,
  and then parses that whole file in Python at every load to find them (XLM-R:
  17 MB, 0.5 s and 50 MB). `save_tokenizer` also records them in
  ``tokenizer_config.json``, where the loader looks first.

`load_weights_only` and `read_json_object` read a model's own small files
(heads, checkpoints, configs) so that a damaged or planted one is one line,
``PATH: reason`` (a `ValueError`), never a traceback and never unpickled code.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import struct
import sys
import zipfile
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
TOKENIZER_CONFIG = "tokenizer_config.json"
CHUNK_BYTES = 16 << 20
"""Bytes read at a time: the most of the file the process holds at once."""

_ADDED_TOKEN_FIELDS = ("content", "single_word", "lstrip", "rstrip", "normalized", "special")
_DTYPES = {
    "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip
"""safetensors dtype -> torch dtype name (torch is imported where a tensor is made, not here:
the CLI's flags import this module, and `relbridge --help` should not wait for torch)."""


def _torch_dtype(name: str):
    import torch

    return getattr(torch, _DTYPES[name])


def load_weights_only(path: str, what: str, expect: type | None = None, advice: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one-line errors.

    Args:
      path: the file (a missing one is the `OSError` that ``open`` raises).
      what: the kind of file, for the messages (``checkpoint``, ``heads file``).
      expect: when given, the type the loaded object must have.
      advice: what the user can do, ending the message of a damaged file.

    Raises:
      ValueError: ``PATH: reason``: a pickle that names a function or class
        (refused unread), a truncated or foreign file, or another type than ``expect``.
    """
    import torch

    advice = f"; {advice}" if advice else ""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        planted = [line for line in lines if "global" in line.lower()]
        if planted:  # a pickle that names a function or class: never unpickled
            raise ValueError(
                f"{path}: not a relbridge {what}: it holds objects other than tensors and "
                f"plain containers, refused unread ({planted[0][:200]}){advice}"
            ) from None
        detail = next((line for line in lines if line.startswith("Unsupported")), lines[0])
        raise ValueError(f"{path}: unreadable {what} ({detail[:200]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        if isinstance(error, OSError) and not os.path.isfile(path):
            raise  # missing, or a directory: open's own message names the path
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ValueError(
            f"{path}: unreadable {what} (truncated or not written by torch.save: {first})"
            f"{advice}"
        ) from None
    if expect is not None and not isinstance(obj, expect):
        raise ValueError(f"{path}: not a relbridge {what} (a {type(obj).__name__})")
    return obj


def read_json_object(path: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object in ``path``, which must hold ``keys``.

    Raises:
      ValueError: ``PATH:LINE: reason`` where the file is not JSON, ``PATH:
        reason`` where it is no object or lacks a key.
    """
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: not JSON: {e.msg}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not JSON: not UTF-8 text") from None
    if not isinstance(data, dict) or any(k not in data for k in keys):
        wanted = f" with keys {', '.join(keys)}" if keys else ""
        raise ValueError(f"{path}: expected a JSON object{wanted}")
    return data


def safetensors_header(path: str) -> tuple[dict[str, dict], int]:
    """The tensor entries of a safetensors file and the offset where their data starts.

    Raises:
      ValueError: ``PATH: reason`` where the file is not a well-formed safetensors file.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        length = struct.unpack("<Q", raw)[0] if len(raw) == 8 else -1
        if not 0 < length <= size - 8:
            raise ValueError(f"{path}: not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (header is not an object)")
    header.pop("__metadata__", None)
    base = 8 + length
    for name, info in header.items():
        try:
            dtype = _torch_dtype(info["dtype"])
            begin, end = info["data_offsets"]
            fits = end - begin == math.prod(info["shape"]) * dtype.itemsize
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: tensor {name!r}: unknown dtype or malformed entry") from None
        if not fits or begin < 0 or base + end > size:
            raise ValueError(f"{path}: tensor {name!r}: wrong size or outside the file (truncated?)")
    return header, base


def read_safetensors_into(
    path: str, targets: dict[str, torch.Tensor], parsed: tuple[dict, int] | None = None
) -> None:
    """Copies every tensor of a safetensors file into ``targets[name]``, cast to its dtype.

    ``targets`` must name exactly the file's tensors, with the same shapes; the
    bytes are read `CHUNK_BYTES` at a time, never mapped. ``parsed`` is the
    file's `safetensors_header`, where the caller has read it already.

    Raises:
      ValueError: ``PATH: reason`` for a malformed file or a tensor that does not fit.
    """
    import torch

    header, base = parsed or safetensors_header(path)
    if set(header) != set(targets):
        raise ValueError(
            f"{path}: its tensors are not the model's ({len(header)} against {len(targets)})"
        )
    if sys.byteorder != "little":
        raise ValueError(f"{path}: safetensors data is little-endian; this machine is not")
    with open(path, "rb", buffering=0) as f, torch.no_grad():
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            dest, dtype = targets[name], _torch_dtype(info["dtype"])
            if tuple(dest.shape) != tuple(info["shape"]) or not dest.is_contiguous():
                raise ValueError(f"{path}: tensor {name!r} has shape {info['shape']}, "
                                 f"the model's {tuple(dest.shape)}")  # fmt: skip
            flat, step = dest.view(-1), max(1, CHUNK_BYTES // dtype.itemsize)
            buffer = bytearray(min(step, flat.numel()) * dtype.itemsize)
            f.seek(base + info["data_offsets"][0])
            for start in range(0, flat.numel(), step):
                count = min(step, flat.numel() - start)
                view = memoryview(buffer)[: count * dtype.itemsize]
                _read_exactly(f, view, path)
                flat[start : start + count].copy_(torch.frombuffer(view, dtype=dtype))


def _read_exactly(f, view: memoryview, path: str) -> None:
    done = 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            raise ValueError(f"{path}: file ends early (truncated?)")
        done += n


def load_encoder(path: str, dtype: torch.dtype | None = None, inference: bool = False):
    """``AutoModel.from_pretrained(path)`` (eval mode), its weights stored in ``dtype``.

    For a reduced ``dtype`` and a single ``model.safetensors`` whose tensors are
    exactly the model's, the model is built uninitialised in ``dtype`` and the
    file streamed into it (`read_safetensors_into`); anything else (float32,
    sharded or ``.bin`` weights, renamed or tied tensors) goes to transformers.
    With ``inference``, a BERT-style encoder that
    `relbridge.runtime.bert_encoder` computes exactly is loaded as that instead,
    which spares the 2 s of importing transformers' model code.
    """
    import torch

    if inference:
        from relbridge.runtime.bert_encoder import load_bert_style

        encoder = load_bert_style(path, dtype)
        if encoder is not None:
            return encoder
    from transformers import AutoConfig, AutoModel

    weights = os.path.join(path, WEIGHTS_FILE)
    if dtype in (None, torch.float32) or not os.path.isfile(weights):
        return AutoModel.from_pretrained(path, **({"dtype": dtype} if dtype else {}))
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every weight is read from the file below; random init takes 2.6 s
        model = AutoModel.from_config(AutoConfig.from_pretrained(path), dtype=dtype)
    state, parsed = model.state_dict(), safetensors_header(weights)
    if set(parsed[0]) != set(state):
        logger.debug("%s: tensor names differ from the model's; loading through transformers", path)
        return AutoModel.from_pretrained(path, dtype=dtype)
    read_safetensors_into(weights, state, parsed)
    return model.eval()


def save_tokenizer(tokenizer, directory: str) -> None:
    """``tokenizer.save_pretrained(directory)``, its added tokens also in the config file."""
    tokenizer.save_pretrained(directory)
    path = os.path.join(directory, TOKENIZER_CONFIG)
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config["added_tokens_decoder"] = {
        str(i): {key: getattr(token, key) for key in _ADDED_TOKEN_FIELDS}
        for i, token in sorted(tokenizer.added_tokens_decoder.items())
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
