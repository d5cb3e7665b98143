"""Malformed KB lines: each is one ``FILE:LINE: reason`` error, never a traceback or a silent read.

A seeded generator makes a few hundred bad entity and triple lines (wrong
types where strings belong, ``{"en": "Tea"}``, ``null`` ids and aliases,
numbers, ``NA`` and unknown relations, duplicate ids, broken JSON, bytes that
are not UTF-8, wrong TSV columns), puts each among good lines of a tiny KB,
and checks that loading the KB names exactly that file and line.
"""

from __future__ import annotations

import json
import random
import re

import pytest

from relbridge.data_specs.formats import InputError
from relbridge.data_specs.kb_format import load_kb
from relbridge.kb import build_index

GOOD_ENTITIES = [
    {"id": "Q1", "type": "PER", "aliases": {"en": ["Angela Merkel", "Merkel"]}},
    {"id": "Q2", "type": "LOC", "aliases": {"en": ["Berlin"], "de": ["Berlin"]}},
    {"id": "Q3", "type": "ORG", "aliases": {"en": ["CDU"]}},
]
GOOD_TRIPLES = [
    {"subject": "Q1", "relation": "per:cities_of_residence", "object": "Q2"},
    {"subject": "Q1", "relation": "per:employee_of", "object": "Q3"},
]
NOT_STRINGS = [None, 0, 7, 3.5, True, [], ["x"], {}, {"en": "x"}]


def _junk(rng: random.Random) -> str:
    return "".join(rng.choice("abcXYZ \t{}[]\":,é中\\") for _ in range(rng.randint(1, 12)))


def bad_entity_line(rng: random.Random) -> tuple[str, bytes]:
    """A malformed entities.jsonl line (the kind, the bytes)."""
    good = {"id": f"Q{rng.randint(100, 999)}", "type": "PER", "aliases": {"en": ["Name"]}}
    kind = rng.choice(
        ["id", "type", "aliases", "alias_list", "alias_item", "lang", "dup", "json", "bytes", "keys"]
    )
    obj = dict(good)
    if kind == "id":
        obj["id"] = rng.choice([*NOT_STRINGS, "", "  "])
    elif kind == "type":
        obj["type"] = rng.choice([x for x in NOT_STRINGS if x is not None])
    elif kind == "aliases":
        obj["aliases"] = rng.choice([None, "Tea", 3, ["Tea"], True])
    elif kind == "alias_list":
        obj["aliases"] = {"en": rng.choice(["Tea", None, 5, {"x": 1}, True])}
    elif kind == "alias_item":
        names = ["Tea", rng.choice([None, 5, 2.5, ["Tea"], {}, "", "   ", False])]
        rng.shuffle(names)
        obj["aliases"] = {"en": names}
    elif kind == "lang":
        obj["aliases"] = {rng.choice(["", " "]): ["Tea"]}
    elif kind == "dup":  # an id already used by a good line, with other content
        other = dict(rng.choice(GOOD_ENTITIES))
        other["aliases"] = {"en": [_junk(rng).strip() or "x", "Other"]}
        obj = other
    elif kind == "json":
        return kind, (json.dumps(obj)[: rng.randint(1, 20)] + _junk(rng)).encode()
    elif kind == "bytes":
        return kind, json.dumps(obj).encode()[:-3] + bytes([rng.randint(0x80, 0xFF)]) + b'"]}}'
    elif kind == "keys":
        del obj[rng.choice(["id", "aliases"])]
    return kind, json.dumps(obj, ensure_ascii=False).encode()


def bad_triple_line(rng: random.Random) -> tuple[str, bytes]:
    """A malformed triples.jsonl line."""
    obj = dict(rng.choice(GOOD_TRIPLES))
    kind = rng.choice(["relation", "na", "unknown_relation", "arg", "unknown_entity", "json"])
    if kind == "relation":
        obj["relation"] = rng.choice([*NOT_STRINGS, "", "  "])
    elif kind == "na":
        obj["relation"] = "NA"
    elif kind == "unknown_relation":
        obj["relation"] = rng.choice(["per:founder", "P108", _junk(rng).strip() or "q"])
    elif kind == "arg":
        obj[rng.choice(["subject", "object"])] = rng.choice([*NOT_STRINGS, ""])
    elif kind == "unknown_entity":
        obj[rng.choice(["subject", "object"])] = f"Q{rng.randint(1000, 9999)}"
    else:
        return kind, (json.dumps(obj)[: rng.randint(0, 30)] + "}{").encode()
    return kind, json.dumps(obj, ensure_ascii=False).encode()


def bad_tsv_line(rng: random.Random) -> tuple[str, bytes]:
    """A malformed entities.tsv line."""
    cols = ["Q7", "PER", "en", "Tea"]
    kind = rng.choice(["columns", "empty"])
    if kind == "columns":
        cols = cols[: rng.choice([1, 2, 3])] if rng.random() < 0.5 else [*cols, "extra"]
    else:
        cols[rng.choice([0, 2, 3])] = rng.choice(["", " "])
    return kind, "\t".join(cols).encode()


def write_kb(tmp_path, name: str, rng: random.Random, which: str, bad: bytes) -> tuple[str, int]:
    """A KB with ``bad`` among good lines of the ``which`` file; returns (that file, bad line)."""
    kb = tmp_path / name
    kb.mkdir()
    entities = [json.dumps(e).encode() for e in GOOD_ENTITIES]
    triples = [json.dumps(t).encode() for t in GOOD_TRIPLES]
    if which == "entities.tsv":
        entities = [f"{e['id']}\t{e['type']}\ten\t{e['aliases']['en'][0]}".encode() for e in GOOD_ENTITIES]
    lines = entities if which.startswith("entities") else triples
    at = rng.randint(len(lines) if "dup" in name else 0, len(lines))
    lines.insert(at, bad)
    ext = "tsv" if which == "entities.tsv" else "jsonl"
    (kb / f"entities.{ext}").write_bytes(b"\n".join(entities) + b"\n")
    (kb / "triples.jsonl").write_bytes(b"\n".join(triples) + b"\n")
    return str(kb / which), at + 1


def cases(n: int = 300):
    rng = random.Random(19)
    makers = [("entities.jsonl", bad_entity_line), ("triples.jsonl", bad_triple_line),
              ("entities.tsv", bad_tsv_line)]
    for i in range(n):
        which, make = makers[i % len(makers)]
        kind, line = make(rng)
        yield i, which, kind, line, random.Random(i)


def test_every_malformed_kb_line_is_one_error_naming_its_file_and_line(tmp_path):
    kinds = set()
    for i, which, kind, line, rng in cases():
        path, number = write_kb(tmp_path, f"kb{i}-{kind}", rng, which, line)
        with pytest.raises(InputError) as caught:
            load_kb(str(tmp_path / f"kb{i}-{kind}"))
        message = str(caught.value)
        assert re.fullmatch(rf"{re.escape(path)}:{number}: \S[^\n]*", message), (kind, line, message)
        kinds.add((which, kind))
        if i % 4 == 0:  # the streaming index builder stops on the same line with the same reason
            with pytest.raises(InputError) as built:
                build_index(str(tmp_path / f"kb{i}-{kind}"), str(tmp_path / f"{i}.idx"), [])
            assert str(built.value) == message
            assert not list(tmp_path.glob(f"{i}.idx*"))
    assert len(kinds) >= 16  # the generator reached every kind of defect


def test_the_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    from relbridge.cli.main import main

    rng = random.Random(5)
    line = json.dumps({"subject": "Q1", "relation": "NA", "object": "Q2"}).encode()
    path, number = write_kb(tmp_path, "kb", rng, "triples.jsonl", line)
    argv = ["kb", "build", "--kb", str(tmp_path / "kb"), "--output", str(tmp_path / "i"), "--profile", "en"]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"relbridge kb: error: {path}:{number}: 'NA' is not a relation (it means no relation holds): leave the triple out"
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("cut", [True, False])  # cut short; no gzip at all
def test_a_broken_gzip_kb_file_is_one_error_naming_its_file_and_line(tmp_path, cut):
    import gzip

    kb = tmp_path / "kb"
    kb.mkdir()
    text = "".join(f"Q{i}\tPER\ten\tName {i}\n" for i in range(1, 20001)).encode()
    (kb / "entities.tsv.gz").write_bytes(gzip.compress(text)[:-100] if cut else b"not gzip")
    (kb / "triples.tsv").write_text("")
    for load in (load_kb, lambda d: build_index(d, str(tmp_path / "i.idx"), [])):
        with pytest.raises(InputError) as caught:
            load(str(kb))
        assert re.fullmatch(rf"{re.escape(str(kb / 'entities.tsv.gz'))}:\d+: not a whole gzip.*",
                            str(caught.value))  # fmt: skip
        assert (caught.value.line > 1) == cut  # a cut file stops after the lines it holds


def test_a_string_for_an_alias_list_is_never_read_as_letters(tmp_path):
    rng = random.Random(0)
    line = json.dumps({"id": "Q9", "type": "MISC", "aliases": {"en": "Tea"}}).encode()
    path, number = write_kb(tmp_path, "kb", rng, "entities.jsonl", line)
    with pytest.raises(InputError, match=rf":{number}: .*must be a list of names, got a string"):
        load_kb(str(tmp_path / "kb"))


def test_a_repeated_entity_line_is_a_warning_and_an_inventory_allows_its_names(tmp_path, caplog):
    kb = tmp_path / "kb"
    kb.mkdir()
    same = json.dumps(GOOD_ENTITIES[0])
    (kb / "entities.jsonl").write_text("\n".join([same, *map(json.dumps, GOOD_ENTITIES[1:]), same]))
    (kb / "triples.jsonl").write_text(json.dumps({"subject": "Q1", "relation": "P108", "object": "Q3"}))
    with pytest.raises(InputError, match=r"triples.jsonl:1: relation 'P108' is not in the KB's"):
        load_kb(str(kb))
    (kb / "relations.json").write_text('{"relations": ["NA", "P108"]}')
    assert load_kb(str(kb)).relation_index() == {("Q1", "Q3"): ("P108",)}
    assert "entities.jsonl:4: entity Q1 repeats line 1" in caplog.text
    (kb / "relations.json").unlink()
    # A source KB's own properties are allowed and read through the map.
    (kb / "relation_map.json").write_text('{"P108": [{"kbp37": "per:employee_of"}]}')
    assert load_kb(str(kb)).relations == ("per:employee_of",)
    (kb / "relation_map.json").unlink()
    (kb / "relations.json").write_text('{"relations": "P108"}')
    with pytest.raises(InputError, match=r"relations.json:1: expected"):
        load_kb(str(kb))


def test_a_lone_surrogate_in_a_jsonl_kb_is_an_error_naming_its_line(tmp_path):
    """``"\\ud800"`` is valid JSON but no text: the index builder failed without a file or line."""
    rng = random.Random(0)
    line = json.dumps({"id": "Q9", "type": "MISC", "aliases": {"en": ["Te\ud800a"]}}).encode()
    path, number = write_kb(tmp_path, "kb", rng, "entities.jsonl", line)
    message = rf"{re.escape(path)}:{number}: an alias of Q9 \(\"en\"\) holds a lone surrogate"
    with pytest.raises(InputError, match=message):
        load_kb(str(tmp_path / "kb"))
    with pytest.raises(InputError, match=message):
        build_index(str(tmp_path / "kb"), str(tmp_path / "i.idx"), [])
