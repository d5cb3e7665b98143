"""FindMentions: `Sentence` -> (sentence, `PreparedSentence`): words and KB mentions, no model.

Tokenizing and KB alias matching are one call of
`relbridge.models.extract.prepare_sentence`, the function ``relbridge
extract`` calls, with the same `TextMentions` finder (``--kb``: the
pipeline's tokenizer for ``--lang`` and the KB's aliases; without a KB,
extract's word pattern, `relbridge.data_specs.relx.raw_words`). The tagging
head's mentions need the model, so they are found in the `ExtractRelations`
stage, in the same batches as the pairs.
A sentence whose marked entities cover no word, or overlap, is a dead letter.
"""

from __future__ import annotations

import apache_beam as beam

from relbridge.kg.options import MentionConfig
from relbridge.models.extract import prepare_sentence
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG, reject


class FindMentionsFn(beam.DoFn):
    """Prepares each sentence; the KB's alias index is built once per worker (`setup`)."""

    def __init__(self, cfg: MentionConfig):
        self.cfg = cfg
        self._mentions_of = None

    def setup(self):
        if self.cfg.kb:
            from relbridge.kb import TextMentions

            self._mentions_of = TextMentions(
                self.cfg.kb, self.cfg.lang, self.cfg.alias_langs or None
            )

    def process(self, sentence):
        try:
            yield sentence, prepare_sentence(0, sentence.text, self._mentions_of)
        except ValueError as error:
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG, reject("find_mentions", str(error), sentence)
            )


class FindMentions(beam.PTransform):
    """Returns a tagged result: ``prepared`` ((Sentence, PreparedSentence)) and ``dead_letter``."""

    def __init__(self, cfg: MentionConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, sentences):
        return sentences | "Prepare" >> beam.ParDo(FindMentionsFn(self.cfg)).with_outputs(
            DEAD_LETTER_TAG, main="prepared"
        )
