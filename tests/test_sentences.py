"""The shared sentence splitter: boundaries, spans, and the cases that fool naive splitters."""

import pytest

from relbridge.text.sentences import sentences, split_sentences


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        (
            "Dr. Smith went to Washington. He met J. R. R. Tolkien there! Was it 5 p.m.? Yes.",
            "en",
            ["Dr. Smith went to Washington.", "He met J. R. R. Tolkien there!", "Was it 5 p.m.?", "Yes."],
        ),
        ("The U.S. economy grew 3.5 percent. Inflation fell.", "en",
         ["The U.S. economy grew 3.5 percent.", "Inflation fell."]),
        ('He said "Go." Then he left.', "en", ['He said "Go."', "Then he left."]),
        ("Wait... What happened?", "en", ["Wait...", "What happened?"]),
        ("It ended in 1999. Then came more.", "en", ["It ended in 1999.", "Then came more."]),
        (
            "Am 3. Oktober 1990 kam die Einheit. Das war z.B. wichtig. Er sagte „Ja.“ Dann ging er.",
            "de",
            ["Am 3. Oktober 1990 kam die Einheit.", "Das war z.B. wichtig.", "Er sagte „Ja.“",
             "Dann ging er."],
        ),
        ("Il y a un requin\u00a0!\u00a0», explique Chad. Le garçon a été évacué.", "fr",
         ["Il y a un requin\u00a0!\u00a0», explique Chad.", "Le garçon a été évacué."]),
        ("他说：“我们走吧。”然后他们离开了。明天见！", "zh",
         ["他说：“我们走吧。”", "然后他们离开了。", "明天见！"]),
        ("今日は晴れです。「明日は雨でしょう？」わかりません", "ja",
         ["今日は晴れです。", "「明日は雨でしょう？」", "わかりません"]),
        ("कल बारिश हुई। आज धूप है।", "hi", ["कल बारिश हुई।", "आज धूप है।"]),
    ],
)
def test_splits_sentences(text, lang, expected):
    assert sentences(text, lang) == expected


def test_a_lower_case_word_after_a_stop_continues_the_sentence():
    assert sentences("See fig. three and so on. Done.", "en") == ["See fig. three and so on.", "Done."]


def test_line_breaks_end_sentences_unless_only_paragraphs_count():
    text = "A line without a stop\nwraps here. Next one.\n\nNew paragraph"
    assert sentences(text, "en") == ["A line without a stop", "wraps here.", "Next one.", "New paragraph"]
    assert sentences(text, "en", line_breaks=False) == [
        "A line without a stop\nwraps here.", "Next one.", "New paragraph"]


def test_spans_index_the_input_and_exclude_white_space():
    text = "  First one.   Second one!\r\n\tThird "
    spans = split_sentences(text, "en")
    assert [text[s:e] for s, e in spans] == ["First one.", "Second one!", "Third"]
    assert all(s < e for s, e in spans) and spans == sorted(spans)


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "。", "..."])
def test_empty_or_punctuation_only_input(text):
    assert all(piece.strip() for piece in sentences(text, "en"))
    assert len(sentences(text, "en")) <= 1


def test_unknown_language_gets_neutral_rules():
    assert sentences("Mr. Ono came. He left.", "xx") == ["Mr. Ono came.", "He left."]
