"""Checks that need the environments and the model's tokenizer, made before Ray or an engine
starts, so that a config that cannot work fails in seconds with one line instead of minutes later
(or, worse, trains on nothing and exits 0)."""

from __future__ import annotations

from typing import Any

from selfplay.core.config_schema import Config, ConfigError


def opening_prompt_tokens(env_id: str, kwargs: dict[str, Any], tokenizer: Any, seed: int,
                          options: dict[str, Any] | None = None) -> int:
    """Tokens of an environment's first prompt (through the rollout chat template), reset with
    ``options``; without, where the environment has levels, at its largest configured one
    (``largest_level_options``)."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)
    from actors.prompting import prompt_ids

    env = gym.make(env_id, **kwargs).unwrapped
    if options is None and hasattr(env, "largest_level_options"):
        options = env.largest_level_options()
    obs, _ = env.reset(seed=seed, options=options)
    return len(prompt_ids(tokenizer, obs))


def check_before_start(cfg: Config, model_path: str) -> None:
    """Every environment builds with its kwargs, and its opening prompt fits
    ``rollout.max_prompt_tokens``; raises :class:`ConfigError` naming the field otherwise."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    budget = cfg.rollout.max_prompt_tokens
    for i, env in enumerate(cfg.envs):
        try:
            needed = opening_prompt_tokens(env.id, env.kwargs, tokenizer, cfg.seed)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"envs[{i}].kwargs={env.kwargs!r}: {env.id} rejects them ({err})") from None
        if env.id == cfg.curriculum.env:  # every level the curriculum may reach
            for j, level in enumerate(cfg.curriculum.levels):
                try:
                    tokens = opening_prompt_tokens(env.id, env.kwargs, tokenizer, cfg.seed, level)
                except (TypeError, ValueError) as err:
                    raise ConfigError(f"curriculum.levels[{j}]={level!r}: {env.id} rejects it ({err})") from None
                needed = max(needed, tokens)
        if needed > budget:
            raise ConfigError(
                f"rollout.max_prompt_tokens={budget}: the opening prompt of {env.id} alone takes "
                f"{needed} tokens with this model's chat template; allow at least {needed} "
                f"(later turns are longer)")
