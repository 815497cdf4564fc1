"""``selfplay eval``: play games against fixed opponents and print a table per game, opponent
and role. The evaluated player is a model (through a rollout worker, in this process) or a fixed
opponent itself (``--player random``), which needs no model and shows what the rules imply.

For Kuhn Poker a model gets two more figures, both through :mod:`envs.kuhn_eval`'s exact
computation:

* **sampled** (the policy that plays): at each of the 12 information sets,
  ``eval.infoset_samples`` replies generated exactly as in training (the engine, prompt,
  temperature and token limit, the environment's own parser); the valid replies' action
  frequencies give the exploitability, with a 95% bootstrap interval, reported only where at most
  5% of the replies are invalid at every information set;
* **exact** (no sampling noise): the model's probability of each legal action's answer,
  renormalised over the legal actions: ``\\boxed{<action>}`` after the prompt at temperature 1
  with free answers (a different policy from the one that plays: it reasons first, at the
  training temperature), or the action's tokens after the prefilled ``answer_prefix`` at the
  training temperature in forced-answer mode (the action's one token alone with constrained
  answers, ``answer_choices``: exactly the distribution the engine samples from), where it is the
  played policy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from typing import Any

import gymnasium as gym

import envs
from actors.episodes import EpisodeLimits, EpisodeSpec, FixedPlayer, play_episode
from envs import kuhn_eval
from envs.opponents import opponent_names
from selfplay.config import Config, ConfigError, check_env_ids
from selfplay.core.samples import Episode
from selfplay.stats.episode_stats import eval_table, format_eval_table
from selfplay.stats.kuhn_figures import exact_metrics, sampled_metrics
from selfplay.commands.leap_eval import LEAP, run_leap_eval

KUHN = "selfplay/KuhnPoker-v0"


def play_fixed(env_id: str, player: str, opponent: str, role: int, games: int, seed: int = 0,
               env_kwargs: dict | None = None) -> list[Episode]:
    """``games`` games of fixed opponent ``player`` in ``role`` against ``opponent``."""
    env = gym.make(env_id, **(env_kwargs or {})).unwrapped
    limits = EpisodeLimits(max_turns=10_000, max_prompt_tokens=10**9, timeout_s=10**9)

    async def one(g: int) -> Episode:
        spec = EpisodeSpec(env_id=env_id, seed=seed * 100_003 + g, episode_id=f"{player}-{g}",
                           policy_roles=[role], opponent=opponent)
        me, them = FixedPlayer(env_id, player, spec.seed + 1), FixedPlayer(env_id, opponent, spec.seed + 2)
        players = {r: me if r == role else them for r in range(env.num_players)}
        return await play_episode(env, players, limits, spec)

    return [asyncio.run(one(g)) for g in range(games)]


def run_eval_command(cfg: Config, args: argparse.Namespace) -> int:
    """Parse the eval flags, play, print the table (or JSON)."""
    if getattr(args, "bench", None):
        from selfplay.commands.bench_eval import run_bench_command
        return run_bench_command(cfg, args)
    if isinstance(args.model, list):  # --model repeats only to compare models on benchmarks
        if len(args.model) > 1:
            raise ConfigError(f"--model given {len(args.model)} times: only --bench compares two models")
        args.model = args.model[0] if args.model else None
    if getattr(args, "samples", 4) is None:
        args.samples = 4
    if args.envs == "all":
        env_ids = list(envs.GAMES)
    elif args.envs:
        env_ids = [e if "/" in e else f"selfplay/{e}" for e in args.envs.split(",")]
    else:
        env_ids = [e.id for e in cfg.envs]
    check_env_ids(env_ids, "--envs")
    if envs.QA_ID in env_ids:
        raise ConfigError(f"--envs {args.envs}: evaluate {envs.QA_ID} with --bench NAME=SOURCE")
    if LEAP in env_ids:
        if len(env_ids) > 1:
            raise ConfigError(f"--envs {args.envs}: evaluate {LEAP} on its own (it prints its own table)")
        return run_leap_eval(cfg, args)
    levelled = [e for e in env_ids if e in envs.TASKS]
    if levelled:
        return _eval_levels_command(cfg, args, levelled)
    games = args.games or cfg.eval.games
    sampled = None
    if args.player == "model":
        episodes, sampled = asyncio.run(_eval_model(cfg, args.model or cfg.model, env_ids, games))
    else:
        episodes = []
        for env_id in env_ids:
            kwargs = next((e.kwargs for e in cfg.envs if e.id == env_id), {})
            for opponent in [o for o in cfg.eval.opponents if o in opponent_names(env_id)]:
                for role in range(envs.num_players(env_id)):
                    episodes += play_fixed(env_id, args.player, opponent, role, games, cfg.seed, kwargs)
    rows = eval_table(episodes)
    label = args.player if args.player != "model" else (args.model or cfg.model)
    exact = {}
    if args.player == "model" and KUHN in env_ids:
        from selfplay.model_cache import resolve_model

        exact = kuhn_exact(resolve_model(label), kuhn_answer_prefix(cfg), cfg.rollout.temperature,
                           kuhn_answer_choices(cfg))
    if args.json:
        print(json.dumps({"player": label, "results": rows, "kuhn_exact": exact,
                          "kuhn_sampled": sampled_json(sampled) if sampled else {}}))
        return 0
    print(f"player: {label}\n{format_eval_table(rows)}")
    if sampled:
        print(f"Kuhn Poker, sampled as in training (temperature {cfg.rollout.temperature}, "
              f"{cfg.rollout.max_new_tokens} tokens): exploitability {sampled.describe()}")
    if exact:
        what = ("the action's token after the prefilled prefix at the training temperature"
                if kuhn_answer_choices(cfg) else
                "the answer's tokens after the prefilled prefix at the training temperature"
                if kuhn_answer_prefix(cfg) else "the probability of answering \\boxed{a} at temperature 1")
        print(f"Kuhn Poker, exact ({what}, renormalised over the legal actions): "
              + ", ".join(f"{k.split('/')[-1]} {v:+.4f}" for k, v in exact.items()))
    return 0


def sampled_json(figures: kuhn_eval.SampledExploitability) -> dict[str, Any]:
    """The sampled figures as plain JSON: the metrics, the interval and each information set's
    invalid share."""
    return {**sampled_metrics(figures), "replies": figures.replies, "invalid_share": figures.invalid_share,
            "policy": figures.policy}


def kuhn_answer_prefix(cfg: Config) -> str | None:
    """The configured Kuhn Poker environment's forced-answer prefix, if it has one."""
    env = next((e for e in cfg.envs if e.id == KUHN), None)
    return (env.kwargs.get("answer_prefix") or None) if env else None


def kuhn_answer_choices(cfg: Config) -> bool:
    """Whether the configured Kuhn Poker environment constrains its answers (``answer_choices``)."""
    env = next((e for e in cfg.envs if e.id == KUHN), None)
    return bool(env.kwargs.get("answer_choices")) if env else False


def parse_levels(text: str | None) -> list[tuple[int, int, int]]:
    """``"3,5,20 3,7,40"`` -> [(3, 5, 20), (3, 7, 40)]; None -> SATURN's evaluation levels."""
    if not text:
        return list(SATURN_EVAL_LEVELS)
    levels = []
    for part in text.split():
        try:
            n, k, l = (int(x) for x in part.split(","))
        except ValueError:
            raise ConfigError(f"--levels: {part!r} is not n,k,l (e.g. 3,5,20)") from None
        levels.append((n, k, l))
    return levels


def _eval_levels_command(cfg: Config, args: argparse.Namespace, env_ids: list[str]) -> int:
    """``selfplay eval --envs SAT-v0``: pass@k per level, SATURN's table (reduced by default)."""
    from envs.sat import check_level
    from selfplay.model_cache import resolve_model

    if args.player != "model":
        raise ConfigError(f"--player {args.player}: {', '.join(env_ids)} has no fixed players; evaluate a model")
    if args.instances < 1 or args.samples < 1:
        raise ConfigError(f"--instances {args.instances} --samples {args.samples}: expected >= 1 each")
    levels = parse_levels(args.levels)
    for level in levels:
        try:
            check_level(*level)
        except ValueError as err:
            raise ConfigError(f"--levels: {err}") from None
    label = args.model or cfg.model
    path = resolve_model(label)
    results = {env_id: asyncio.run(eval_levels(cfg, path, env_id, levels, args.instances, args.samples))
               for env_id in env_ids}
    if args.json:
        print(json.dumps({"player": label, "levels": results}))
        return 0
    print(f"player: {label}")
    for env_id, rows in results.items():
        print(f"{env_id}: pass@k over {args.instances} problems x {args.samples} samples per level "
              f"(SATURN's table: 100 x 12, GPU work; these defaults are a reduced table for a CPU)")
        print(format_level_table(rows))
        mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k.startswith("pass@")}
        print("mean over levels: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    return 0


async def _eval_model(cfg: Config, model: str, env_ids: list[str], games: int
                      ) -> tuple[list[Episode], kuhn_eval.SampledExploitability | None]:
    """The games, and for Kuhn Poker the sampled exploitability (None where not asked for)."""
    from actors.rollout_worker import RolloutWorker
    from selfplay.model_cache import resolve_model

    worker = RolloutWorker(resolve_model(model), cfg.rollout, cfg.envs, cfg.eval, cfg.seed)
    await worker.init()
    try:
        episodes = await worker.evaluate(env_ids, cfg.eval.opponents, games, seed=cfg.seed)
        sampled = None
        if KUHN in env_ids and cfg.eval.infoset_samples:
            replies = await worker.sample_replies(KUHN, kuhn_eval.decision_points(), cfg.eval.infoset_samples)
            sampled = kuhn_eval.sampled_exploitability(replies, seed=cfg.seed)
        return episodes, sampled
    finally:
        worker.shutdown()


# ----- pass@k per level (SAT) --------------------------------------------------------------------

#: SATURN's 10 evaluation levels (n, k, l); it samples 12 answers per problem, 100 problems each.
SATURN_EVAL_LEVELS = ((3, 5, 20), (3, 5, 25), (3, 6, 20), (3, 7, 20), (3, 7, 40), (4, 7, 20),
                      (4, 7, 40), (4, 8, 40), (5, 8, 40), (6, 7, 40))
PASS_KS = (1, 3, 5, 7, 10)


def level_rows(episodes: list[Episode], level: tuple[int, int, int], instances: int,
               samples: int) -> dict[str, Any]:
    """One table row: unbiased pass@k over ``instances`` problems of ``samples`` answers each, the
    episodes grouped by the problem they were played on (``Episode.group_id``), whatever their
    order."""
    from envs.sat import difficulty
    from selfplay.stats.episode_stats import pass_at_k

    problems: dict[str | None, list[Episode]] = {}
    for e in episodes:
        problems.setdefault(e.group_id, []).append(e)
    sizes = sorted(len(group) for group in problems.values())
    if None in problems or len(problems) != instances or sizes != [samples] * instances:
        raise ValueError(f"level {level}: expected {instances} problems of {samples} answers each, "
                         f"got {len(problems)} groups of sizes {sizes}")
    passed = [sum(e.rewards.get(0, 0.0) > 0 for e in group) for group in problems.values()]
    row: dict[str, Any] = {"level": ",".join(map(str, level)), "D": round(difficulty(*level), 2),
                           "instances": instances, "samples": samples}
    for k in (k for k in PASS_KS if k <= samples):
        row[f"pass@{k}"] = sum(pass_at_k(samples, c, k) for c in passed) / instances
    return row


async def eval_levels(cfg: Config, model_path: str, env_id: str, levels: list[tuple[int, int, int]],
                      instances: int, samples: int) -> list[dict[str, Any]]:
    """pass@k of a model per level of a levelled environment (SAT), on fresh problems."""
    from actors.rollout_worker import RolloutWorker

    worker = RolloutWorker(model_path, cfg.rollout, cfg.envs, cfg.eval, cfg.seed)
    await worker.init()
    try:
        rows = []
        for level in levels:
            options = dict(zip("nkl", level))
            episodes = await worker.evaluate([env_id], [], instances, cfg.seed, options, samples)
            rows.append(level_rows(episodes, level, instances, samples))
        return rows
    finally:
        worker.shutdown()


def format_level_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of pass@k per level."""
    ks = [key for key in rows[0] if key.startswith("pass@")] if rows else []
    head = f"{'level':<10}{'D':>7}{'problems':>10}{'samples':>9}" + "".join(f"{k:>9}" for k in ks)
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['level']:<10}{r['D']:>7.2f}{r['instances']:>10}{r['samples']:>9}"
                     + "".join(f"{r[k]:>9.3f}" for k in ks))
    return "\n".join(lines)


# ----- Kuhn Poker, exactly ------------------------------------------------------------------------

def answer_logprobs(model: Any, prompt: list[int], answers: list[list[int]], temperature: float = 1.0
                    ) -> list[float]:
    """log p(answer | prompt) under ``model`` (a causal LM) with its logits divided by
    ``temperature``, summed over each answer's tokens: all answers in one forward pass,
    right-padded (a causal model's logits at a token never see the padding after it)."""
    import torch

    from learners.loss import token_logprobs

    width = max(len(a) for a in answers)
    rows = [prompt + a + [0] * (width - len(a)) for a in answers]
    mask = [[1] * (len(prompt) + len(a)) + [0] * (width - len(a)) for a in answers]
    with torch.no_grad():
        ids = torch.tensor(rows, device=model.device)
        logits = model(input_ids=ids, attention_mask=torch.tensor(mask, device=model.device)).logits
        return [float(token_logprobs(logits[i, len(prompt) - 1:len(prompt) - 1 + len(a)] / temperature,
                                     ids[i, len(prompt):len(prompt) + len(a)]).sum())
                for i, a in enumerate(answers)]


def infoset_inputs(tokenizer: Any, info: kuhn_eval.Infoset, answer_prefix: str | None = None,
                   answer_choices: bool = False) -> tuple[list[int], list[list[int]]]:
    """What a model is scored on at one information set: the prompt ids as the episode runner
    builds them (the chat, then the prefix with its fields filled, tokenized on its own) and each
    legal action's answer ids: ``\\boxed{a}`` without a prefix, ``a}`` after one, and with
    ``answer_choices`` the action's one token (what a constrained answer samples)."""
    from actors.episodes import choice_token_ids
    from actors.prompting import prompt_ids

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    env, observation, _ = kuhn_eval.infoset_env(info, {"answer_prefix": answer_prefix})
    legal = info.actions  # infoset_env checks the env offers exactly these, in this order
    ids = prompt_ids(tokenizer, observation, env.system_prompt)
    insert = env.answer_insert()  # the prefix as the runner inserts it here ($card filled)
    if insert is None:
        return ids, [encode(f"\\boxed{{{a}}}") for a in legal]
    if answer_choices:
        return ids + encode(insert), [[t] for t in choice_token_ids(tokenizer, insert, legal)]
    return ids + encode(insert), [encode(f"{a}}}") for a in legal]


def model_policy(model: Any, tokenizer: Any, answer_prefix: str | None = None,
                 temperature: float = 1.0, answer_choices: bool = False) -> dict[str, dict[str, float]]:
    """The model's action probabilities at every information set (both roles), renormalised over
    the legal actions' answers of :func:`infoset_inputs` at ``temperature``."""
    policy = {}
    for info in kuhn_eval.INFOSETS:
        ids, answers = infoset_inputs(tokenizer, info, answer_prefix, answer_choices)
        scores = answer_logprobs(model, ids, answers, temperature)
        top = max(scores)
        weights = [math.exp(s - top) for s in scores]
        policy[info.key] = {a: w / sum(weights) for a, w in zip(info.actions, weights)}
    return policy


def kuhn_exact(model_path: str, answer_prefix: str | None = None, temperature: float = 0.7,
               answer_choices: bool = False) -> dict[str, float]:
    """Load a model folder with transformers (float32) and return its exact Kuhn Poker figures:
    free answers at temperature 1, forced answers (``answer_prefix``, constrained with
    ``answer_choices``) at ``temperature``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    policy = model_policy(model, AutoTokenizer.from_pretrained(model_path), answer_prefix,
                          temperature if answer_prefix else 1.0, answer_choices)
    return exact_metrics(policy)
