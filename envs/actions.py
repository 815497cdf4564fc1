"""Answer extraction: the one place that reads what a model's free text commits to (a game's
action here; SAT's bits and arithmetic's numbers read their boxes through :func:`boxed_answers`
and :func:`last_boxed`).

Every game shares it. The rule: take the *last* ``\\boxed{...}`` in the text; failing that, the
last ``[...]``; failing that, the whole text when it is short (a bare answer such as ``"4"``).
The candidate is normalised (case, spacing, surrounding punctuation) and handed to the game,
which maps it to a legal action or rejects it. With ``lenient``, a text that commits to nothing
that way is read as the one legal action it names anywhere, if it names exactly one. Nothing here
raises on any input string.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

_BOXED = re.compile(r"\\boxed\s*\{([^{}]*)\}")
_BOX_OPEN = re.compile(r"\\boxed\s*\{")
_BRACE = re.compile(r"[{}]")
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")
_SPACES = re.compile(r"\s+")
# Models often write \boxed{\text{call}}: unwrap such formatting before looking for the box.
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|texttt|mbox)\s*\{([^{}]*)\}")
# A bare answer longer than this is prose, not an action.
BARE_MAX_CHARS = 40


def unwrap_formatting(text: str) -> str:
    """``\\text{x}``, ``\\textbf{x}``, ``\\mathrm{x}``... -> ``x``: the formatting models wrap
    answers in, removed before any answer is read (games, SAT bits, numbers)."""
    return _TEXT_WRAPPER.sub(r"\1", text)


def boxed_answers(text: str) -> list[str]:
    """The contents of every innermost ``\\boxed{...}`` (no braces inside), in order: what games
    and SAT read their answer from (the last one)."""
    return _BOXED.findall(text)


def last_boxed(text: Any) -> str | None:
    """The content of the last ``\\boxed{...}`` (braces balanced), or None when there is none or
    the last one never closes (a cut-off answer commits to nothing)."""
    if not isinstance(text, str):
        return None
    box = None
    for box in _BOX_OPEN.finditer(text):
        pass
    if box is None:
        return None
    depth = 1
    for brace in _BRACE.finditer(text, box.end()):
        depth += 1 if brace[0] == "{" else -1
        if depth == 0:
            return text[box.end():brace.start()]
    return None


def normalise(text: str) -> str:
    """Lower-case, collapse whitespace, strip quotes and trailing punctuation."""
    text = _SPACES.sub(" ", text).strip().lower()
    return text.strip(" \t\"'`.,;:!?*")


def candidate(text: str) -> str | None:
    """The normalised answer the text commits to, or None if it commits to none."""
    if not isinstance(text, str):
        return None
    text = unwrap_formatting(text)
    for found in (boxed_answers(text), _BRACKETED.findall(text)):
        if found:
            return normalise(found[-1])
    bare = normalise(text)
    if bare and len(bare) <= BARE_MAX_CHARS and "\n" not in text.strip():
        return bare
    return None


def match_legal(cand: str | None, legal: Sequence[str]) -> str | None:
    """Map a normalised candidate to one of the legal actions (compared normalised), or None."""
    if cand is None:
        return None
    by_norm = {normalise(a): a for a in legal}
    return by_norm.get(cand)


def lenient_match(text: str, legal: Sequence[str]) -> str | None:
    """Fallback for an untrained model: the one legal action the text names anywhere, as a whole
    word; None if it names none or more than one.

    Only used when the strict rule finds nothing and the environment enables it. It keeps the
    reward signal from being all-invalid at the start of training: an untrained 135M instruct
    model, asked for ``\\boxed{ACTION}`` on a Kuhn Poker turn, gave a boxed legal action in 1 of
    64 samples (temperature 1.0) but named one somewhere in 17. A reply naming *several* legal
    actions commits to none: reading it as the last one named was a hackable reward (a policy
    trained on it learned babble such as "a bet after a called bet ...").
    """
    if not isinstance(text, str):
        return None
    low = text.lower()
    named = {action for action in legal
             if re.search(r"(?<![\w])" + re.escape(normalise(action)) + r"(?![\w])", low)}
    return named.pop() if len(named) == 1 else None


def extract_action(text: str, legal: Sequence[str], lenient: bool = False) -> str | None:
    """The legal action that ``text`` names, or None (an invalid action)."""
    found = match_legal(candidate(text), legal)
    if found is None and lenient:
        found = lenient_match(text, legal)
    return found
