"""A statistical word aligner (eflomal) trained on the corpus being aligned.

eflomal (Östling and Tiedemann 2016) is a Bayesian IBM-model aligner with
MCMC inference. It learns from the whole corpus at once, so it is a
corpus-level step: give it all pairs (the more the better; a few thousand pairs
already beat nothing, a few hundred are weak) and it returns links for each.
Both directions are aligned and symmetrised (grow-diag-final-and by default,
see `alignment.symmetrize`), and the result can be combined with the neural
aligner's links. The neural links can also seed eflomal as priors
(``EflomalConfig.neural_priors``), which matters most on small corpora.

    links = eflomal_align([(["a", "house"], ["ein", "Haus"]), ...], EflomalConfig())
"""

from __future__ import annotations

import ctypes
import functools
import glob
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from relbridge.alignment.symmetrize import COMBINERS, combine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EflomalConfig:
    """eflomal settings.

    Attributes:
      model: 1 = IBM1, 2 = + HMM distortion, 3 = + fertility (best, default).
      n_samplers: independent samplers averaged (2-4; more is slower, steadier).
      n_iterations: base iterations per model; ``None`` lets eflomal pick by corpus size.
      null_prior: prior probability of a NULL link (0.1-0.3).
      symmetrize: how to merge the two directions (see `COMBINERS`).
      extra_corpus: optional pre-tokenised ``src ||| tgt`` file of unlabelled
        parallel text in the same language pair and direction, trained on with
        the corpus being aligned (its own links are discarded). eflomal on a
        few hundred pairs is weak; a few thousand more pairs help. Tokenise it
        as the corpus is tokenised (the pipeline's `Tokenize` stage), or the
        vocabularies will not meet.
      chunk_pairs: in the pipeline, a corpus of more pairs than this is split
        into about ``n / chunk_pairs`` chunks (by a hash of the pair id), each
        trained as its own eflomal model, so workers train them in parallel
        and none holds the whole corpus; 0 = one model for everything. eflomal
        learns from co-occurrence, so keep chunks large (100k+ pairs; a chunk
        of 250k pairs needs a few GB of worker memory).
      neural_priors: train eflomal with priors (lexical, jump and fertility
        counts, eflomal's ``calculate_priors``) taken from the neural links of
        the same pairs, so a small corpus is not learnt from scratch. On the
        dev gold this lowers eflomal's own AER from 17 / 40 / 35 to 5.3 / 26.7
        / 19.6 (en-fr / ro-en / zh-en, intersection). The caller passes the
        links (`eflomal_align`'s ``prior_links``).

    eflomal samples at random, so links vary slightly from run to run: eflomal
    2.0.0 seeds its sampler from ``/dev/urandom`` and has no seed option (see
    `NOT_SEEDABLE`), so a pipeline run with eflomal is not byte-reproducible.
    """

    model: int = 3
    n_samplers: int = 3
    n_iterations: int | None = None
    null_prior: float = 0.2
    symmetrize: str = "grow-diag-final-and"
    extra_corpus: str | None = None
    neural_priors: bool = False
    chunk_pairs: int = 250_000

    def __post_init__(self):
        if self.chunk_pairs < 0:
            raise ValueError(f"chunk_pairs must be >= 0, got {self.chunk_pairs}")
        if self.model not in (1, 2, 3):
            raise ValueError(f"model must be 1, 2 or 3, got {self.model}")
        if self.symmetrize not in COMBINERS:
            raise ValueError(
                f"symmetrize must be one of {sorted(COMBINERS)}, got {self.symmetrize!r}"
            )
        if not 0 < self.null_prior < 1:
            raise ValueError(f"null_prior must be in (0, 1), got {self.null_prior}")


NOT_SEEDABLE = (
    "eflomal 2.0.0 seeds its sampler from /dev/urandom and has no seed option, so its links "
    "differ between runs; run with --align-statistical off for byte-identical shards"
)


def _read_links(path: str) -> list[list[tuple[int, int]]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            out.append([tuple(map(int, link.split("-"))) for link in line.split()])
    return out


def eflomal_align(
    pairs: Sequence[tuple[Sequence[str], Sequence[str]]],
    cfg: EflomalConfig = EflomalConfig(),
    prior_links: Sequence[Iterable[tuple[int, int]]] | None = None,
) -> list[list[tuple[int, int]]]:
    """Trains eflomal on ``pairs`` and returns symmetrised links for each pair.

    Args:
      pairs: ``(src_words, tgt_words)``; whitespace inside a word (eflomal
        splits on it) is replaced by ``_`` for eflomal only, so indices hold.
      cfg: settings; ``cfg.extra_corpus`` pairs are trained on after ``pairs``.
      prior_links: links of each of ``pairs`` (e.g. the neural aligner's)
        turned into eflomal priors; ``None`` = no priors.

    Returns:
      sorted links of each of ``pairs``, in order.

    Raises:
      ValueError: a pair has an empty side (eflomal cannot align it), or
        ``prior_links`` does not match ``pairs``.
    """
    from eflomal import Aligner

    for n, (src, tgt) in enumerate(pairs):
        if not src or not tgt:
            raise ValueError(f"pair {n} has an empty side")
    if prior_links is not None and len(prior_links) != len(pairs):
        raise ValueError(f"{len(prior_links)} prior link sets for {len(pairs)} pairs")
    extra = read_extra_corpus(cfg.extra_corpus) if cfg.extra_corpus else []
    corpus = [*pairs, *extra]
    clean = lambda words: " ".join("_".join(w.split()) or "_" for w in words)
    aligner = Aligner(
        model=cfg.model,
        n_samplers=cfg.n_samplers,
        n_iterations=cfg.n_iterations,
        null_prior=cfg.null_prior,
    )
    src_lines, tgt_lines = [clean(s) for s, _ in corpus], [clean(t) for _, t in corpus]
    n = len(pairs)
    priors = _priors(src_lines[:n], tgt_lines[:n], prior_links) if prior_links is not None else None
    logger.info("eflomal: training on %d pairs (+%d extra)", len(pairs), len(extra))
    start = time.perf_counter()
    with _scratch_dir() as tmp:
        forward, reverse = _run_eflomal(aligner, src_lines, tgt_lines, priors, tmp)
    logger.info(
        "eflomal aligned %d pairs (+%d extra, model %d, priors: %s) in %.1f s",
        len(pairs),
        len(extra),
        cfg.model,
        priors is not None,
        time.perf_counter() - start,
    )
    return [combine(f, r, cfg.symmetrize) for f, r in zip(forward[:n], reverse[:n], strict=True)]


SCRATCH_PREFIX = "relbridge-eflomal-"


@contextmanager
def _scratch_dir() -> Iterator[str]:
    """A temp folder for one eflomal call, named after this process.

    A killed process cannot clean up, so each call first removes the folders
    of processes that no longer exist (on this machine's temp folder).
    """
    base = tempfile.gettempdir()
    for path in glob.glob(os.path.join(base, SCRATCH_PREFIX + "*")):
        pid = os.path.basename(path)[len(SCRATCH_PREFIX) :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    path = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=base)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _run_eflomal(aligner, src_lines, tgt_lines, priors, tmp: str):
    """eflomal's `Aligner.align`, with its files in ``tmp`` and a child that dies with us.

    ``Aligner.align`` keeps its input files in the system temp folder and
    starts the eflomal binary with a plain ``subprocess.call``: when the
    worker was killed, the binary ran on as an orphan and its files stayed.
    """
    from eflomal import align

    files = {name: os.path.join(tmp, name) for name in ("src", "tgt", "priors", "fwd", "rev")}
    with (
        open(files["src"], "wb") as src,
        open(files["tgt"], "wb") as tgt,
        open(files["priors"], "w", encoding="utf-8") as prior_file,
    ):
        aligner.prepare_files(src_lines, src, tgt_lines, tgt, priors, prior_file)
    _children_die_with_parent()
    align(
        files["src"],
        files["tgt"],
        links_filename_fwd=files["fwd"],
        links_filename_rev=files["rev"],
        priors_filename=files["priors"] if priors is not None else None,
        model=aligner.model,
        score_model=aligner.score_model,
        n_iterations=aligner.n_iterations,
        n_samplers=aligner.n_samplers,
        quiet=True,
        rel_iterations=aligner.rel_iterations,
        null_prior=aligner.null_prior,
    )
    return _read_links(files["fwd"]), _read_links(files["rev"])


class _SubprocessDyingWithParent:
    """Stands in for `subprocess` inside eflomal's wrapper: children get PDEATHSIG.

    eflomal's wrapper takes no subprocess options, so this replaces the
    ``subprocess`` module it looks up at call time (once per process, and
    only in that module); what starts a process gets a ``preexec_fn`` that
    asks the kernel for SIGKILL when the parent dies, the rest is the real module.
    """

    STARTERS = ("run", "call", "check_call", "check_output", "Popen")

    def __getattr__(self, name):
        real = getattr(subprocess, name)
        if name not in self.STARTERS:
            return real
        parent = os.getpid()

        def die_with_parent():  # runs in the child, between fork and exec
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)

        return functools.partial(real, preexec_fn=die_with_parent)


PR_SET_PDEATHSIG = 1


def _children_die_with_parent() -> None:
    """Makes the eflomal binary get SIGKILL when its parent dies (Linux only)."""
    import eflomal.cython

    if sys.platform.startswith("linux") and not isinstance(
        eflomal.cython.subprocess, _SubprocessDyingWithParent
    ):
        eflomal.cython.subprocess = _SubprocessDyingWithParent()


def _priors(
    src_lines: list[str], tgt_lines: list[str], links: Sequence[Iterable[tuple[int, int]]]
) -> list[str]:
    """eflomal's priors file (as lines) counted from ``links``, used for both directions."""
    import io

    from eflomal import calculate_priors, write_priors

    pharaoh = [" ".join(f"{i}-{j}" for i, j in sorted(set(pair))) for pair in links]
    out = io.StringIO()
    write_priors(out, *calculate_priors(src_lines, tgt_lines, pharaoh, pharaoh))
    return out.getvalue().splitlines(keepends=True)


def read_extra_corpus(path: str) -> list[tuple[list[str], list[str]]]:
    """The non-empty pairs of a ``src ||| tgt`` file (see `metrics.read_pairs`)."""
    from relbridge.alignment.metrics import read_pairs

    pairs = [(s, t) for s, t in read_pairs(path) if s and t]
    logger.info("extra corpus %s: %d pairs", path, len(pairs))
    return pairs
