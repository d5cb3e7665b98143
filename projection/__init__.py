"""Label projection: carrying the source side's mentions and relations onto the target.

Word alignment (`relbridge.alignment`) says which target words translate which
source words; this package turns those links into target spans, types and
relations, and scores the result against gold projections. It imports no
other layer than `relbridge.data_specs` and `relbridge.runtime`, and nothing
here knows about Beam: `relbridge.pipeline.project` wraps `project_pair` in
the ``ProjectLabels`` stage.

* `config`: `ProjectConfig`, the rules and thresholds (one frozen dataclass);
* `link_rules`: rules that rewrite the links before any span is chosen
  (verbatim and spelling anchors, disputed and fallback links, function words);
* `span_search`: choosing, trimming and scoring one target span;
* `projection`: `project_pair` (mentions, then relations, of one sentence pair);
* `projection_eval`: exact-span P/R/F1 against gold projections
  (``relbridge eval-projection``).
"""
