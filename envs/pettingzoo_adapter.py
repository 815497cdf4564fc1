"""PettingZoo adapter: any :class:`~envs.base.TurnBasedTextEnv` as a ``pettingzoo.AECEnv``.

``to_aec("selfplay/TicTacToe-v0")`` (or ``to_aec(env_instance)``) gives an agent-environment-cycle
environment for tools built on PettingZoo. The game is not re-implemented: every move goes through
the base env's ``step``, so parsing, the invalid-action rule and the returns are exactly those of
the Gymnasium environment.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv

from envs.base import MAX_OBS_CHARS, TurnBasedTextEnv


class TextObservation(str):
    """A ``str`` that carries the dtype Gymnasium gives :class:`gymnasium.spaces.Text`.

    PettingZoo's ``api_test`` compares ``observation.dtype`` with ``observation_space.dtype``, a
    check written for arrays; a plain ``str`` has no ``dtype`` and fails it. Subclassing ``str``
    keeps the observation an ordinary string everywhere else (tokenizers, ``Text.contains``).
    """

    __slots__ = ()
    dtype: ClassVar[np.dtype] = np.dtype(str)


def agent_name(player: int) -> str:
    """The PettingZoo agent name of a player index."""
    return f"player_{player}"


class TextAECEnv(AECEnv[str, str, str]):
    """A turn-based selfplay text game seen through PettingZoo's AEC API.

    ## Description
    A thin adapter over a :class:`~envs.base.TurnBasedTextEnv`: the wrapped env keeps the rules
    and this class keeps PettingZoo's bookkeeping (``agents``, ``rewards``, ``terminations``,
    ``truncations``, ``infos``, ``agent_selection``, cumulative rewards).

    ## Roles
    Player ``i`` of the base env is agent ``"player_i"``. ``agent_selection`` is the base env's
    ``info["player"]`` while the game runs.

    ## Action Space
    The base env's ``Text`` action space (one copy per agent, so seeding one agent's space does
    not move another's). Any string is an action; the base env's invalid-action rule applies.
    ``None`` from a live agent is passed on as ``""`` (an invalid action), so it never raises.

    ## Observation Space
    The base env's ``Text`` observation space (one copy per agent). ``observe(agent)`` returns the
    base env's ``observation(player)`` (that player's prompt) while the game runs and its final
    observation once it is over, as a :class:`TextObservation`.

    ## Rewards
    Zero on every move but the last; the move that ends the game gives every agent its return
    from the base env's ``info["rewards"]``. ``last()`` reports the reward accumulated since the
    agent last acted, as PettingZoo requires. A forfeit (an invalid action under the base env's
    ``"lose"`` rule) is scored by the base env: ``invalid_reward`` for the offender and
    ``opponent_invalid_reward`` for the others (by default the worst return and 0: not zero-sum),
    and every agent's info holds the base env's ``"forfeit"`` (the offender's player index).

    ## Starting State
    ``reset(seed=, options=)`` resets the base env with the same arguments.

    ## Episode End
    When the base env terminates (or truncates), every agent is terminated (truncated) at once.
    ``agent_selection`` then moves to the agent after the one that moved, so the others see the
    outcome first, as in PettingZoo's classic games; each dead agent must then be stepped with
    ``None`` and leaves ``agents``.

    ## Info
    Every agent's info is a copy of the base env's ``info``; ``"legal_actions"`` is kept only in
    the info of the agent to act, since the list is that player's.

    ## Arguments
    * ``env``: the base environment (a Gymnasium wrapper around one is unwrapped).

    ## Version History
    * v0: initial version.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "name": "selfplay_text_aec",
                                "is_parallelizable": False}

    def __init__(self, env: TurnBasedTextEnv) -> None:
        super().__init__()
        self.env = env
        name = env.spec.id if env.spec is not None else type(env).__name__
        self.metadata = {**type(self).metadata, "name": name}
        self.render_mode = env.render_mode
        self.possible_agents = [agent_name(p) for p in range(env.num_players)]
        self.observation_spaces: dict[str, spaces.Space] = {
            a: copy.deepcopy(env.observation_space) for a in self.possible_agents}
        self.action_spaces: dict[str, spaces.Space] = {
            a: copy.deepcopy(env.action_space) for a in self.possible_agents}
        self.agents: list[str] = []
        self.rewards: dict[str, float] = {}
        self._cumulative_rewards: dict[str, float] = {}
        self.terminations: dict[str, bool] = {}
        self.truncations: dict[str, bool] = {}
        self.infos: dict[str, dict[str, Any]] = {}
        self.agent_selection = self.possible_agents[0]
        self._final_obs: str | None = None

    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        _, info = self.env.reset(seed=seed, options=options)
        self.agents = self.possible_agents[:]
        self.rewards = {a: 0.0 for a in self.agents}
        self._cumulative_rewards = {a: 0.0 for a in self.agents}
        self.terminations = {a: False for a in self.agents}
        self.truncations = {a: False for a in self.agents}
        self._final_obs = None
        # _was_dead_step keeps this between calls; a reset mid-teardown must not inherit it.
        self._skip_agent_selection = None
        self._set_infos(info)
        self.agent_selection = agent_name(info["player"])

    def step(self, action: str | None) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        # The agent collected its earlier rewards through last(); it starts afresh from here.
        self._cumulative_rewards[agent] = 0.0
        text = "" if action is None else str(action)
        obs, _, terminated, truncated, info = self.env.step(text)
        if terminated or truncated:
            returns = info.get("rewards", {})
            self._final_obs = obs
            self.rewards = {a: float(returns.get(p, 0.0)) for p, a in enumerate(self.possible_agents)}
            self.terminations = {a: bool(terminated) for a in self.agents}
            self.truncations = {a: bool(truncated) for a in self.agents}
            mover = self.possible_agents.index(agent)
            self.agent_selection = self.possible_agents[(mover + 1) % len(self.possible_agents)]
        else:
            self.rewards = {a: 0.0 for a in self.agents}
            self.agent_selection = agent_name(info["player"])
        self._set_infos(info)
        self._accumulate_rewards()

    def observe(self, agent: str) -> TextObservation:
        if self._final_obs is not None:
            return TextObservation(self._final_obs)
        player = self.possible_agents.index(agent)
        return TextObservation(self.env.observation(player)[:MAX_OBS_CHARS])

    def render(self) -> str | None:
        return self.env.render()

    def close(self) -> None:
        self.env.close()

    def _set_infos(self, info: dict[str, Any]) -> None:
        acting = info.get("player", -1)
        self.infos = {}
        for p, a in enumerate(self.possible_agents):
            if a not in self.agents:
                continue
            own = copy.deepcopy(info)
            if p != acting:
                own.pop("legal_actions", None)
            self.infos[a] = own


def to_aec(env_id_or_env: str | gym.Env, **kwargs: Any) -> TextAECEnv:
    """Wrap a selfplay game as a PettingZoo AEC environment.

    Args:
        env_id_or_env: a registered id such as ``"selfplay/TicTacToe-v0"`` (built with
            ``gym.make(id, **kwargs)``), or an already built :class:`TurnBasedTextEnv` (or a
            Gymnasium wrapper around one).
        **kwargs: constructor arguments, e.g. ``invalid_action="random"``, ``render_mode="ansi"``,
            ``invalid_reward=-1.5, opponent_invalid_reward=0.5``; only with an id, since a built
            env already has them.

    Returns:
        A :class:`TextAECEnv`; call ``reset()`` before use, as with every PettingZoo env.

    Raises:
        TypeError: kwargs given with an env instance, or the env is not a turn-based text game.
    """
    if isinstance(env_id_or_env, str):
        env = gym.make(env_id_or_env, **kwargs).unwrapped
    else:
        if kwargs:
            raise TypeError(f"to_aec: kwargs {sorted(kwargs)} apply only when building from an id")
        env = env_id_or_env.unwrapped if isinstance(env_id_or_env, gym.Env) else env_id_or_env
    if not isinstance(env, TurnBasedTextEnv):
        raise TypeError(f"to_aec: expected a TurnBasedTextEnv, got {type(env).__name__}")
    return TextAECEnv(env)


__all__ = ["TextAECEnv", "TextObservation", "agent_name", "to_aec"]
