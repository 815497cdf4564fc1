"""Checks that need the environments and the model's tokenizer, made before Ray or an engine
starts, so that a config that cannot work fails in seconds with one line instead of minutes later
(or, worse, trains on nothing and exits 0)."""

from __future__ import annotations

from typing import Any

from envs import LEAP_ID as LEAP
from selfplay.core.config_schema import Config, ConfigError


def opening_prompt_tokens(env_id: str, kwargs: dict[str, Any], tokenizer: Any, seed: int,
                          options: dict[str, Any] | None = None) -> int:
    """Tokens of an environment's first prompt (through the rollout chat template), reset with
    ``options``; without, where the environment has levels, at its largest configured one
    (``largest_level_options``)."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)

    return _opening_tokens(gym.make(env_id, **kwargs).unwrapped, tokenizer, seed, options)


def _opening_tokens(env: Any, tokenizer: Any, seed: int, options: dict[str, Any] | None = None) -> int:
    from actors.prompting import prompt_ids

    if options is None and hasattr(env, "largest_level_options"):
        options = env.largest_level_options()
    obs, _ = env.reset(seed=seed, options=options)
    return len(prompt_ids(tokenizer, obs, env.system_prompt))


def leap_path_tokens(kwargs: dict[str, Any], tokenizer: Any, seed: int) -> tuple[int, int]:
    """(opening prompt, most tokens one path generates) of a LeaP environment with ``kwargs``. The
    prompt counts the text that opens every path's answer (``prompt: leap``: LeaP's restated
    instructions), which is there from the first token on."""
    import gymnasium as gym

    import envs  # noqa: F401

    env = gym.make(LEAP, **kwargs).unwrapped
    opening = len(tokenizer.encode(env.opening, add_special_tokens=False)) if env.opening else 0
    return _opening_tokens(env, tokenizer, seed) + opening, env.path_budget


def check_leap_context(cfg: Config, model_path: str, tokenizer: Any = None) -> None:
    """A LeaP path (its prompt and everything it may generate) fits the engine's context,
    ``rollout.max_prompt_tokens + rollout.max_new_tokens`` (inserted peer comments come on top;
    a turn that would overflow is cut short at run time)."""
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path)
    configured = [(i, e.kwargs) for i, e in enumerate(cfg.envs) if e.id == LEAP] or [(None, {})]
    context = cfg.rollout.max_prompt_tokens + cfg.rollout.max_new_tokens
    for i, kwargs in configured:
        where = f"envs[{i}].kwargs={kwargs!r}" if i is not None else f"{LEAP}'s defaults"
        try:
            prompt, path = leap_path_tokens(kwargs, tokenizer, cfg.seed)
        except (TypeError, ValueError, OSError) as err:
            raise ConfigError(f"{where}: {LEAP} rejects them ({err})") from None
        if prompt + path > context:
            least = prompt + path - cfg.rollout.max_new_tokens
            raise ConfigError(
                f"rollout.max_prompt_tokens={cfg.rollout.max_prompt_tokens}: a LeaP path needs its "
                f"prompt ({prompt} tokens) plus up to {path} generated tokens ({where}) within "
                f"max_prompt_tokens + max_new_tokens = {context}; allow at least {least} "
                f"(more for the peers' comments)")


def check_before_start(cfg: Config, model_path: str) -> None:
    """Every environment builds with its kwargs, and its opening prompt fits
    ``rollout.max_prompt_tokens``; raises :class:`ConfigError` naming the field otherwise.
    ``model_path`` need only hold the tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    budget = cfg.rollout.max_prompt_tokens
    for i, env in enumerate(cfg.envs):
        try:
            needed = opening_prompt_tokens(env.id, env.kwargs, tokenizer, cfg.seed)
        except (TypeError, ValueError, OSError) as err:
            raise ConfigError(f"envs[{i}].kwargs={env.kwargs!r}: {env.id} rejects them ({err})") from None
        if env.id == cfg.curriculum.env:  # every level the curriculum may reach
            for j, level in enumerate(cfg.curriculum.levels):
                try:
                    tokens = opening_prompt_tokens(env.id, env.kwargs, tokenizer, cfg.seed, level)
                except (TypeError, ValueError, OSError) as err:
                    raise ConfigError(f"curriculum.levels[{j}]={level!r}: {env.id} rejects it ({err})") from None
                needed = max(needed, tokens)
        if needed > budget:
            raise ConfigError(
                f"rollout.max_prompt_tokens={budget}: the opening prompt of {env.id} alone takes "
                f"{needed} tokens with this model's chat template; allow at least {needed} "
                f"(later turns are longer)")
        if env.kwargs.get("answer_choices"):
            check_choice_tokens(env.id, env.kwargs, tokenizer, cfg.seed, f"envs[{i}]")
    if any(env.id == LEAP for env in cfg.envs):  # every configured LeaP env, once
        check_leap_context(cfg, model_path, tokenizer)


def check_choice_tokens(env_id: str, kwargs: dict[str, Any], tokenizer: Any, seed: int, key: str,
                        games: int = 8) -> None:
    """Constrained answers need every legal action to be one token after the prefix with this
    tokenizer: check the legal actions met in a few random games after every text the prefix's
    fields can fill it to (ConfigError otherwise)."""
    import gymnasium as gym
    import numpy as np

    from actors.episodes import choice_token_ids
    from envs.base import answer_prefixes

    env = gym.make(env_id, **kwargs).unwrapped
    inserts = answer_prefixes(env.answer_prefix, env.answer_fields)  # every filled prefix
    rng = np.random.default_rng(seed)
    met: dict[tuple[str, ...], None] = {}  # the legal-action sets met, in order, each once
    for game in range(games):
        _, info = env.reset(seed=seed + game)
        done = False
        while not done:
            legal = tuple(env.legal_actions() or ())
            met[legal] = None
            _, _, done, _, info = env.step(legal[int(rng.integers(len(legal)))])
    for legal in met:
        try:
            for insert in inserts:
                choice_token_ids(tokenizer, insert, legal)
        except ValueError as err:
            raise ConfigError(f"{key}.answer_choices=True: {err}") from None
