"""The text environment contract on a plain ``gymnasium.Env``: what a runner needs, and the
turn-based game base class.

**What the episode runner needs** (:class:`TextEpisodeEnv`; ``actors.episodes`` drives every
environment from this alone):

* ``turn_requests(obs, info)``: the turns to generate next, as :class:`TurnRequest` s. Several
  requests are independent of each other (LeaP's paths in one phase, ``info["pending"]``): the
  runner may generate them at once, then steps them in the given order. A request says who acts,
  the chat to answer (``observation`` under ``system_prompt``) or that the turn ``extends`` the
  player's previous answer in the same assistant message, text to ``insert`` first (after dropping
  ``trim_chars`` characters of the player's last turn), the turn's token limit and stop strings.
* ``step(reply)``: the runner reports back a :data:`Reply` (the text, whether the engine finished
  on its own, how many tokens it wrote, whether the text follows the request's ``insert``; on a
  fresh turn the insert opens the assistant message); environments that need only the text read it with
  :func:`action_text`, so a plain string is a valid action too.
* ``system_prompt``; ``bounded`` (episodes end by construction, so the runner's turn limit does
  not apply); ``stats_prefix`` (the group of the figures in ``info["stats"]`` at the end);
  ``invalid_action`` (what an invalid action does: ``"lose"`` ends the episode);
  ``info["forfeit"]`` in the final ``info`` of an episode ended by a player's invalid action
  (that player; see *Forfeits* below).

**Turn-based games** (:class:`TurnBasedTextEnv`):

A game subclasses :class:`TurnBasedTextEnv` and supplies its rules through a handful of hooks;
the base class does the Gymnasium plumbing, action extraction, the invalid-action rule and the
``info`` dictionary, so every game behaves the same way to the rollout side:

* ``reset(seed=, options=) -> (obs, info)`` and ``step(text) -> (obs, reward, terminated,
  truncated, info)``; ``obs`` is always the prompt for ``info["player"]``, the player to act next.
* ``info["legal_actions"]``: the legal action strings (omitted for open-ended games).
* ``info["rewards"]`` at the end: every player's return; zero-sum games sum to zero when played
  to their end (a forfeit need not, see below).
  ``reward`` from ``step`` is the acting player's return when the game ends, else 0.
* Any string is a possible action. One that names no legal action is *invalid*; what happens is
  set by ``invalid_action``: ``"lose"`` (default: the offender *forfeits*, see below) or
  ``"random"`` (a uniformly random legal action is played instead and the episode goes on).
  Either way ``info["invalid"]`` is True and ``info["invalid_counts"]`` counts it per player.

**Forfeits.** Under ``"lose"`` an invalid action ends the episode at once: the offender gets
``invalid_reward`` (default None: the game's worst return, ``min_return``) and every other
player ``opponent_invalid_reward`` (default 0.0), both constructor arguments (so a config's
``envs[i].kwargs`` sets them). The opponent is not paid for the offender's failure to answer in
format: in self-play the same policy plays both seats, and a +1 there would credit it for its own
mistake in the other role. So with the defaults **a forfeited game is not zero-sum** (-1 and 0 in
a game scored +-1). SPIRAL's values, for games scored +-1, are ``invalid_reward=-1.5`` and
``opponent_invalid_reward=0.5``; scale them by the game's largest return for other games. The
final ``info`` of a forfeited game holds ``info["forfeit"]``: the player who forfeited (the key
is absent otherwise). Statistics count a forfeit as a loss for that player and a win for every
other, whatever the returns (:meth:`selfplay.core.samples.Episode.result`).

**Forced-answer mode** (``answer_prefix``, a constructor argument of every game; in a config
``envs[i].answer_prefix``, e.g. ``"\\boxed{"``). Default None: the player reasons freely, then
answers in ``\\boxed{}``, read as above. The prefix holds ``\\boxed{`` with no ``}`` after it
(text after the brace is a label inside the box, e.g. ``"\\boxed{$card"``), and may hold
``$name`` fields that the game fills for the acting player at every turn
(:attr:`TurnBasedTextEnv.answer_fields`; Kuhn Poker's ``$card``; ``$$`` writes a ``$``).
With a prefix, every turn's request carries it (filled) as its ``insert`` with stop string ``"}"``
and a token limit of :meth:`TurnBasedTextEnv.answer_tokens` (8, or the longest legal action's
length + 2 characters; 32 for an open-ended game): the runner opens the assistant message with the
prefix (in the prompt, masked out of the loss) and the policy writes only the action and the
closing brace (``bet}``: one to three tokens, so every sample is a strategy decision and steps are
fast). The environment owns the prefix: the runner returns what the engine wrote after it, marked
``after_insert`` in the :data:`Reply`, and the environment reads that text
(:meth:`TurnBasedTextEnv.parse_answer`) *strictly*: the text up to its first ``}`` must be a box
content without braces that the game's own box reading maps to a legal action (case, surrounding
spaces and punctuation aside, as for any ``\\boxed{}``); no bracket or bare-answer reading, no
``lenient`` fallback, and a box never closed is invalid. A reply not marked ``after_insert`` (a
fixed opponent's plain action, a person's move in ``selfplay play``, a plain string) is read as
without a prefix. The prompt text is unchanged.
"""

from __future__ import annotations

import itertools
import math
import numbers
import string
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from envs.actions import candidate, extract_action, lenient_match

# Everything an observation or an action may contain. Observations are built from ASCII only.
CHARSET = string.printable
MAX_OBS_CHARS = 16_384
MAX_ACTION_CHARS = 8_192
INVALID_RULES = ("lose", "random")

#: A game turn's system prompt: a short line keeps small instruct models on task without changing
#: the game's text.
GAME_SYSTEM_PROMPT = "You are playing a game. Follow the rules and answer in the requested format."

#: What the runner reports back for a turn: ``{"text": str, "finished": bool, "tokens": int,
#: "after_insert": bool}`` (``finished``: the engine ended the turn itself, at end of sequence or a
#: stop string; ``after_insert``: ``text`` was written right after the request's ``insert``, which it
#: does not repeat; absent or False for a player that answers with a whole action).
Reply = Mapping[str, Any]

#: What a forced-answer prefix must end with, and the stop string that closes it.
ANSWER_BOX = "\\boxed{"
ANSWER_STOP = "}"
#: Forced answers' token limit: at least this; for an open-ended game (no legal action list), this.
MIN_ANSWER_TOKENS = 8
OPEN_ANSWER_TOKENS = 32


def answer_prefix_problem(value: Any, fields: Mapping[str, Sequence[str]] | None = None) -> str | None:
    """What is wrong with ``value`` as a forced-answer prefix, in a few words, or None: it must be
    None, or a string holding ``\\boxed{`` with no ``}`` after it (the closing ``}`` ends the
    answer) whose ``$name`` placeholders are all ``fields`` the game fills."""
    if value is None:
        return None
    if not isinstance(value, str) or ANSWER_BOX not in value or ANSWER_STOP in value.rsplit(ANSWER_BOX, 1)[1]:
        return f"expected null or a string holding {ANSWER_BOX} with no {ANSWER_STOP} after it"
    template = string.Template(value)
    if not template.is_valid():
        return "a $ must start a field name ($$ writes a $)"
    unknown = sorted(set(template.get_identifiers()) - set(fields or {}))
    if unknown:
        known = ", ".join(f"${f}" for f in fields or {}) or "none"
        return f"${unknown[0]} is not a field this game fills (it fills: {known})"
    return None


def check_answer_prefix(value: Any, fields: Mapping[str, Sequence[str]] | None = None) -> str | None:
    """``value`` as a forced-answer prefix, or a one-line ValueError (:func:`answer_prefix_problem`)."""
    problem = answer_prefix_problem(value, fields)
    if problem:
        raise ValueError(f"answer_prefix={value!r}: {problem}")
    return value


def answer_prefixes(prefix: str, fields: Mapping[str, Sequence[str]]) -> list[str]:
    """Every text ``prefix`` can turn into: its ``$name`` placeholders filled with each value the
    game may give them (for checks that must hold at every turn, e.g. one-token choices)."""
    template = string.Template(prefix)
    names = sorted(template.get_identifiers())
    return [template.substitute(dict(zip(names, values)))
            for values in itertools.product(*(fields[n] for n in names))]


def check_answer_choices(value: Any, prefix: str | None) -> bool:
    """``value`` as the constrained-answer switch, or a one-line ValueError: a bool, True only
    with a forced-answer prefix (the constraint applies to what follows it)."""
    if not isinstance(value, bool):
        raise ValueError(f"answer_choices={value!r}: expected true or false")
    if value and prefix is None:
        raise ValueError("answer_choices=True needs answer_prefix (e.g. '\\boxed{'): the choice "
                         "is the token written after the prefix")
    return value


def check_reward(field: str, value: Any, optional: bool = False) -> float | None:
    """``value`` as a float, or a one-line ValueError naming ``field``: a finite number (None
    too where ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        expected = "a finite number or None" if optional else "a finite number"
        raise ValueError(f"{field}={value!r}: expected {expected}")
    return float(value)


def forfeit_returns(offender: int, num_players: int, offender_return: float,
                    opponent_return: float) -> dict[int, float]:
    """Every player's return when ``offender`` forfeits (see the module docstring)."""
    rewards = {p: float(opponent_return) for p in range(num_players)}
    rewards[offender] = float(offender_return)
    return rewards


def action_text(action: Any) -> Any:
    """The text of an action: a :data:`Reply`'s ``"text"``, else the action as it is (a string;
    anything else is left for the environment's parser to refuse as invalid)."""
    return action.get("text") if isinstance(action, Mapping) else action


@dataclass(frozen=True)
class TurnRequest:
    """One turn for the runner to generate (see the module docstring)."""

    player: int
    #: The user message of a fresh chat; for a turn that ``extends``, what opens the message the
    #: first time (the player has no answer yet).
    observation: str
    #: Continue the player's previous answer in the same assistant message (token by token),
    #: instead of answering ``observation`` in a fresh chat.
    extends: bool = False
    #: Text the environment adds before the player writes (masked out of the loss).
    insert: str = ""
    #: Characters of the player's last turn to drop first (before ``insert``).
    trim_chars: int = 0
    #: The turn's token limit; None: the runner's own (``rollout.max_new_tokens``).
    max_tokens: int | None = None
    #: Strings that end the turn (kept in the text).
    stop: tuple[str, ...] = ()
    #: Constrained answer: the turn is exactly one of these texts, each one token after
    #: ``insert``; the runner samples that token among theirs alone (``()``: unconstrained).
    choices: tuple[str, ...] = ()


class TextEpisodeEnv(gym.Env):
    """What every selfplay environment tells the episode runner (see the module docstring). The
    defaults describe a turn-based game: one turn at a time, ``info["player"]`` answering its
    observation in a fresh chat under :data:`GAME_SYSTEM_PROMPT`."""

    num_players: int = 2
    system_prompt: str | None = GAME_SYSTEM_PROMPT
    #: True where episodes end by construction (LeaP's phases): no turn limit applies.
    bounded: bool = False
    #: The group name of ``info["stats"]``'s figures in metric names ("" when there are none).
    stats_prefix: str = ""
    invalid_action: str = "lose"

    def turn_requests(self, observation: str, info: dict[str, Any]) -> list[TurnRequest]:
        """The turns to generate next: here, the player to move answering ``observation``."""
        return [TurnRequest(player=int(info["player"]), observation=observation)]


ANSWER_FORMAT = (
    "Think briefly if you like, then give your final answer as \\boxed{ACTION}, "
    "where ACTION is exactly one of the legal actions."
)


class TurnBasedTextEnv(TextEpisodeEnv):
    """Base class for turn-based text games; see the module docstring for the contract."""

    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    num_players: int = 2
    #: The game's worst return: what the offender of a forfeit gets unless ``invalid_reward`` says.
    min_return: float = -1.0
    #: Human-readable game name used in prompts.
    title: str = "game"
    #: The ``$name`` fields a forced-answer prefix may hold, with every value each can take
    #: (:meth:`answer_values` gives the acting player's); none by default.
    answer_fields: Mapping[str, tuple[str, ...]] = {}

    def __init__(self, invalid_action: str = "lose", lenient: bool = False,
                 render_mode: str | None = None, invalid_reward: float | None = None,
                 opponent_invalid_reward: float = 0.0, answer_prefix: str | None = None,
                 answer_choices: bool = False) -> None:
        if invalid_action not in INVALID_RULES:
            raise ValueError(f"invalid_action={invalid_action!r}: expected one of {INVALID_RULES}")
        #: The forced-answer prefix (see the module docstring), or None: free answers; its
        #: ``$name`` fields are filled at each turn (:meth:`answer_insert`).
        self.answer_prefix = check_answer_prefix(answer_prefix, self.answer_fields)
        #: Constrained answers: the engine samples among the legal actions' tokens alone.
        self.answer_choices = check_answer_choices(answer_choices, self.answer_prefix)
        #: The offender's return at a forfeit (None: ``min_return``, read at the forfeit).
        self.invalid_reward = check_reward("invalid_reward", invalid_reward, optional=True)
        #: Every other player's return at a forfeit.
        self.opponent_invalid_reward = check_reward("opponent_invalid_reward", opponent_invalid_reward)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: expected one of {self.metadata['render_modes']}")
        self.invalid_action = invalid_action
        self.lenient = lenient
        self.render_mode = render_mode
        self.observation_space = spaces.Text(max_length=MAX_OBS_CHARS, charset=CHARSET)
        self.action_space = spaces.Text(max_length=MAX_ACTION_CHARS, charset=CHARSET)
        self._done = True
        self._rewards: dict[int, float] = {}
        self._invalid_counts: list[int] = []
        self._forfeit_by: int | None = None
        self._turn = 0

    # ----- hooks a game implements -------------------------------------------------------------
    @abstractmethod
    def _new_game(self, options: dict[str, Any]) -> None:
        """Set up a fresh game; draw randomness only from ``self.np_random``."""

    @abstractmethod
    def current_player(self) -> int:
        """The player to act next."""

    @abstractmethod
    def legal_actions(self) -> list[str] | None:
        """Canonical legal action strings, or None where the set is open-ended."""

    @abstractmethod
    def _apply(self, action: str) -> None:
        """Play a legal canonical action for the current player."""

    @abstractmethod
    def _is_over(self) -> bool:
        """Whether the game has ended by its rules."""

    @abstractmethod
    def _returns(self) -> dict[int, float]:
        """Every player's return once the game is over."""

    @abstractmethod
    def observation(self, player: int) -> str:
        """The prompt for ``player``: rules, private info, history, legal actions, answer format."""

    def parse_action(self, text: str) -> str | None:
        """Map free text to a canonical legal action, or None. Open-ended games override this."""
        legal = self.legal_actions() or []
        return extract_action(text, legal, lenient=self.lenient)

    def parse_answer(self, text: Any) -> str | None:
        """A forced answer: ``text`` is what the player wrote after ``answer_prefix``; strictly
        the legal action its box names, or None (see the module docstring)."""
        if self.answer_choices:  # the engine wrote one of the choices, nothing else
            legal = self.legal_actions() or []
            return text if isinstance(text, str) and text in legal else None
        if not isinstance(text, str) or ANSWER_STOP not in text:
            return None  # the box never closed
        content = text[:text.index(ANSWER_STOP)]  # the engine stopped at the first "}"
        if "{" in content:
            return None
        lenient, self.lenient = self.lenient, False
        try:  # the game's own reading of a box, without any fallback
            return self.parse_action(ANSWER_BOX + content + ANSWER_STOP)
        finally:
            self.lenient = lenient

    def answer_tokens(self) -> int:
        """A forced answer's token limit: :data:`MIN_ANSWER_TOKENS`, or the longest legal action's
        characters + 2 (room for the brace and a space; an ASCII token is at least a character);
        :data:`OPEN_ANSWER_TOKENS` where the legal actions are open-ended."""
        legal = self.legal_actions()
        if not legal:
            return OPEN_ANSWER_TOKENS
        return max(MIN_ANSWER_TOKENS, max(len(a) for a in legal) + 2)

    def answer_values(self) -> dict[str, str]:
        """The acting player's value of each of :attr:`answer_fields` (private to that player,
        like everything in its prompt)."""
        return {}

    def answer_insert(self) -> str | None:
        """The forced-answer prefix for the player to act, its fields filled; None without one."""
        if self.answer_prefix is None:
            return None
        template = string.Template(self.answer_prefix)  # cheap: its pattern is compiled once per class
        return template.substitute(self.answer_values() if template.get_identifiers() else {})

    def turn_requests(self, observation: str, info: dict[str, Any]) -> list[TurnRequest]:
        """The player to move answering ``observation``; with ``answer_prefix``, after the prefix,
        up to the closing brace."""
        if self.answer_prefix is None:
            return super().turn_requests(observation, info)
        insert = self.answer_insert()
        if self.answer_choices:
            return [TurnRequest(player=int(info["player"]), observation=observation,
                                insert=insert, max_tokens=1, choices=tuple(self.legal_actions() or ()))]
        return [TurnRequest(player=int(info["player"]), observation=observation, insert=insert,
                            max_tokens=self.answer_tokens(), stop=(ANSWER_STOP,))]

    def random_action(self) -> str:
        """A uniformly random legal action (used by the ``"random"`` invalid rule)."""
        legal = self.legal_actions() or []
        return legal[int(self.np_random.integers(len(legal)))]

    # ----- Gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._done = False
        self._rewards = {}
        self._invalid_counts = [0] * self.num_players
        self._forfeit_by = None
        self._turn = 0
        self._new_game(dict(options or {}))
        return self._obs(), self._info(invalid=False)

    def step(self, action: str | Reply):
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        player = self.current_player()
        if self.answer_prefix is not None and isinstance(action, Mapping) and action.get("after_insert"):
            parsed = self.parse_answer(action_text(action))
        else:
            parsed = self.parse_action(action_text(action))
        invalid = parsed is None
        self._turn += 1
        if invalid:
            self._invalid_counts[player] += 1
            if self.invalid_action == "lose":
                self._done = True
                self._forfeit_by = player
                self._rewards = self._forfeit(player)
                return self._obs(), self._rewards[player], True, False, self._info(invalid=True)
            parsed = self.random_action()
        self._apply(parsed)
        if self._is_over():
            self._done = True
            self._rewards = {p: float(r) for p, r in self._returns().items()}
            return self._obs(), self._rewards[player], True, False, self._info(invalid, parsed)
        return self._obs(), 0.0, False, False, self._info(invalid, parsed)

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._obs()
        return None

    # ----- helpers -----------------------------------------------------------------------------
    def _forfeit(self, offender: int) -> dict[int, float]:
        """Every player's return when ``offender`` forfeits by an invalid action."""
        offender_return = self.min_return if self.invalid_reward is None else self.invalid_reward
        return forfeit_returns(offender, self.num_players, offender_return, self.opponent_invalid_reward)

    def _obs(self) -> str:
        if self._done:
            return self.final_observation()
        return self.observation(self.current_player())[:MAX_OBS_CHARS]

    def final_observation(self) -> str:
        """Text shown once the game is over (also what ``render`` returns then)."""
        scores = ", ".join(f"player {p}: {r:+g}" for p, r in sorted(self._rewards.items()))
        return f"The {self.title} game is over. Returns: {scores}."

    def _info(self, invalid: bool, action: str | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "turn": self._turn,
            "invalid": invalid,
            "invalid_counts": list(self._invalid_counts),
        }
        if action is not None:
            info["action"] = action
        if self._done:
            info["rewards"] = dict(self._rewards)
            info["player"] = -1
            if self._forfeit_by is not None:
                info["forfeit"] = self._forfeit_by
        else:
            info["player"] = self.current_player()
            legal = self.legal_actions()
            if legal is not None:
                info["legal_actions"] = list(legal)
        return info


__all__ = ["TextEpisodeEnv", "TurnBasedTextEnv", "TurnRequest", "Reply", "action_text", "ANSWER_FORMAT",
           "GAME_SYSTEM_PROMPT", "CHARSET", "candidate", "lenient_match", "check_reward", "forfeit_returns",
           "answer_prefix_problem", "answer_prefixes", "check_answer_prefix", "check_answer_choices",
           "ANSWER_BOX", "ANSWER_STOP"]
