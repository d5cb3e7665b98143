"""Fuzz: a few hundred malformed corpus lines through the whole pipeline (issue 16).

Random bytes, wrong column counts, broken JSON, huge and empty fields, control
characters, repeated ids and identical lines, over two corpus files, on the
tiny random encoder. Every input line must end in exactly one shard row or one
dead letter, and ``stats.json`` must add up to what is in the files.
"""

import glob
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from test_pipeline_stages import write_kb

from relbridge.data_specs import read_shards
from relbridge.pipeline.main import run

WORDS = "Angela Merkel was born in Hamburg . the CDU city Paris is a of and".split()
NOT_NEWLINE = [b for b in range(256) if b != 10]
ODD = ["\x00", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u200f", "\ufeff", "\r", "😀", "ß", "é"]


def sentence(rng: random.Random, n: int | None = None) -> str:
    words = [rng.choice(WORDS) for _ in range(n or rng.randint(1, 8))]
    if rng.random() < 0.2:
        words[rng.randrange(len(words))] += rng.choice(ODD)
    return " ".join(words)


def tsv_line(rng: random.Random, seen: list[bytes], ids: list[str]) -> bytes:
    kind = rng.randrange(12)
    if kind == 0 and seen:  # an identical line again (with or without an id)
        return rng.choice(seen)
    if kind == 1 and ids:  # an id again, other text
        return f"{rng.choice(ids)}\t{sentence(rng)}\t{sentence(rng)}".encode()
    if kind == 2:  # random bytes, no newline
        return bytes(rng.choice(NOT_NEWLINE) for _ in range(rng.randint(0, 40)))
    if kind == 3:  # wrong column count
        return "\t".join(sentence(rng) for _ in range(rng.choice([1, 4, 5]))).encode()
    if kind == 4:  # empty or blank fields
        return rng.choice([b"", b"\t", b"\t\t", b"x\t\tz", b"  \t  ", b"7\t \tWort"])
    if kind == 5:  # huge fields: over --max-words, or over the encoder's length
        return f"{sentence(rng, rng.choice([300, 5000]))}\t{sentence(rng)}".encode()
    if kind == 6:  # bad UTF-8 inside an otherwise good line
        return sentence(rng).encode() + b"\xff\xfe" + b"\t" + sentence(rng).encode()
    if kind == 7:  # CRLF line ending
        return f"{sentence(rng)}\t{sentence(rng)}\r".encode()
    if kind == 8:  # punctuation only
        return b". , ;\t! ?"
    line = f"{sentence(rng)}\t{sentence(rng)}"
    if kind == 9:
        ids.append(f"id{len(ids)}")
        line = f"{ids[-1]}\t{line}"
    seen.append(line.encode())
    return line.encode()


def jsonl_line(rng: random.Random, ids: list) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        return b'{"src": "Merkel", "tgt": '  # broken JSON
    if kind == 1:
        return json.dumps(rng.choice([[1, 2], "text", 3, None])).encode()  # not an object
    if kind == 2:
        return json.dumps({"src": sentence(rng), "tgt": rng.choice([None, 5, ["x"], ""])}).encode()
    if kind == 3:  # odd ids: null, numbers, lists, repeats
        ident = rng.choice([None, 7, 7.5, ["a"], True, "", *ids[-2:]])
        return json.dumps({"src": sentence(rng), "tgt": sentence(rng), "id": ident}).encode()
    if kind == 4:
        return json.dumps({"src": sentence(rng, 400), "tgt": sentence(rng)}).encode()
    ids.append(f"j{len(ids)}")
    return json.dumps({"src": sentence(rng), "tgt": sentence(rng), "id": ids[-1]}).encode()


def where_lines_went(out: Path) -> Counter:
    """How often each (file, line) is in a shard row or a dead letter."""
    ends = Counter((row.source_file, row.line) for row in read_shards(str(out / "shards")))
    for path in glob.glob(str(out / "dead_letter" / "*.jsonl")):
        for text in Path(path).read_bytes().split(b"\n")[:-1]:  # only \n ends a letter
            letter = json.loads(text)
            ends[(letter["source_file"], letter["line"])] += 1
    return ends


@pytest.mark.parametrize("fmt", ["tsv", "jsonl"])
def test_every_fuzzed_corpus_line_ends_in_one_row_or_dead_letter(tmp_path, tiny_encoder, fmt):
    rng = random.Random(16)
    files = []
    for part in range(2):  # two files: repeated ids and lines across files too
        if fmt == "tsv":
            seen, ids = [], []
            lines = [tsv_line(rng, seen, ids) for _ in range(150)]
        else:
            ids = []
            lines = [jsonl_line(rng, ids) for _ in range(100)]
        path = tmp_path / f"fuzz{part}.{fmt}"
        path.write_bytes(b"\n".join(lines) + b"\n")
        files.append(str(path))
    argv = [
        "--corpus", str(tmp_path / f"fuzz*.{fmt}"), "--kb", write_kb(tmp_path),
        "--src-lang", "en", "--tgt-lang", "de", "--output", str(tmp_path / "out"),
        "--model", tiny_encoder, "--align-layer", "1", "--corpus-name", "fuzz",
    ]  # fmt: skip
    stats = run(argv)
    n_lines = {f: Path(f).read_bytes().count(b"\n") for f in files}
    expected = {(f, n) for f, count in n_lines.items() for n in range(1, count + 1)}
    ends = where_lines_went(tmp_path / "out")
    assert set(ends) == expected  # no line lost, none invented
    assert [k for k, v in ends.items() if v != 1] == []  # each in exactly one place
    assert stats["input_records"] == sum(n_lines.values()) == stats["rows"] + stats["dead_letters"]
    assert stats["balanced"] and stats["rows"] > 20
    counts = stats["counts"]
    assert counts["dead_letter:ReadBitext"] > 20 and counts["dead_letter:Tokenize"] > 0
    ids = [row.pair_id for row in read_shards(str(tmp_path / "out" / "shards"))]
    assert len(ids) == len(set(ids))
    for row in read_shards(str(tmp_path / "out" / "shards")):
        assert all(s < len(row.src_tokens) and t < len(row.tgt_tokens) for s, t in row.alignment)


@pytest.mark.parametrize(
    "ident,expected",
    [(None, ""), ("", ""), (7, "7"), (" a7 ", "a7"), (7.5, None), (["a"], None), (True, None)],
)
def test_a_jsonl_id_is_a_string_or_an_integer(ident, expected):
    from relbridge.data_specs.formats import InputError, parse_jsonl_pair

    text = json.dumps({"src": "a", "tgt": "b", "id": ident})
    if expected is None:
        with pytest.raises(InputError, match=r"c.jsonl:3: .*id must be a string or an integer"):
            parse_jsonl_pair(text, "c", "c.jsonl", 3)
    else:  # null and "" mean no id (a content hash), not the id "None"
        record = parse_jsonl_pair(text, "c", "c.jsonl", 3)
        assert record.record_id == expected
        assert record.pair_id != "c:None"


@pytest.mark.parametrize("field", ["src", "tgt", "id"])
def test_a_lone_surrogate_in_a_jsonl_corpus_line_is_a_bad_line(tmp_path, field):
    """JSON's ``\\ud800`` is valid JSON but no text: it crashed the run in Tokenize."""
    from relbridge.data_specs.formats import InputError
    from relbridge.pipeline.ingest import IngestConfig, read_records

    record = {"src": "Merkel was born in Hamburg .", "tgt": "Merkel wurde geboren .", "id": "a"}
    record[field] += "\ud800"
    corpus = tmp_path / "c.jsonl"
    good = json.dumps({"src": "a", "tgt": "b"})
    corpus.write_text(json.dumps(record) + "\n" + good + "\n")  # json.dumps escapes it
    bad, ok = read_records(str(corpus), IngestConfig(str(corpus), "en", "de"))
    assert isinstance(bad, InputError) and f'"{field}" holds a lone surrogate (\\ud800)' in str(bad)
    assert bad.line == 1 and bad.raw == json.dumps(record) and ok.src == "a"
