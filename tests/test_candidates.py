"""Candidate pruning: distance, relation schema from names, KB relation maps and labels."""

import json

from relbridge.models.candidates import CandidateConfig, TypeSchema, candidate_pairs

NAMES = ("NA", "per:employee_of", "org:city_of_headquarters", "per:spouse")


def test_schema_from_names_knows_the_subject_type():
    schema = TypeSchema.from_relation_names(NAMES)
    assert schema.admits("PER", "ORG") and schema.admits("ORG", "LOC")
    assert not schema.admits("LOC", "LOC") and not schema.admits("MISC", "PER")
    assert schema.admits("ENT", "LOC") and schema.admits("", "")  # untyped fits any slot


def test_relation_map_refines_object_types(tmp_path):
    path = tmp_path / "relation_map.json"
    path.write_text(json.dumps({
        "P108": [{"kbp37": "per:employee_of", "reverse": False, "subject_type": ["PER"],
                  "object_type": ["ORG"]}],
        "P159": [{"kbp37": "org:city_of_headquarters", "reverse": False, "subject_type": None,
                  "object_type": None}],
        "P26": [{"kbp37": "per:spouse", "reverse": True, "subject_type": ["PER"],
                 "object_type": ["PER"]}],
        "P1": [{"kbp37": None}],
    }))  # fmt: skip
    schema = TypeSchema.from_relation_names(NAMES).refine(TypeSchema.from_relation_map(str(path)))
    assert schema.signatures["per:employee_of"] == {("PER", "ORG")}
    assert schema.signatures["org:city_of_headquarters"] == {("ORG", "")}
    assert schema.signatures["per:spouse"] == {("PER", "PER")}
    assert schema.admits("PER", "ORG") and schema.admits("PER", "PER") and schema.admits("ORG", "LOC")
    assert not schema.admits("PER", "LOC")


def test_candidates_respect_distance_and_types():
    schema = TypeSchema.from_examples([("per:employee_of", "PER", "ORG")])
    mentions = [(0, 2, "PER"), (3, 4, "ORG"), (5, 6, "LOC"), (40, 41, "ORG")]
    pairs = candidate_pairs(mentions, schema, CandidateConfig(max_distance=30))
    assert pairs == [((0, 2, "PER"), (3, 4, "ORG"))]  # LOC fits no slot; 40 is too far
    everything = candidate_pairs(mentions, schema, CandidateConfig(max_distance=100, use_types=False))
    assert len(everything) == 6


def test_a_pair_is_kept_when_only_its_reverse_fits():
    schema = TypeSchema.from_examples([("per:employee_of", "PER", "ORG")])
    assert candidate_pairs([(0, 1, "ORG"), (2, 3, "PER")], schema) == [((0, 1, "ORG"), (2, 3, "PER"))]


def test_empty_schema_admits_everything():
    assert TypeSchema().admits("LOC", "LOC")
    assert len(candidate_pairs([(0, 1, "LOC"), (2, 3, "LOC")], TypeSchema())) == 1


def test_kb_schema_refines_the_names_with_a_kb_directory_s_relation_map(tmp_path):
    from relbridge.models.extract import kb_schema

    names = ("NA", "per:employee_of")
    assert kb_schema(None, names).signatures == {"per:employee_of": {("PER", "")}}
    (tmp_path / "relation_map.json").write_text(json.dumps(
        {"P108": [{"kbp37": "per:employee_of", "subject_type": ["PER"], "object_type": ["ORG"]}]}
    ))  # fmt: skip
    assert kb_schema(str(tmp_path), names).signatures == {"per:employee_of": {("PER", "ORG")}}
    assert kb_schema(str(tmp_path / "missing"), names).signatures == kb_schema(None, names).signatures


def test_near_pairs_are_found_without_visiting_all_pairs():
    """The same pairs, in the same order, as checking every pair (two overlapping spans never
    pair)."""
    import itertools
    import random

    from relbridge.models.candidates import distance

    rng = random.Random(3)
    schema = TypeSchema.from_relation_names(["NA", "per:employee_of", "org:founded_by"])
    for _ in range(200):
        mentions = []
        for _ in range(rng.randrange(0, 12)):
            start = rng.randrange(0, 60)
            mentions.append((start, start + rng.randrange(1, 4), rng.choice(["PER", "ORG", "LOC"])))
        cfg = CandidateConfig(max_distance=rng.choice([0, 3, 10, 30]))
        every = [
            (a, b) for a, b in itertools.combinations(sorted(mentions), 2)
            if distance(a, b) <= cfg.max_distance
            and not b[0] < a[1]
            and (schema.admits(a[2], b[2]) or schema.admits(b[2], a[2]))
        ]  # fmt: skip
        assert candidate_pairs(mentions, schema, cfg) == every


def test_overlapping_readings_of_one_name_never_pair():
    readings = [(0, 1, ""), (0, 2, ""), (1, 2, ""), (3, 4, "")]  # North | North Carolina | Carolina
    pairs = candidate_pairs(readings, TypeSchema(), CandidateConfig())
    assert pairs == [((0, 1, ""), (1, 2, "")), ((0, 1, ""), (3, 4, "")), ((0, 2, ""), (3, 4, "")),
                     ((1, 2, ""), (3, 4, ""))]  # fmt: skip
