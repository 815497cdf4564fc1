"""Peer routing and insertion text for LeaP, "Learning from Peers in Reasoning Models" (arXiv
2505.07787, code tongxuluo/LeaP). Pure Python: no model, no torch, no Ray.

LeaP runs several reasoning paths for one question in parallel. Every so often each path is cut
at a paragraph boundary (:func:`trim_partial_paragraph`), made to summarise its conclusions so
far (the path is continued after a recap sentence and a summary opening, :func:`summary_prompt`,
until :data:`SUMMARY_STOP`), and then receives the summaries of ``k`` peers chosen by a router
(:func:`route`), inserted as a ``<comment>`` block (:func:`comment_block`), before it goes on
reasoning. :data:`LEAP_PREFIX_MATH` and :data:`LEAP_SUFFIX_MATH` are LeaP's instructions around
the problem for models not trained for it.

Routers compare summaries by ``Levenshtein.ratio``, the InDel-normalised similarity
``1 - indel(a, b) / (len(a) + len(b))`` (``indel``: the fewest single-character insertions and
deletions turning ``a`` into ``b``; two empty strings have similarity 1). It is computed by
``rapidfuzz.distance.Indel.normalized_similarity``, which is exactly that ratio.
"""

from __future__ import annotations

import operator
import random
import re
from typing import Any, Sequence

import numpy as np
from rapidfuzz.distance import Indel

ROUTERS = ("dispersed", "clustered", "hybrid", "random")

#: The openings of a summary LeaP draws from (``summarize_triggers`` in its ``leap/prompts.py``):
#: a (trimmed) path is continued after one of them until :data:`SUMMARY_STOP`.
SUMMARY_TRIGGERS = (
    " <summarize> In short, my current conclusions are that",
    " <summarize> To summarize, based on my previous reasoning, I have currently found that",
    " <summarize> In conclusion, the current key takeaways and results are",
    " <summarize> In short, I've currently concluded that",
    " <summarize> To summarize, my recent findings are",
    " <summarize> In conclusion, the current insights and results I've gathered are",
)
SUMMARY_TRIGGER = SUMMARY_TRIGGERS[0]
SUMMARY_STOP = "</summarize>"
#: The sentence before the summary's opening, in the path's own voice (``leap_triggers`` in
#: LeaP's ``leap/prompts.py``): a recap announced by the model itself reads as its own decision
#: to summarise, not as an interruption.
RECAPS = (
    "Alright, let's take a step back and summarize what we've figured out so far briefly.",
    "Wait, let me quickly recap what I've concluded so far.",
    "Alright, let me shortly review the conclusions I've drawn so I can move forward more efficiently.",
    "Hmm, a quick summary of what I've figured out might help streamline the next part of my reasoning.",
    "Hold on, I should summarize the key points briefly to ensure I'm on the right track.",
    "Okay, before continuing, let me put together a brief summary of the insights I've gathered so far.",
    "Okay, time to consolidate everything I've found into a concise summary.",
)

# LeaP's worked example of a summary (from AIME 2025's base-b divisibility problem), shown in its
# instructions; the prefix sets the formulas in \[ \], the suffix in \( \).
_EXAMPLE = ("<summarize> In short, my current key insights about this problem are: Convert numbers to "
            "base 10 and set up the equations for the divisibility condition. Then simplify the "
            "equation and solve for \\( b \\). After that, find valid solutions, check for constraints, "
            "and sum them up for the final answer. And my current progress is: I have computed and "
            "confirmed the expressions for \n{o}\n17_b = b + 7\n{c}\nand\n{o}\n97_b = 9b + 7.\n{c}\n"
            "I then set up the equation\n{o}\n9b + 7 = k(b + 7)\n{c}\nand derived the formula\n{o}\n"
            "b = \\frac{{7(k - 1)}}{{9 - k}}.\n{c} </summarize>")
#: What follows a MATH problem in the user message for a model not trained for LeaP (an R1-distilled
#: one): LeaP's ``leap_prefix_MATH``, word for word (its typos too: the model saw exactly this).
LEAP_PREFIX_MATH = (
    "Please reason step by step, and when you get some intermediate results, please summarize them "
    "enlosed with <summarize> </summarize> and you will get the comments from peers. For example:\n\n"
    + _EXAMPLE.format(o="\\[", c="\\]")
    + " <comment> The comments from peers will be presented here. </comment>\n\n"
    "After you get the final answer, return the final answer within \\boxed{}.")
#: What opens the assistant's answer (inside its thinking) for such a model: LeaP's
#: ``leap_subfix_MATH``, the model restating the instruction in its own voice so that it follows it.
LEAP_SUFFIX_MATH = (
    "Okay, so I have this complex mathematical problem. And the user instruct that I should "
    "summarize what I've concluded with tags when I get some intermediate results. For example:\n\n"
    + _EXAMPLE.format(o="\\(", c="\\)")
    + "\n\nNow, let's get back to the original problem.")

COMMENT_OPEN = "<comment>"
COMMENT_CLOSE = "</comment>"
#: What a path with no peer (a lone path, or k = 0) receives. Kept as a block rather than
#: nothing so that every path sees the same structure at the same point.
NO_COMMENTS = f"{COMMENT_OPEN} No comments {COMMENT_CLOSE}"
#: Follows the peers' summaries: asks the path to weigh them against its own reasoning.
COMMENT_INVITATION = ("Let me check my peers' conclusions against my own reasoning, "
                      "and correct my reasoning if they reveal a mistake.")

# One or more blank lines (only spaces or tabs on them) as one match, so that the text before
# the last run of them ends with the paragraph, not with some of the run's newlines.
_BLANK_LINE = re.compile(r"\n(?:[ \t]*\n)+")


def summary_prompt(rng: np.random.Generator) -> str:
    """The text a path is continued after to summarise: a recap sentence from :data:`RECAPS`,
    then a summary opening from :data:`SUMMARY_TRIGGERS`, each drawn uniformly from ``rng`` (as
    LeaP's ``get_leap``)."""
    return RECAPS[int(rng.integers(len(RECAPS)))] + SUMMARY_TRIGGERS[int(rng.integers(len(SUMMARY_TRIGGERS)))]


def similarity(a: str, b: str) -> float:
    """``Levenshtein.ratio(a, b)``: ``1 - indel(a, b) / (len(a) + len(b))``, in [0, 1]."""
    # No processor: LeaP compares the raw summaries, case and punctuation included.
    return float(Indel.normalized_similarity(a, b))


def similarity_matrix(summaries: Sequence[str]) -> list[list[float]]:
    """Pairwise :func:`similarity`; symmetric, so each pair is computed once (diagonal: 1.0)."""
    n = len(summaries)
    sim = [[1.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            sim[i][j] = sim[j][i] = similarity(summaries[i], summaries[j])
    return sim


def _check_k(k: Any) -> int:
    if isinstance(k, bool):
        raise ValueError(f"k={k!r}: expected an integer >= 0")
    try:
        k = operator.index(k)
    except TypeError:
        raise ValueError(f"k={k!r}: expected an integer >= 0") from None
    if k < 0:
        raise ValueError(f"k={k}: expected an integer >= 0 (the number of peers per path)")
    return k


def route(summaries: list[str], k: int, router: str, seed: int | None = None) -> list[list[int]]:
    """For each path ``i``, the indices of the peers whose summaries it receives.

    * ``"dispersed"``: the ``k`` peers least similar to path ``i``'s summary;
    * ``"clustered"``: the ``k`` most similar;
    * ``"hybrid"``: ``floor(m/2)`` least similar, then the ``ceil(m/2)`` most similar among the
      rest (no peer twice), where ``m = min(k, number of peers)``;
    * ``"random"``: ``k`` peers drawn uniformly without replacement, from one
      ``random.Random(seed)`` in path order (the same seed gives the same routing; ``seed=None``
      draws fresh entropy). ``seed`` is ignored by the other routers.

    A path never receives itself. With ``k`` at least the number of peers, every path receives
    all of them (under ``hybrid`` too); a single path gets ``[]``. Each list is in the router's
    order of preference: least similar first (``dispersed``), most similar first (``clustered``),
    the least similar part then the most similar part (``hybrid``), the draw order (``random``).
    Ties in similarity are broken by peer index, the lower index first, in both directions, so
    the routing of equal summaries is deterministic.

    Raises ValueError for ``k < 0`` (or a non-integer ``k``), an unknown ``router``, or
    ``summaries`` that are not a list of strings.
    """
    k = _check_k(k)
    if router not in ROUTERS:
        raise ValueError(f"router={router!r}: expected one of {ROUTERS}")
    if isinstance(summaries, (str, bytes)) or not isinstance(summaries, Sequence):
        raise ValueError(f"summaries={summaries!r}: expected a list of strings")
    for i, s in enumerate(summaries):
        if not isinstance(s, str):
            raise ValueError(f"summaries[{i}]={s!r}: expected a string")
    n = len(summaries)
    take = min(k, n - 1) if n else 0
    if router == "random":
        rng = random.Random(seed)
        return [rng.sample([j for j in range(n) if j != i], take) for i in range(n)]
    sim = similarity_matrix(summaries)
    routes = []
    for i in range(n):
        peers = [j for j in range(n) if j != i]
        # Python's sort is stable and ``peers`` is in index order: equal similarities keep
        # the lower index first in either direction.
        least = sorted(peers, key=lambda j: sim[i][j])
        most = sorted(peers, key=lambda j: -sim[i][j])
        if router == "dispersed":
            chosen = least[:take]
        elif router == "clustered":
            chosen = most[:take]
        else:
            chosen = least[:take // 2]
            picked = set(chosen)
            chosen += [j for j in most if j not in picked][:take - len(chosen)]
        routes.append(chosen)
    return routes


def comment_block(peer_summaries: list[str]) -> str:
    """The text inserted into a path after its summary: the peers' summaries, numbered from 1,
    quoted, one per line, in a ``<comment>`` block, then :data:`COMMENT_INVITATION`::

        <comment> Peer 1: "..."
        Peer 2: "..." </comment>
        Let me check my peers' conclusions ...

    Summaries are stripped of surrounding whitespace and otherwise inserted as they are. With no
    peer the block is :data:`NO_COMMENTS` alone (no invitation: there is nothing to check).
    """
    if not peer_summaries:
        return NO_COMMENTS
    lines = "\n".join(f'Peer {p}: "{s.strip()}"' for p, s in enumerate(peer_summaries, start=1))
    return f"{COMMENT_OPEN} {lines} {COMMENT_CLOSE}\n{COMMENT_INVITATION}"


def trim_partial_paragraph(text: str) -> str:
    """``text`` up to its last blank line (two newlines, with only spaces or tabs between), so
    that a summary is asked for at a paragraph boundary, not mid-sentence; the partial paragraph
    after that line is dropped. A text with no blank line is returned unchanged: it is one
    paragraph, and dropping it would drop the whole reasoning so far."""
    last = None
    for last in _BLANK_LINE.finditer(text):
        pass
    return text if last is None else text[:last.start()]


__all__ = ["ROUTERS", "SUMMARY_TRIGGER", "SUMMARY_TRIGGERS", "SUMMARY_STOP", "RECAPS", "LEAP_PREFIX_MATH",
           "LEAP_SUFFIX_MATH", "NO_COMMENTS", "COMMENT_INVITATION", "summary_prompt",
           "similarity", "similarity_matrix", "route", "comment_block", "trim_partial_paragraph"]
