"""Link combination rules and the eflomal wrapper."""

import glob
import itertools
import os
import tempfile

import pytest

from relbridge.alignment.statistical import EflomalConfig, eflomal_align, read_extra_corpus
from relbridge.alignment.symmetrize import combine, fill, grow_diag_final, intersection, union

FWD = [(0, 0), (1, 1), (2, 3)]
REV = [(0, 0), (1, 1), (1, 2), (3, 3)]


def toy_corpus(n: int = 100) -> list[tuple[list[str], list[str]]]:
    """Pairs whose two nouns swap places in the target: only a lexicon can tell.

    The pairs cycle through every ordered pair of five nouns, so each noun
    meets its translation in 8 of every 20 pairs and any other noun in 2.
    (An earlier corpus cycled through only 4 noun pairs; that lexicon was so
    weakly determined that an unseeded eflomal run sometimes learnt it wrong.)
    """
    words = [
        ("house", "Haus"),
        ("cat", "Katze"),
        ("dog", "Hund"),
        ("tree", "Baum"),
        ("car", "Auto"),
    ]
    combos = list(itertools.permutations(words, 2))
    pairs = []
    for k in range(n):
        (s1, t1), (s2, t2) = combos[k % len(combos)]
        pairs.append((["the", s1, "and", "the", s2], ["das", t2, "und", "das", t1]))
    return pairs


def test_intersection_and_union():
    assert intersection(FWD, REV) == [(0, 0), (1, 1)]
    assert union(FWD, REV) == [(0, 0), (1, 1), (1, 2), (2, 3), (3, 3)]


def test_grow_diag_final_adds_neighbours_of_the_intersection():
    # (1, 2) neighbours (1, 1) and covers unaligned target 2; (2, 3) is a
    # diagonal neighbour of (1, 2) covering unaligned source 2; (3, 3) then has
    # an aligned target, so only the non-"and" final step may add it.
    assert grow_diag_final(FWD, REV, final_and=True) == [(0, 0), (1, 1), (1, 2), (2, 3), (3, 3)]
    assert grow_diag_final([(0, 0)], [(0, 0), (5, 5)], final_and=True) == [(0, 0), (5, 5)]
    assert grow_diag_final([(0, 0), (0, 5)], [(0, 0)], final_and=True) == [(0, 0)]
    assert grow_diag_final([(0, 0), (0, 5)], [(0, 0)], final_and=False) == [(0, 0), (0, 5)]


def test_unknown_combination_is_an_error():
    with pytest.raises(ValueError, match="unknown combination"):
        combine(FWD, REV, "average")


def test_eflomal_learns_a_toy_lexicon():
    pairs = toy_corpus()
    links = eflomal_align(pairs, EflomalConfig(n_samplers=2))
    assert len(links) == len(pairs)
    crossed = sum((1, 4) in l and (4, 1) in l for l in links)
    # Position alone links (1, 1) and (4, 4): crossing needs the lexicon. eflomal
    # samples without a seed, so the bar is 70%, not all.
    assert crossed >= 0.7 * len(pairs)


def test_eflomal_rejects_empty_sides():
    with pytest.raises(ValueError, match="pair 1 has an empty side"):
        eflomal_align([(["a"], ["b"]), ([], ["c"])])
    with pytest.raises(ValueError):
        EflomalConfig(symmetrize="nope")


def test_fill_adds_second_links_only_between_words_the_first_left_unaligned():
    first = [(0, 0), (1, 1)]
    second = [(0, 1), (2, 2), (2, 1), (3, 0)]
    # (0, 1): both words taken; (2, 1): target 1 taken; (3, 0): target 0 taken
    assert fill(first, second) == [(0, 0), (1, 1), (2, 2)]
    assert combine(first, second, "fill") == fill(first, second)
    assert fill([], second) == sorted(second)


def test_eflomal_trains_on_the_extra_corpus_too(tmp_path):
    corpus = toy_corpus()
    extra = tmp_path / "extra.src-tgt"
    extra.write_text(
        "".join(f"{' '.join(s)} ||| {' '.join(t)}\n" for s, t in corpus[5:]) + "lonely ||| \n",
        encoding="utf-8",
    )
    assert len(read_extra_corpus(str(extra))) == len(corpus) - 5  # the one-sided line is skipped
    links = eflomal_align(corpus[:5], EflomalConfig(n_samplers=2, extra_corpus=str(extra)))
    assert len(links) == 5  # links of the extra corpus are not returned
    assert sum((1, 4) in l and (4, 1) in l for l in links) >= 4


def test_eflomal_keeps_word_indices_when_a_word_holds_whitespace():
    pairs = [(["a", "b\u3000c", "d"], ["x", "y", "z"])] + [(["a", "e", "d"], ["x", "w", "z"])] * 20
    for links in eflomal_align(pairs, EflomalConfig(n_samplers=1)):
        assert all(0 <= i < 3 and 0 <= j < 3 for i, j in links)


def test_neural_links_as_priors_teach_eflomal_a_small_corpus():
    pairs = toy_corpus()[:6]
    crossed_links = [[(0, 0), (1, 4), (2, 2), (3, 3), (4, 1)]] * len(pairs)
    links = eflomal_align(pairs, EflomalConfig(n_samplers=2), prior_links=crossed_links)
    assert sum((1, 4) in l and (4, 1) in l for l in links) >= 5
    with pytest.raises(ValueError, match="prior link sets"):
        eflomal_align(pairs, prior_links=crossed_links[:2])


def test_a_killed_worker_leaves_no_eflomal_process_and_no_temp_files(tmp_path):
    """kill -9 of the process running eflomal: the binary dies too; the next call cleans up."""
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import random\n"
        "from relbridge.alignment.statistical import eflomal_align\n"
        "rng = random.Random(0)\n"
        "words = lambda p: [f'{p}{rng.randrange(3000)}' for _ in range(25)]\n"
        "eflomal_align([(words('s'), words('t')) for _ in range(400)])\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    worker = subprocess.Popen([sys.executable, "-c", script], env=env)
    children: list[int] = []
    try:
        deadline = time.time() + 60
        while not children and time.time() < deadline:
            time.sleep(0.2)
            children = _children(worker.pid)
        assert children, "eflomal never started"
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        time.sleep(1.0)
        survivors = [pid for pid in children if _running(pid)]
        assert survivors == []
        (scratch,) = glob.glob(str(tmp_path / "relbridge-eflomal-*"))  # left by the killed worker
        tempfile.tempdir = str(tmp_path)  # the next call, in the same temp folder
        eflomal_align([(["a", "house"], ["ein", "Haus"])], EflomalConfig(n_samplers=1))
        assert not os.path.exists(scratch)
    finally:
        tempfile.tempdir = None
        for pid in children:  # today's defect: the orphan would run on
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        with open(task) as f:
            found += [int(c) for c in f.read().split()]
    return found


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
