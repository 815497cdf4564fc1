"""The episode loop: one loop for every environment, in training, evaluation and ``selfplay play``.

The loop knows environments only through their contract (:class:`envs.base.TextEpisodeEnv`):
each round it asks the environment for the turns to generate next (``turn_requests``: one for a
turn-based game, every pending path for LeaP), has the players write them (concurrently: the
turns of a round are independent), steps the environment with each reply in order, and at the end
builds one :class:`Episode`. A new kind of episode is a new environment, not an edit here.

Every role is played by a :class:`Player`: the policy's engine (whose contexts become training
samples), a frozen snapshot's engine, a fixed opponent (``random``, ``strong``), or, in
``selfplay play``, a person at the terminal. :class:`EpisodeRunner` builds the players for training
and evaluation specs and plays many episodes concurrently against one engine. Every engine turn
awaits ``engine.generate``, so the turns of all running episodes reach the engine as they arrive
and are batched together there (continuous batching): no game waits for the slowest game.

An engine player answers a fresh turn in a new chat (the observation through the chat template,
under the environment's system prompt) and continues a turn that ``extends`` in the same
assistant message, splicing token ids (:mod:`actors.contexts`); each context is one sample. A
request's ``insert`` goes in first either way, tokenized on its own and masked out of the loss: on
a fresh turn it opens the assistant message (a game's forced-answer prefix, ``\\boxed{``), so the
sample is chat prompt, then the inserted ids (mask 0), then what the engine wrote (mask 1, with
its log-probs). The reply says so (``after_insert``): the text is what the engine wrote after the
insert, and the environment, which owns the insert, reads the two together.

Limits keep a run healthy and never crash the loop:

* ``max_turns``: an episode still running after this many turns (all roles) ends *truncated*
  (not for ``bounded`` environments, whose episodes end by construction);
* ``max_prompt_tokens``: a fresh turn whose prompt is longer ends the episode *truncated*; a turn
  that extends a context gets at most what is left of ``max_prompt_tokens + max_new_tokens``;
* ``timeout_s``: an episode running longer ends as *timeout*.

Truncated and timed-out episodes give every role ``truncated_return`` (0 by default, which keeps
zero-sum games zero-sum); what the policy wrote until then is kept as samples.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the environment ids)
from actors.contexts import Context
from actors.engine import Engine, SamplingSettings
from actors.prompting import prompt_ids
from envs.base import TextEpisodeEnv, TurnRequest
from envs.opponents import make_opponent
from selfplay.core import metric_names as names
from selfplay.core.policies import DEFAULT_POLICY, opponent_policy
from selfplay.core.samples import SELF, Episode, Sample


@dataclass(frozen=True)
class EpisodeLimits:
    """Per-episode limits (see the module docstring)."""

    max_turns: int = 32
    max_prompt_tokens: int = 1536
    timeout_s: float = 600.0
    truncated_return: float = 0.0


@dataclass
class EpisodeSpec:
    """What to play: the game, its seed, which roles the policy plays and who plays the others.

    ``opponent`` is ``"self"`` when the policy plays every role, else a fixed opponent's name or
    the name of a frozen snapshot whose engine the runner holds.
    """

    env_id: str
    seed: int
    episode_id: str
    policy_roles: list[int]
    opponent: str = SELF
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] | None = None
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    #: Episodes on the same problem share it; their samples form one advantage group.
    group_id: str | None = None
    #: With several policies (``policies:``): the adapter that writes each engine-played role
    #: (:mod:`selfplay.core.policies`); empty: the engine's one policy plays.
    adapters: dict[int, str] = field(default_factory=dict)


class PromptTooLong(Exception):
    """A turn's prompt exceeds ``max_prompt_tokens``: the episode ends truncated."""


@dataclass
class Turn:
    """What a player wrote: the text, whether the engine ended it itself, how many tokens; for the
    policy being trained, the context it wrote into (a sample at the end). ``after_insert``: the
    text continues the request's ``insert`` (an engine's turn; a fixed opponent or a person
    answers with a whole action instead)."""

    text: str
    finished: bool = True
    tokens: int = 0
    context: Context | None = None
    after_insert: bool = False

    def reply(self) -> dict[str, Any]:
        """What the environment's ``step`` receives (:data:`envs.base.Reply`)."""
        return {"text": self.text, "finished": self.finished, "tokens": self.tokens,
                "after_insert": self.after_insert}


class Player(Protocol):
    """Writes the turns of one or more roles."""

    async def act(self, env: Any, request: TurnRequest) -> Turn: ...


class FixedPlayer:
    """A fixed opponent from :mod:`envs.opponents` (``random``, ``strong``), seeded."""

    def __init__(self, env_id: str, name: str, seed: int) -> None:
        self.opponent = make_opponent(env_id, name)
        self.rng = np.random.default_rng(seed)

    async def act(self, env: Any, request: TurnRequest) -> Turn:
        return Turn(self.opponent.act(env, self.rng))


class EnginePlayer:
    """An engine writing turns through the chat template. With ``record`` (the policy being
    trained) its turns carry their contexts, which become samples; a snapshot records nothing.

    A fresh turn's prompt may hold ``max_prompt_tokens``; an extended context may grow to that plus
    ``sampling.max_new_tokens`` (a turn that would not fit is shortened, to nothing if need be)."""

    def __init__(self, engine: Engine, tokenizer: Any, sampling: SamplingSettings,
                 max_prompt_tokens: int, record: bool = False,
                 version: Callable[[], int] = lambda: 0, adapters: dict[int, str] | None = None) -> None:
        self.engine, self.tokenizer, self.sampling = engine, tokenizer, sampling
        self.max_prompt_tokens, self.record = max_prompt_tokens, record
        #: Each role's LoRA adapter (several policies on one engine); a role not in it: the
        #: engine's one policy.
        self.adapters = adapters or {}
        #: The engine's weight version now; read as each generation starts (``Sample.weight_version``).
        self.version = version
        self.open: dict[int, Context] = {}  # each role's current context
        self.started = 0  # contexts started so far (a sample's ``turn``)

    def _context(self, env: Any, request: TurnRequest) -> Context:
        ctx = self.open.get(request.player)
        if ctx is not None and request.extends:
            return ctx
        ids = prompt_ids(self.tokenizer, request.observation, env.system_prompt)
        if len(ids) > self.max_prompt_tokens:
            raise PromptTooLong(f"prompt of {len(ids)} tokens > max_prompt_tokens={self.max_prompt_tokens}")
        ctx = self.open[request.player] = Context(ids, role=request.player, index=self.started,
                                                  policy=self.adapters.get(request.player, DEFAULT_POLICY))
        self.started += 1
        return ctx

    async def act(self, env: Any, request: TurnRequest) -> Turn:
        ctx = self._context(env, request)
        if request.trim_chars:
            ctx.trim(self.tokenizer, ctx.last_text, request.trim_chars)
        if request.insert:
            ctx.insert(self.tokenizer.encode(request.insert, add_special_tokens=False))
        limit = self.sampling.max_new_tokens if request.max_tokens is None else request.max_tokens
        room = self.max_prompt_tokens + self.sampling.max_new_tokens - len(ctx.prompt) - len(ctx.ids)
        budget = min(limit, room)
        if budget <= 0:
            return Turn("", finished=False, context=ctx if self.record else None, after_insert=True)
        sampling = replace(self.sampling, max_new_tokens=budget,
                           stop=tuple(request.stop) + tuple(self.sampling.stop))
        if request.choices:
            if any(ctx.mask):  # a sample is scored under one constraint, on its one token
                raise ValueError("a constrained answer must open its own context (request.extends)")
            ctx.allowed = choice_token_ids(self.tokenizer, request.insert, request.choices)
            sampling = replace(sampling, max_new_tokens=1, allowed_token_ids=ctx.allowed, stop=())
        # Read before generating: an update landing mid-generation leaves the older version.
        version = self.version()
        adapter = self.adapters.get(request.player)
        gen = await (self.engine.generate(ctx.prompt + ctx.ids, sampling) if adapter is None else
                     self.engine.generate(ctx.prompt + ctx.ids, sampling, adapter=adapter))
        ctx.generated(list(gen.token_ids), list(gen.logprobs), gen.text, version)
        finished = gen.finish_reason == "stop" or bool(request.choices)  # one token is the answer
        return Turn(gen.text, finished, len(gen.token_ids), ctx if self.record else None,
                    after_insert=True)


@functools.lru_cache(maxsize=256)  # a game asks the same few sets every turn
def choice_token_ids(tokenizer: Any, insert: str, choices: tuple[str, ...]) -> tuple[int, ...]:
    """The token id of each choice written right after ``insert``, or a one-line ValueError: a
    constrained answer is one token, so every choice must tokenize, after the insert, to the
    insert's own tokens and exactly one more, which decodes back to the choice, distinct from the
    other choices'."""
    head = tokenizer.encode(insert, add_special_tokens=False)
    ids = []
    for choice in choices:
        full = tokenizer.encode(insert + choice, add_special_tokens=False)
        if (full[:len(head)] != head or len(full) != len(head) + 1
                or tokenizer.decode(full[len(head):]) != choice):
            raise ValueError(f"the action {choice!r} is {len(full) - len(head)} "
                             f"tokens after {insert!r} for this tokenizer; constrained answers "
                             f"(answer_choices) need every legal action to be one token")
        ids.append(full[-1])
    if len(set(ids)) != len(ids):
        raise ValueError(f"the actions {choices} share a token after {insert!r}: a "
                         f"constrained answer (answer_choices) could not tell them apart")
    return tuple(ids)


@dataclass
class _Progress:
    """What an episode has produced so far; survives a timeout."""

    contexts: dict[int, Context] = field(default_factory=dict)  # by id, in order of first turn
    transcript: list[str] = field(default_factory=list)
    turns: int = 0
    tokens: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def record(self, request: TurnRequest, turn: Turn, info: dict[str, Any]) -> None:
        if turn.context is not None:
            self.contexts.setdefault(id(turn.context), turn.context)
            self.tokens += turn.tokens
        self.turns += 1
        self.info = info
        action = info.get("action", "INVALID" if info.get("invalid") else None)
        self.transcript.append(f"[player {request.player}] {turn.text.strip()!r}"
                               + (f" -> {action}" if action is not None else ""))


async def play_episode(env: TextEpisodeEnv, players: dict[int, Player], limits: EpisodeLimits,
                       spec: EpisodeSpec) -> Episode:
    """Play one episode of ``env`` (reset here with the spec's seed and options) to its end,
    truncation or timeout; ``players[role]`` plays ``role``."""
    progress = _Progress()
    try:
        outcome = await asyncio.wait_for(_play(env, players, limits, spec, progress), limits.timeout_s)
    except asyncio.TimeoutError:
        outcome = "timeout"
    return _episode(env, spec, limits, progress, outcome)


async def _play(env: TextEpisodeEnv, players: dict[int, Player], limits: EpisodeLimits,
                spec: EpisodeSpec, progress: _Progress) -> str:
    """Run the episode; returns its outcome (``finished``, ``invalid`` or ``truncated``)."""
    obs, info = env.reset(seed=spec.seed, options=spec.options)
    progress.info = info  # what the episode reports if it is cut short before any step
    while True:
        if not env.bounded and progress.turns >= limits.max_turns:
            return "truncated"
        requests = env.turn_requests(obs, info)
        try:  # the turns of one round are independent: written concurrently, stepped in order
            turns = await asyncio.gather(*(players[r.player].act(env, r) for r in requests))
        except PromptTooLong:
            return "truncated"
        for request, turn in zip(requests, turns):
            obs, _, terminated, truncated, info = env.step(turn.reply())
            progress.record(request, turn, info)
            if terminated or truncated:
                return "invalid" if info.get("forfeit") is not None else "finished"


def _episode(env: TextEpisodeEnv, spec: EpisodeSpec, limits: EpisodeLimits, progress: _Progress,
             outcome: str) -> Episode:
    """The one place an :class:`Episode` is built: returns from the environment when it ended by
    its rules, ``truncated_return`` for every role otherwise; each context the policy wrote in
    becomes a sample credited with its role's return."""
    ended = "rewards" in progress.info and outcome in ("finished", "invalid")
    rewards = ({int(p): float(r) for p, r in progress.info["rewards"].items()} if ended
               else {p: limits.truncated_return for p in range(env.num_players)})
    samples = [Sample(prompt_ids=list(c.prompt), response_ids=list(c.ids), logprobs=list(c.logprobs),
                      loss_mask=list(c.mask), env_id=spec.env_id, role=c.role, ret=rewards[c.role],
                      episode_id=spec.episode_id, turn=c.index, opponent=spec.opponent,
                      group_id=spec.group_id, allowed_ids=c.allowed, weight_version=c.version or 0,
                      policy=c.policy)
               for c in progress.contexts.values() if c.written]
    stats = progress.info.get("stats", {}) if ended else {}
    return Episode(
        env_id=spec.env_id, episode_id=spec.episode_id, samples=samples, rewards=rewards,
        policy_roles=list(range(env.num_players)) if spec.opponent == SELF else list(spec.policy_roles),
        opponent=spec.opponent, outcome=outcome, num_turns=progress.turns,
        invalid_counts=list(progress.info.get("invalid_counts", [])),
        transcript="\n".join(progress.transcript),
        generated_tokens=progress.tokens, group_id=spec.group_id,
        forfeit=int(progress.info["forfeit"]) if outcome == "invalid" else None, seed=spec.seed,
        extra={names.episode_stat(env.stats_prefix, k): v for k, v in stats.items()})


class EpisodeRunner:
    """Plays episodes with ``engine`` for the policy's roles, and snapshots or fixed opponents in
    the others."""

    def __init__(self, engine: Engine, tokenizer: Any, limits: EpisodeLimits,
                 opponent_engines: dict[str, Engine] | None = None,
                 version: Callable[[], int] = lambda: 0) -> None:
        self.engine = engine
        #: The weight version ``engine`` holds now (the rollout worker's), stamped on every turn.
        self.version = version
        self.tokenizer = tokenizer
        self.limits = limits
        #: Engines of frozen snapshots, by opponent name (shared with the owner, who adds to it).
        self.opponent_engines = opponent_engines if opponent_engines is not None else {}

    async def run_many(self, specs: list[EpisodeSpec]) -> list[Episode]:
        """Play all episodes concurrently; results in the order of ``specs``."""
        return list(await asyncio.gather(*(self.run(spec) for spec in specs)))

    async def run(self, spec: EpisodeSpec) -> Episode:
        """Play one episode to its end, truncation or timeout."""
        return await self.play(gym.make(spec.env_id, **spec.env_kwargs).unwrapped, spec)

    async def play(self, env: TextEpisodeEnv, spec: EpisodeSpec) -> Episode:
        """Play ``spec`` on ``env`` (made from the spec, or built by the caller)."""
        policy = EnginePlayer(self.engine, self.tokenizer, spec.sampling, self.limits.max_prompt_tokens,
                              record=True, version=self.version, adapters=spec.adapters)
        snapshot = self.opponent_engines.get(spec.opponent)
        rival = opponent_policy(spec.opponent)
        other: Player
        if rival is not None:  # another adapter of this run, on the same engine; not trained here
            other = EnginePlayer(self.engine, self.tokenizer, spec.sampling, self.limits.max_prompt_tokens,
                                 adapters={r: rival for r in range(env.num_players)})
        elif snapshot is not None:
            other = EnginePlayer(snapshot, snapshot.tokenizer, spec.sampling, self.limits.max_prompt_tokens)
        elif spec.opponent != SELF:
            other = FixedPlayer(spec.env_id, spec.opponent, spec.seed + 1)
        else:
            other = policy
        players = {role: policy if spec.opponent == SELF or role in spec.policy_roles else other
                   for role in range(env.num_players)}
        return await play_episode(env, players, self.limits, spec)


#: A decision point: the reset options and the actions (plain legal action strings) that lead
#: from the reset to the turn to sample.
DecisionPoint = tuple[dict[str, Any] | None, list[str]]


async def sample_replies(engine: Engine, tokenizer: Any, sampling: SamplingSettings, max_prompt_tokens: int,
                         env_id: str, env_kwargs: dict[str, Any], points: dict[str, DecisionPoint],
                         n: int, adapters: dict[int, str] | None = None) -> dict[str, list[str | None]]:
    """``n`` replies of the policy at each decision point, each written and parsed exactly as in
    an episode (the environment's own turn request, prompt and parser): ``{point: [the action
    each reply played, None where it was invalid]}``. All replies are generated concurrently.
    ``adapters``: with several policies, the adapter that plays each role (in self-play)."""

    async def one(point: DecisionPoint) -> str | None:
        env = gym.make(env_id, **env_kwargs).unwrapped
        obs, info = env.reset(seed=0, options=point[0])
        for action in point[1]:
            obs, _, _, _, info = env.step(action)
        request = env.turn_requests(obs, info)[0]
        turn = await EnginePlayer(engine, tokenizer, sampling, max_prompt_tokens,
                                  adapters=adapters).act(env, request)
        _, _, _, _, after = env.step(turn.reply())
        return None if after.get("invalid") else after.get("action")

    keys = list(points)
    replies = await asyncio.gather(*(one(points[k]) for k in keys for _ in range(n)))
    return {k: list(replies[i * n:(i + 1) * n]) for i, k in enumerate(keys)}

