"""`relbridge demo`: the whole path on bundled data (pipeline, training, evaluation, KG).

`run_demo` wires the layers; `projection_score` scores the projected shards
against RELX gold; `data/` holds the small corpus and KB shipped in the wheel.
"""
