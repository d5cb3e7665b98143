"""Label projection rules on tiny hand-aligned pairs (no model needed)."""

import dataclasses

import pytest

from relbridge.data_specs.schema import Mention, RelationInstance
from relbridge.projection.link_rules import (
    FunctionWords,
    disputed_links,
    fallback_links,
    is_punctuation,
    verbatim_occurrences,
)
from relbridge.projection.projection import (
    ProjectConfig,
    ProjectionCounts,
    project_mentions,
    project_pair,
    project_relations,
    project_span,
)
from relbridge.projection.span_search import (
    best_f1_span,
    bracketed_span,
    joining_words,
    sole_translations,
    trim_function_words,
    trim_span,
)

# Rules that would otherwise hide the one under test.
NO_VERBATIM = ProjectConfig(verbatim_spans=False, verbatim_anchors=False, spelling_anchor_ratio=0.0)


def diagonal(n, offset=0):
    return [(i, i + offset) for i in range(n)]


def span_of(result):
    return None if result is None else (result.start, result.end)


def test_one_to_one_span():
    src = ["the", "president", "of", "Acme", "spoke"]
    tgt = ["der", "Präsident", "von", "Acme", "sprach"]
    got = project_span((1, 4), diagonal(5), src, tgt, NO_VERBATIM)
    assert span_of(got) == (1, 4)
    assert got.confidence == pytest.approx(1.0)
    assert got.rule == "search"


def test_one_to_many_and_many_to_one():
    # one source word -> two target words; two source words -> one target word
    src = ["the", "Nobel", "Prize", "went", "to", "Marie", "Curie"]
    tgt = ["der", "Nobel", "-", "Preis", "ging", "an", "MarieCurie"]
    links = [(0, 0), (1, 1), (2, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 6)]
    assert span_of(project_span((1, 3), links, src, tgt, NO_VERBATIM)) == (1, 4)
    assert span_of(project_span((5, 7), links, src, tgt, NO_VERBATIM)) == (6, 7)


def test_a_one_word_name_takes_every_target_word_linked_to_it():
    # UK -> Reino Unido: [Reino] and [Reino Unido] both score F1 = 1; the span
    # that holds more of the words linked to the name wins the tie.
    src = ["within", "UK", "figures"]
    tgt = ["las", "cifras", "del", "Reino", "Unido"]
    links = [(0, 2), (1, 3), (1, 4), (2, 1)]
    assert span_of(project_span((1, 2), links, src, tgt, NO_VERBATIM)) == (3, 5)
    # an unlinked neighbour still does not join: ties then go to the shorter span
    assert span_of(project_span((1, 2), [(1, 3)], src, tgt, NO_VERBATIM)) == (3, 4)


def test_stray_link_far_away_is_ignored():
    # 'Smith' is also (wrongly) linked to the last word: the span stays contiguous
    src = ["John", "Smith", "met", "the", "mayor", "in", "town"]
    tgt = ["John", "Smith", "traf", "den", "Bürgermeister", "in", "der", "Stadt"]
    links = [(0, 0), (1, 1), (1, 7), (2, 2), (3, 3), (4, 4), (5, 5), (6, 7)]
    got = project_span((0, 2), links, src, tgt, NO_VERBATIM)
    assert span_of(got) == (0, 2)
    assert got.confidence < 1.0
    first_last = dataclasses.replace(NO_VERBATIM, span_search=False)
    assert span_of(project_span((0, 2), links, src, tgt, first_last)) == (0, 8)


def test_partial_links_cover_the_linked_part():
    # 'the' in the source span is unlinked; the name still projects
    src = ["the", "United", "Nations", "met"]
    tgt = ["Vereinte", "Nationen", "tagten"]
    links = [(1, 0), (2, 1), (3, 2)]
    assert span_of(project_span((0, 3), links, src, tgt, NO_VERBATIM)) == (0, 2)


def test_punctuation_at_edges_is_trimmed():
    src = ["he", "met", "Acme", "Corp", ",", "then", "left"]
    tgt = ["er", "traf", "«", "Acme", "Corp", "»", ",", "dann"]
    links = [(0, 0), (1, 1), (2, 2), (2, 3), (3, 4), (3, 5), (4, 6), (5, 7)]
    assert span_of(project_span((2, 4), links, src, tgt, NO_VERBATIM)) == (3, 5)
    # the f1 search never ends a span on punctuation; the sum search does, then trims
    summed = dataclasses.replace(NO_VERBATIM, span_objective="sum")
    assert span_of(project_span((2, 4), links, src, tgt, summed)) == (3, 5)
    untrimmed = dataclasses.replace(summed, trim_punctuation=False)
    assert span_of(project_span((2, 4), links, src, tgt, untrimmed)) == (2, 6)
    assert trim_span((0, 3), ["-", "x", ","]) == (1, 2)
    assert trim_span((0, 2), ["-", ","]) is None
    # a period that ends the source name too is kept
    assert trim_span((0, 3), ["Metro", "Inc", "."], ["Metro", "Inc", "."]) == (0, 3)
    assert trim_span((0, 3), ["Metro", "Inc", ","], ["Metro", "Inc", "."]) == (0, 2)
    # ... and carried when the aligner left it out
    assert trim_span((0, 2), ["Metro", "Inc", "."], ["Metro", "Inc", "."]) == (0, 3)
    assert trim_span((1, 2), ["(", "CEN", ")"], ["(", "CEN", ")"]) == (0, 3)
    assert trim_span((0, 2), ["Metro", "Inc", "."], ["Metro", "Inc"]) == (0, 2)
    got = project_span((0, 3), [], ["Metro", "Inc", "."], ["Metro", "Inc", "."], ProjectConfig())
    assert (span_of(got), got.rule) == ((0, 3), "verbatim")


def test_unlinked_word_inside_a_name_is_bridged():
    # 'de' is unaligned but sits between two linked words of the name
    src = ["the", "University", "of", "Paris"]
    tgt = ["l'", "Université", "de", "Paris"]
    links = [(0, 0), (1, 1), (3, 3)]
    assert span_of(project_span((1, 4), links, src, tgt, NO_VERBATIM)) == (1, 4)
    no_bridge = dataclasses.replace(NO_VERBATIM, max_gap=0)
    assert span_of(project_span((1, 4), links, src, tgt, no_bridge)) in {(1, 2), (3, 4)}


def test_f1_search_bridges_function_words_between_reordered_name_parts():
    # 'European Union 's competition policy' -> 'política de competencia de la Unión Europea':
    # 'de' is unlinked, 'la' linked to 'the'; the sum objective keeps the larger
    # half of the name, f1 covers the whole name
    src = ["the", "European", "Union", "'s", "competition", "policy", "matters"]
    tgt = ["la", "política", "de", "competencia", "de", "la", "Unión", "Europea", "importa"]
    links = [(0, 0), (0, 5), (1, 7), (2, 6), (4, 3), (5, 1), (6, 8)]
    assert span_of(project_span((1, 6), links, src, tgt, NO_VERBATIM)) == (1, 8)
    summed = dataclasses.replace(NO_VERBATIM, span_objective="sum")
    assert span_of(project_span((1, 6), links, src, tgt, summed)) == (6, 8)
    # a span is not stretched over a word linked elsewhere when it covers nothing new
    assert best_f1_span((1, 3), links, src, tgt, NO_VERBATIM) == (6, 8)


def test_fallback_links_only_touch_unlinked_words():
    # 'Lebanon' has no argmax link; itermax links it to 'Libanon' (and 'left' to it too)
    src = ["she", "left", "Lebanon", "early"]
    tgt = ["sie", "verließ", "früh", "Libanon"]
    links = [(0, 0), (1, 1), (3, 2)]
    extra = [(0, 0), (1, 1), (1, 2), (1, 3), (2, 3), (3, 2)]
    # (1, 2) joins two words that both have main links: never borrowed
    assert fallback_links((1, 3), links, extra) == {(1, 3), (2, 3)}
    assert fallback_links((2, 3), links, extra) == {(2, 3)}
    assert project_span((2, 3), links, src, tgt, NO_VERBATIM) is None
    got = project_span((2, 3), links, src, tgt, NO_VERBATIM, extra_links=extra)
    assert span_of(got) == (3, 4)
    off = dataclasses.replace(NO_VERBATIM, fallback_method="")
    assert project_span((2, 3), links, src, tgt, off, extra_links=extra) is None
    mentions = [Mention(0, 1, "SHE"), Mention(2, 3, "LB")]
    result = project_pair(src, tgt, links, mentions, [], NO_VERBATIM, extra)
    assert [(m.start, m.end) for m in result.tgt_mentions] == [(0, 1), (3, 4)]


def test_fallback_links_spill_no_function_word_onto_a_linked_word():
    # RELX de 20411: 'his' -> 'seine' (argmax); itermax adds 'er' beside it
    fw = FunctionWords(frozenset({"his", "he"}), frozenset({"er", "seine", "der"}))
    src = ["In", "Berlin", "documented", "his", "experiments"]
    tgt = ["In", "Berlin", "dokumentierte", "er", "seine", "Experimente"]
    links = [(0, 0), (1, 1), (2, 2), (3, 4), (4, 5)]
    extra = [*links, (3, 3)]
    assert fallback_links((3, 4), links, extra) == {(3, 3)}  # without the tokens: borrowed
    assert fallback_links((3, 4), links, extra, src, tgt, fw) == set()
    got = project_span((3, 4), links, src, tgt, NO_VERBATIM, extra_links=extra, function=fw)
    assert span_of(got) == (4, 5)
    # RELX de 18809: 'Defence' -> 'Verteidigung'; itermax adds the sentence's first 'Der'
    src = ["Italian", "Defence", "Minister", "Parisi"]
    tgt = ["Der", "italienische", "Verteidigung", "sminister", "Parisi"]
    links = [(0, 1), (1, 2), (2, 3), (3, 4)]
    extra = [*links, (1, 0)]
    assert fallback_links((1, 2), links, extra, src, tgt, fw) == set()
    got = project_span((1, 2), links, src, tgt, NO_VERBATIM, extra_links=extra, function=fw)
    assert span_of(got) == (2, 3)
    # content words still borrow, and a capitalised stop-list word inside a sentence is a name
    fw_es = FunctionWords(frozenset({"the"}), frozenset({"estados", "los"}))
    src = ["in", "the", "United", "States"]
    tgt = ["en", "los", "Estados", "Unidos"]
    links = [(0, 0), (1, 1), (2, 3), (3, 3)]
    extra = [*links, (3, 2)]
    assert fallback_links((2, 4), links, extra, src, tgt, fw_es) == {(3, 2)}
    got = project_span((2, 4), links, src, tgt, NO_VERBATIM, extra_links=extra, function=fw_es)
    assert span_of(got) == (2, 4)
    # the sentence's first word is the first that is not punctuation
    src = ["Italian", "Defence", "Minister", "Parisi"]
    tgt = ['"', "Der", "italienische", "Verteidigung", "sminister", "Parisi"]
    links = [(0, 2), (1, 3), (2, 4), (3, 5)]
    assert fallback_links((1, 2), links, [*links, (1, 1)], src, tgt, fw) == set()
    assert fallback_links((1, 2), links, [*links, (1, 1)], src) == {(1, 1)}  # no tokens: no test
    # an unlinked source word borrows every extra link, function word or not
    assert fallback_links((1, 2), [(0, 0)], [(1, 1)], src, tgt, fw_es) == {(1, 1)}
    # a function word between the name's other linked words is part of it (Europarl de-en)
    fw_en = FunctionWords(frozenset({"der"}), frozenset({"on", "the"}))
    src, tgt = ["der", "Haushaltsausschuß", "tagt"], ["the", "Committee", "on", "Budgets", "meets"]
    links = [(0, 0), (1, 1), (2, 4)]
    extra = [*links, (1, 0), (1, 2), (1, 3)]
    assert fallback_links((1, 2), links, extra, src, tgt, fw_en) == {(1, 2), (1, 3)}
    got = project_span((1, 2), links, src, tgt, NO_VERBATIM, extra_links=extra, function=fw_en)
    assert span_of(got) == (1, 4)


def test_a_main_link_the_second_links_give_to_an_unaligned_word_is_dropped():
    # Europarl en-de 602: the merged links give 'Party' to the verb 'bedanken',
    # which the neural links give to 'thank' (unaligned in the merged links)
    src = ["to", "thank", "the", "Liberal", "Group", "Party", "."]
    tgt = ["der", "Liberalen", "Fraktion", "bedanken", "."]
    links = [(2, 0), (3, 1), (4, 2), (5, 3), (6, 4)]
    extra = [(2, 0), (3, 1), (4, 2), (1, 3), (6, 4)]
    assert disputed_links((3, 6), links, extra) == {(5, 3)}
    got = project_span((3, 6), links, src, tgt, NO_VERBATIM, extra_links=extra)
    assert span_of(got) == (1, 3)
    off = dataclasses.replace(NO_VERBATIM, drop_disputed=False)
    assert span_of(project_span((3, 6), links, src, tgt, off, extra_links=extra)) == (1, 4)
    # not when the outside word has a main link of its own: then the second set is the odd one
    assert disputed_links((3, 6), [*links, (1, 0)], extra) == set()
    # nor when the second set also links the name to the word
    assert disputed_links((3, 6), links, [*extra, (5, 3)]) == set()


def test_a_function_word_joining_one_words_translation_counts_as_part_of_it():
    # Europarl de-es 429: 'Kohäsionsfonds' -> 'Fondo' and 'cohesión'; the unlinked
    # 'de' between them made 'Fondo' alone look purer than 'Fondo de cohesión'
    src = ["aus", "dem", "Kohäsionsfonds", "und"]
    tgt = ["del", "Fondo", "de", "cohesión", "y"]
    links = [(1, 0), (2, 1), (2, 3), (3, 4)]
    es = FunctionWords(frozenset({"dem", "und"}), frozenset({"de", "del", "y"}))
    assert joining_words((2, 3), links, tgt, es.tgt) == {2}
    assert span_of(project_span((2, 3), links, src, tgt, NO_VERBATIM, function=es)) == (1, 4)
    assert span_of(project_span((2, 3), links, src, tgt, NO_VERBATIM)) == (1, 2)  # no stop list
    # only unlinked function words, and only between two words of the same source word
    assert joining_words((2, 3), [*links, (0, 2)], tgt, es.tgt) == set()
    assert joining_words((2, 4), [(2, 1), (3, 3)], tgt, es.tgt) == set()
    # a content word or punctuation in the gap joins nothing (Europarl es-en 61)
    tgt = ["Conference", "of", "Presidents", ",", "that", "Conference"]
    assert joining_words((0, 1), [(0, 0), (0, 5)], tgt, frozenset({"of", "that"})) == set()


def test_a_bracketed_name_takes_the_linked_brackets_content():
    # RELX fr 17778: 'Navy' linked to 'naval' outside the brackets, 'Marine' unlinked
    src = ["for", "the", "Marina", "Militare", "(", "Italian", "Navy", ")", "at", "the", "shipyard"]
    tgt = [
        "pour",
        "la",
        "Marina",
        "Militare",
        "(",
        "Marine",
        "italienne",
        ")",
        "au",
        "chantier",
        "naval",
    ]
    links = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 6), (6, 10), (7, 7), (8, 8), (10, 9)]
    assert span_of(project_span((5, 7), links, src, tgt, NO_VERBATIM)) == (5, 7)
    off = dataclasses.replace(NO_VERBATIM, bracket_spans=False)
    assert span_of(project_span((5, 7), links, src, tgt, off)) == (6, 7)
    # only a name that fills the brackets, and only when one of its links lands inside
    assert bracketed_span((6, 7), links, src, tgt) is None
    assert bracketed_span((5, 7), [(4, 4), (5, 9), (6, 10), (7, 7)], src, tgt) is None
    # the brackets must be linked to brackets of the same kind
    assert bracketed_span((5, 7), [(4, 4), (5, 6), (7, 8)], src, tgt) is None
    # a blocked target (a conflict repair) falls back to the span search
    blocked = [False] * 5 + [True] + [False] * 5
    got = project_span((5, 7), links, src, tgt, NO_VERBATIM, blocked)
    assert span_of(got) == (6, 7) and got.rule == "search"


def test_spelling_anchor_for_an_unlinked_adapted_name():
    src = ["she", "left", "Lebanon"]
    tgt = ["sie", "verließ", "den", "Libanon"]
    links = [(0, 0), (1, 1)]
    assert project_span((2, 3), links, src, tgt, NO_VERBATIM) is None  # rule off
    default = ProjectConfig(verbatim_spans=False, verbatim_anchors=False)
    assert span_of(project_span((2, 3), links, src, tgt, default)) == (3, 4)  # on by default
    assert project_span((2, 3), [], src, tgt, default) is None  # not for an unaligned pair
    spelled = dataclasses.replace(NO_VERBATIM, spelling_anchor_ratio=0.7)
    assert span_of(project_span((2, 3), links, src, tgt, spelled)) == (3, 4)
    # a word linked to a source word outside the span that spells it as well is not taken
    src_twice = ["she", "left", "Lebanon", "Lebanon"]
    assert project_span((2, 3), [*links, (3, 3)], src_twice, tgt, spelled) is None
    # but one spelled less alike is (RELX de 18392: 'Lebanese' took 'Libanon')
    assert span_of(project_span((2, 3), [*links, (0, 3)], src, tgt, spelled)) == (3, 4)
    src_adj = ["the", "Lebanese", "left", "Lebanon"]
    tgt_adj = ["die", "Libanesen", "verließen", "Libanon"]
    adj_links = [(0, 0), (1, 3), (2, 2)]
    assert span_of(project_span((3, 4), adj_links, src_adj, tgt_adj, spelled)) == (3, 4)
    strict = dataclasses.replace(NO_VERBATIM, spelling_anchor_ratio=0.9)
    assert project_span((2, 3), links, src, tgt, strict) is None


def test_a_name_linked_to_its_own_spelling_drops_its_other_links():
    # RELX fr 18159: "Pakistani" linked to "chaîne" and "pakistanaise", which
    # "station" also claims; by purity alone "chaîne" would win
    src = ["a", "Pakistani", "television", "station"]
    tgt = ["une", "chaîne", "de", "télévision", "pakistanaise"]
    links = [(0, 0), (1, 1), (1, 4), (2, 3), (3, 4)]
    spelled = dataclasses.replace(NO_VERBATIM, spelling_anchor_ratio=0.8)
    assert span_of(project_span((1, 2), links, src, tgt, NO_VERBATIM)) == (1, 2)  # rule off
    assert span_of(project_span((1, 2), links, src, tgt, spelled)) == (4, 5)
    # links none of which is spelled alike are all kept (Germany -> Bundesrepublik Deutschland)
    src, tgt = ["in", "Germany"], ["in", "der", "Bundesrepublik", "Deutschland"]
    links = [(0, 0), (1, 2), (1, 3)]
    assert span_of(project_span((1, 2), links, src, tgt, spelled)) == (2, 4)
    # nor does it touch a lowercase (not name-like) word
    src, tgt = ["the", "pakistani", "station"], ["la", "chaîne", "pakistanaise"]
    links = [(0, 0), (1, 1), (1, 2), (2, 1)]
    got = project_span((1, 2), links, src, tgt, spelled)
    assert span_of(got) == span_of(project_span((1, 2), links, src, tgt, NO_VERBATIM))


def test_verbatim_span_overrides_wrong_links():
    src = ["yesterday", "Angela", "Merkel", "spoke"]
    tgt = ["gestern", "sprach", "Angela", "Merkel"]
    links = [(0, 0), (1, 1), (2, 1), (3, 1)]  # the name wrongly linked to 'sprach'
    got = project_span((1, 3), links, src, tgt, ProjectConfig())
    assert span_of(got) == (2, 4)
    assert got.rule == "verbatim" and got.confidence == 1.0
    assert span_of(project_span((1, 3), links, src, tgt, NO_VERBATIM)) == (1, 2)


def test_verbatim_picks_the_occurrence_nearest_the_links():
    src = ["Paris", "and", "Paris"]
    tgt = ["Paris", "und", "Paris"]
    assert span_of(project_span((2, 3), [(2, 2)], src, tgt)) == (2, 3)
    assert span_of(project_span((0, 1), [(0, 0)], src, tgt)) == (0, 1)


def test_repeated_name_takes_the_occurrence_of_the_same_rank():
    # 'ICI' occurs three times on both sides; the links of the second one point
    # at the third target occurrence, but rank agreement wins
    src = ["for", "ICI", ",", "ICI", "said", "ICI", "chief"]
    tgt = ["für", "ICI", ",", "von", "ICI", "sagte", "ICI", "Chef"]
    got = project_span((3, 4), [(3, 6)], src, tgt)
    assert span_of(got) == (4, 5)
    # different counts: nearest to the links
    got = project_span((3, 4), [(3, 6)], src[:5], tgt)
    assert span_of(got) == (6, 7)


def test_a_name_translated_in_one_of_its_occurrences_follows_its_links():
    # 'India' twice in the source, once translated ('Inde') in the target
    src = ["Times", "of", "India", "and", "India", "Today"]
    tgt = ["Times", "de", "l'", "Inde", "et", "India", "Today"]
    links = [(0, 0), (1, 1), (2, 3), (3, 4), (4, 5), (5, 6)]
    got = project_span((2, 3), links, src, tgt)
    assert span_of(got) == (3, 4) and got.rule != "verbatim"
    assert span_of(project_span((4, 5), links, src, tgt)) == (5, 6)  # the copy keeps its copy
    # as many copies as in the source: rank agreement, whatever the links say
    assert project_span((2, 3), links, src, tgt[:3] + ["India"] + tgt[4:]).rule == "verbatim"


def test_verbatim_ignores_tokenisation_and_case_but_not_common_words():
    assert verbatim_occurrences(["Al-Qaida"], ["die", "Al", "-", "Qaida"], 10) == [(1, 4)]
    assert verbatim_occurrences(["1999"], ["im", "Jahr", "1999", "."], 10) == [(2, 3)]
    assert verbatim_occurrences(["NATO"], ["la", "Nato"], 10) == [(1, 2)]
    assert verbatim_occurrences(["in"], ["in"], 10) == []  # not a name


def test_hyphen_compound_source_matches_split_target():
    src = ["Coca-Cola", "sells"]
    tgt = ["Coca", "-", "Cola", "verkauft"]
    got = project_span((0, 1), [(0, 0), (1, 3)], src, tgt)
    assert span_of(got) == (0, 3)


def test_verbatim_anchor_repairs_a_misaligned_name_word():
    # 'Schmidt' is linked to 'sagte' instead of itself
    src = ["Minister", "Helmut", "Schmidt", "said"]
    tgt = ["Minister", "Helmut", "Schmidt", "sagte"]
    links = [(0, 0), (1, 1), (2, 3), (3, 3)]
    anchored = dataclasses.replace(ProjectConfig(), verbatim_spans=False)
    assert span_of(project_span((1, 3), links, src, tgt, anchored)) == (1, 3)
    # without anchors the span is wrong: it stops at the last correctly linked
    # word (sum) or runs on to 'sagte' to cover 'Schmidt' (f1)
    summed = dataclasses.replace(NO_VERBATIM, span_objective="sum")
    assert span_of(project_span((1, 3), links, src, tgt, summed)) == (1, 2)
    assert span_of(project_span((1, 3), links, src, tgt, NO_VERBATIM)) == (1, 4)


def test_unaligned_mention_is_dropped_and_counted():
    src = ["Acme", "Corp", "closed"]
    tgt = ["geschlossen"]
    counts = ProjectionCounts()
    out = project_mentions([Mention(0, 2, "Q1")], [(2, 0)], src, tgt, ProjectConfig(), counts)
    assert out == []
    assert counts.mentions_dropped_unaligned == 1 and counts.mentions_projected == 0


def test_low_confidence_is_dropped():
    # the span's only link lands on a word mostly linked elsewhere
    src = ["a", "b", "Xyz", "c"]
    tgt = ["p", "q", "r"]
    links = [(0, 1), (1, 1), (3, 1), (2, 1)]
    counts = ProjectionCounts()
    cfg = ProjectConfig(min_confidence=0.6)
    assert project_mentions([Mention(2, 3, "Q")], links, src, tgt, cfg, counts) == []
    assert counts.mentions_dropped_low_confidence == 1
    kept = project_mentions(
        [Mention(2, 3, "Q")], links, src, tgt, ProjectConfig(min_confidence=0.0)
    )
    assert [(m.start, m.end) for m in kept] == [(1, 2)]
    assert 0.0 <= kept[0].confidence <= 1.0


def test_conflicting_projections_are_repaired_or_dropped():
    # both mentions want target word 1 ('Corp', also linked from 'Beta Inc');
    # mention 1 has the purer evidence, mention 0 is searched again without it
    src = ["Acme", "Corp", "and", "Beta", "Inc"]
    tgt = ["Acme", "Corp", "Beta"]
    links = [(0, 0), (1, 1), (3, 1), (4, 1), (3, 2)]
    mentions = [Mention(0, 2, "A"), Mention(3, 5, "B")]
    cfg = dataclasses.replace(NO_VERBATIM, min_confidence=0.0)
    counts = ProjectionCounts()
    out = project_mentions(mentions, links, src, tgt, cfg, counts)
    spans = {m.source_index: (m.start, m.end) for m in out}
    assert spans == {0: (0, 1), 1: (1, 3)}
    assert counts.mentions_repaired == 1
    dropping = dataclasses.replace(cfg, repair_conflicts=False)
    counts = ProjectionCounts()
    out = project_mentions(mentions, links, src, tgt, dropping, counts)
    assert len(out) == 1 and counts.mentions_dropped_conflict == 1
    keep_both = dataclasses.replace(cfg, resolve_conflicts=False)
    assert len(project_mentions(mentions, links, src, tgt, keep_both)) == 2


def test_nested_and_identical_source_mentions_may_overlap():
    src = ["the", "University", "of", "Paris"]
    tgt = ["l'", "Université", "de", "Paris"]
    links = diagonal(4)
    mentions = [Mention(1, 4, "UNIV"), Mention(3, 4, "PARIS"), Mention(1, 4, "UNIV2")]
    out = project_mentions(mentions, links, src, tgt, NO_VERBATIM)
    assert [(m.start, m.end, m.source_index) for m in out] == [(1, 4, 0), (3, 4, 1), (1, 4, 2)]
    assert out[0].text == "Université de Paris" and out[0].kb_id == "UNIV"


def test_relations_keep_roles_and_need_both_arguments():
    rels = [
        RelationInstance(0, 1, "org:founded_by"),
        RelationInstance(1, 0, "per:employee_of"),
        RelationInstance(0, 2, "NA", distant=False),
    ]
    counts = ProjectionCounts()
    out = project_relations(rels, {0: 1, 1: 0}, counts)
    assert (out[0].tgt_subject, out[0].tgt_object, out[0].projected) == (1, 0, True)
    assert (out[1].tgt_subject, out[1].tgt_object, out[1].projected) == (0, 1, True)
    assert (out[2].tgt_subject, out[2].tgt_object, out[2].projected) == (None, None, False)
    assert out[2].distant is False and out[0].label == "org:founded_by"
    assert (counts.relations, counts.relations_projected, counts.relations_dropped) == (3, 2, 1)


def test_project_pair_end_to_end_and_unaligned_pair():
    src = ["Barack", "Obama", "visited", "the", "University", "of", "Paris", "."]
    tgt = ["Barack", "Obama", "besuchte", "die", "Universität", "von", "Paris", "."]
    mentions = [Mention(0, 2, "Q76", "PER"), Mention(4, 7, "Q209842", "ORG")]
    rels = [RelationInstance(0, 1, "per:visited")]
    result = project_pair(src, tgt, diagonal(8), mentions, rels, ProjectConfig())
    assert [(m.start, m.end, m.type) for m in result.tgt_mentions] == [(0, 2, "PER"), (4, 7, "ORG")]
    assert result.relations[0].projected and (
        result.relations[0].tgt_subject,
        result.relations[0].tgt_object,
    ) == (0, 1)
    assert result.counts.mentions_projected == 2 and result.counts.mentions_verbatim == 1
    # no links: only the verbatim name projects, so the relation does not
    tgt = ["Barack", "Obama", "besuchte", "die", "Pariser", "Universität", "."]
    result = project_pair(src, tgt, None, mentions, rels, ProjectConfig())
    assert [m.source_index for m in result.tgt_mentions] == [0]
    assert not result.relations[0].projected
    assert result.counts.relations_dropped == 1


def test_links_out_of_range_are_ignored():
    got = project_span((0, 1), [(0, 0), (0, 9)], ["x"], ["y"], NO_VERBATIM)
    assert span_of(got) == (0, 1)


def test_config_validation_and_pickling():
    import pickle

    with pytest.raises(ValueError):
        ProjectConfig(min_confidence=1.5)
    with pytest.raises(ValueError):
        ProjectConfig(max_gap=-1)
    with pytest.raises(ValueError):
        ProjectConfig(gap_penalty=-0.1)
    with pytest.raises(ValueError):
        ProjectConfig(max_span_words=0)
    with pytest.raises(ValueError):
        ProjectConfig(span_objective="max")
    with pytest.raises(ValueError):
        ProjectConfig(unlinked_credit=1.5)
    with pytest.raises(ValueError):
        ProjectConfig(spelling_anchor_ratio=-0.1)
    cfg = ProjectConfig(min_confidence=0.4)
    assert pickle.loads(pickle.dumps(cfg)) == cfg and hash(cfg) == hash(
        ProjectConfig(min_confidence=0.4)
    )


def test_punctuation_classes():
    assert (
        is_punctuation(",") and is_punctuation("-") and is_punctuation("«") and is_punctuation("—")
    )
    assert not is_punctuation("a-b") and not is_punctuation("1")


# ----------------------------------------------------------------------------
# Rule 6: function words at the span's edges
# ----------------------------------------------------------------------------

EN_DE = FunctionWords.for_pair("en", "de")
EN_ES = FunctionWords.for_pair("en", "es")


def test_function_words_linked_to_a_name_are_trimmed_from_its_projection():
    src = ["he", "lives", "in", "the", "Federal", "Republic", "of", "Germany"]
    tgt = ["er", "lebt", "in", "der", "Bundesrepublik", "Deutschland"]
    links = [
        (0, 0),
        (1, 1),
        (4, 2),
        (4, 4),
        (5, 3),
        (5, 4),
        (7, 5),
    ]  # 'in der' linked into the name
    assert span_of(project_span((4, 8), links, src, tgt, NO_VERBATIM)) == (2, 6)  # no languages
    got = project_span((4, 8), links, src, tgt, NO_VERBATIM, function=EN_DE)
    assert span_of(got) == (4, 6)
    off = dataclasses.replace(NO_VERBATIM, trim_function_words=False)
    assert span_of(project_span((4, 8), links, src, tgt, off, function=EN_DE)) == (2, 6)


def test_a_projection_never_crosses_a_bracket_the_source_name_lacks():
    src = ["the", "Marina", "Militare", "(", "Italian", "Navy", ")", "at", "the", "shipyard"]
    tgt = ["la", "Marina", "Militare", "(", "Marine", "italienne", ")", "au", "chantier", "naval"]
    links = [(1, 1), (2, 2), (4, 5), (5, 9), (9, 8)]  # 'Navy' misaligned to 'naval'
    assert best_f1_span((4, 6), links, src, tgt, NO_VERBATIM) == (5, 6)
    # a name that holds a bracket may span one
    src = ["Partido", "Popular", "(", "PP", ")"]
    links = [(0, 0), (1, 1), (3, 3), (4, 4)]
    tgt = ["Partido", "Popular", "(", "PP", ")"]
    assert best_f1_span((0, 4), links, src, tgt, NO_VERBATIM) == (0, 4)


def trimmed(tgt, src, words=EN_DE):
    """The span rule 6 leaves of the whole of ``tgt``, projected from name ``src``."""
    return trim_function_words((0, len(tgt)), tgt, src, words)


def test_trailing_function_word_is_trimmed():
    court = ["European", "Court", "of", "Justice"]
    assert trimmed(["Europäische", "Gerichtshof", "in"], court) == (0, 2)
    assert trimmed(["del", "Grupo", "Liberal"], ["Liberal", "Group"], EN_ES) == (1, 3)


def test_an_elided_article_split_from_its_apostrophe_is_still_a_function_word():
    # Italian 'l'Unione' tokenised as 'l' ''' 'Unione'; the stop list spells it "l'"
    it = FunctionWords(frozenset({"the"}), frozenset({"l'", "dell'"}))
    src, tgt = ["European", "Union", "rules"], ["l", "'", "Unione", "europea", "regole"]
    links = [(0, 0), (0, 3), (1, 2), (2, 4)]  # 'European' wrongly linked to 'l' too
    got = project_span((0, 2), links, src, tgt, NO_VERBATIM, function=it)
    assert span_of(got) == (2, 4)
    without = FunctionWords(frozenset({"the"}), frozenset({"dell'"}))
    assert span_of(project_span((0, 2), links, src, tgt, NO_VERBATIM, function=without)) == (0, 4)


def test_function_word_trimming_keeps_what_belongs_to_the_name():
    whole = (0, 2)
    assert "estados" in EN_ES.tgt  # spaCy's Spanish list holds it ...
    # ... but capitalised words stay (Estados Unidos)
    assert trimmed(["Estados", "Unidos"], ["United", "States"], EN_ES) == whole
    # words of the name itself stay (von Wogau), though 'von' is a German function word
    assert trimmed(["von", "Wogau"], ["von", "Wogau"]) == whole
    # a name that ends with a function word in the source keeps the target's ...
    assert trimmed(["Universität", "von"], ["University", "of"]) == whole
    # ... but a leading article licenses none: annotations mostly leave it out
    # (Europarl es 'Países Bajos', RELX fr 'Pays-Bas' for 'die Niederlande')
    assert trimmed(["den", "Niederlanden"], ["the", "Netherlands"]) == (1, 2)
    # numbers are content: a number at the source edge, or a number word in the target
    assert trimmed(["sechsten", "Berichts"], ["sixth", "report"]) == whole
    assert "cinco" in EN_ES.tgt
    assert trimmed(["cinco", "Estrellas"], ["Fivestar", "Hotels"], EN_ES) == whole
    # at least one word is left
    assert trimmed(["der"], ["Committee"]) == (0, 1)


def test_a_stop_listed_word_that_alone_translates_a_name_word_stays():
    # spaCy's Spanish list holds 'acuerdo' and 'estados'; here each is the only
    # target word linked to a source content word of the name, so it translates it
    src = ["the", "Council", "Decision", "of", "June"]
    tgt = ["el", "acuerdo", "del", "Consejo", "de", "junio"]
    links = [(0, 0), (1, 3), (2, 1), (3, 4), (4, 5)]
    assert "acuerdo" in EN_ES.tgt
    assert sole_translations((1, 5), (1, 6), links, src, EN_ES.src) == {1, 3, 5}
    got = project_span((1, 5), links, src, tgt, NO_VERBATIM, function=EN_ES)
    assert span_of(got) == (1, 6)
    # ... but beside a capitalised word it acts as an article: 'Member' wrongly
    # linked to 'nuestros' alone does not keep it in front of 'Estados'
    src, tgt = ["Member", "States"], ["nuestros", "Estados"]
    assert sole_translations((0, 2), (0, 2), [(0, 0), (1, 1)], src, EN_ES.src) == {0, 1}
    assert span_of(
        project_span((0, 2), [(0, 0), (1, 1)], src, tgt, NO_VERBATIM, function=EN_ES)
    ) == (1, 2)
    # an article linked to a name word that has another link is still cut ('der' + 'Rat')
    assert sole_translations((0, 1), (0, 2), [(0, 0), (0, 1)], ["Council"], EN_DE.src) == set()
    # a function word or a split-off "s" (from "'s") protects nothing
    src = ["Wogau", "'", "s", "report"]
    assert sole_translations((0, 4), (0, 3), [(2, 0), (3, 1), (0, 2)], src, EN_DE.src) == {1, 2}


def test_unknown_language_switches_the_rule_off(caplog):
    unknown = FunctionWords.for_pair("en", "zz-only-here")  # a code no other test uses: cached
    assert unknown.tgt == frozenset()
    assert "zz-only-here" in caplog.text  # the warning says the rule is off
    assert trim_function_words((0, 2), ["der", "Rat"], ["Council"], unknown) == (0, 2)


def test_project_pair_trims_function_words_for_the_pair_languages():
    src = ["in", "the", "European", "Parliament", "today"]
    tgt = ["heute", "im", "Europäischen", "Parlament"]
    links = [(2, 1), (2, 2), (3, 3), (4, 0)]  # "im" linked only into the name
    mentions = [Mention(2, 4, "EP", "ORG")]

    def projected(**langs):
        result = project_pair(src, tgt, links, mentions, [], NO_VERBATIM, **langs)
        spans = [(m.start, m.end) for m in result.tgt_mentions]
        return spans, result.counts.mentions_function_words_trimmed

    assert projected() == ([(1, 4)], 0)
    assert projected(src_lang="en", tgt_lang="de") == ([(2, 4)], 1)  # counted for stats.json


def test_a_name_said_with_an_adjective_in_the_target_becomes_misc():
    src = ["firms", "in", "Belgium", "and", "the", "Community", "grew"]
    tgt = ["belgische", "und", "gemeinschaftliche", "Firmen", "wuchsen"]
    links = [(0, 3), (2, 0), (3, 1), (5, 2), (6, 4)]
    mentions = [Mention(2, 3, "BE", "LOC"), Mention(5, 6, "EC", "ORG")]

    def types(cfg):
        counts = ProjectionCounts()
        out = project_mentions(mentions, links, src, tgt, cfg, counts)
        return [(m.type, m.kb_id) for m in out], counts.mentions_retyped

    assert types(NO_VERBATIM) == ([("MISC", "BE"), ("MISC", "EC")], 2)
    assert types(dataclasses.replace(NO_VERBATIM, derived_type="")) == (
        [("LOC", "BE"), ("ORG", "EC")],
        0,
    )
    # only the configured (CoNLL) types change: a KB type outside them stays
    custom = [Mention(2, 3, "BE", "country"), Mention(5, 6, "EC", "ORG")]
    out = project_mentions(custom, links, src, tgt, NO_VERBATIM)
    assert [m.type for m in out] == ["country", "MISC"]


def test_an_adjective_said_with_the_name_in_the_target_becomes_loc():
    # Europarl es: "Sri Lankan" -> "Sri Lanka", "Eastern European" -> "Europa Oriental"
    src = ["the", "Sri", "Lankan", "and", "Eastern", "European", "Social", "Fund", "talks"]
    tgt = ["Sri", "Lanka", "y", "Europa", "Oriental", "Fondo", "Social", "Europeo", "debates"]
    links = [(1, 0), (2, 1), (3, 2), (4, 4), (5, 3), (6, 6), (7, 5), (8, 8)]
    mentions = [
        Mention(1, 3, "LK", "MISC"),
        Mention(4, 6, "EE", "MISC"),
        Mention(6, 8, "SF", "MISC"),  # a noun phrase: its last word is not an adjective
        Mention(5, 6, "EU", "PER"),  # only derived_type mentions change
    ]

    def types(cfg):
        counts = ProjectionCounts()
        out = project_mentions(mentions[:3], links, src, tgt, cfg, counts)
        return [(m.text, m.type) for m in out], counts.mentions_retyped

    assert types(NO_VERBATIM) == (
        [("Sri Lanka", "LOC"), ("Europa Oriental", "LOC"), ("Fondo Social", "MISC")],
        2,
    )
    assert types(dataclasses.replace(NO_VERBATIM, base_type=""))[1] == 0
    out = project_mentions(mentions[3:], links, src, tgt, NO_VERBATIM)
    assert [(m.text, m.type) for m in out] == [("Europa", "PER")]
    # a lowercase projection is the adjective, not the name
    out = project_mentions(
        [Mention(1, 2, "EU", "MISC")], [(1, 1)], ["the", "European"], ["la", "europea"], NO_VERBATIM
    )
    assert [m.type for m in out] == ["MISC"]


def test_capitalised_copied_or_multiword_projections_keep_their_type():
    src = ["the", "Commission", "and", "Belgium", "and", "New", "Zealand"]
    tgt = ["die", "Kommission", "und", "belgium", "und", "neu", "seeland"]
    links = diagonal(7)
    mentions = [
        Mention(1, 2, "EC", "ORG"),  # capitalised noun in the target
        Mention(3, 4, "BE", "LOC"),  # a lowercase copy of the name, not an adjective
        Mention(5, 7, "NZ", "LOC"),  # two words
    ]
    out = project_mentions(mentions, links, src, tgt, NO_VERBATIM)
    assert [m.type for m in out] == ["ORG", "LOC", "LOC"]
