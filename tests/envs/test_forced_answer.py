"""Forced-answer mode (``answer_prefix``, envs.base): the turn request carries the prefix, the
engine's reply is read strictly as prefix + text, and players that answer with a whole action
(fixed opponents, a person in ``selfplay play``) are read as without a prefix."""

from __future__ import annotations

import asyncio

import gymnasium as gym
import pytest

import envs
from actors.episodes import EpisodeLimits, EpisodeSpec, FixedPlayer, play_episode
from envs.base import TurnRequest

KUHN = "selfplay/KuhnPoker-v0"
BOX = "\\boxed{"


def kuhn(**kwargs):
    env = gym.make(KUHN, answer_prefix=BOX, **kwargs).unwrapped
    obs, info = env.reset(seed=0, options={"cards": ["K", "J"]})
    return env, obs, info


def engine_reply(text: str) -> dict:
    """What the runner reports for an engine's turn: the text written after the insert."""
    return {"text": text, "finished": text.endswith("}"), "tokens": 2, "after_insert": True}


@pytest.mark.parametrize("env_id", list(envs.GAMES))
def test_every_game_asks_for_the_prefix_a_closing_brace_and_few_tokens(env_id):
    env = gym.make(env_id, answer_prefix=BOX).unwrapped
    obs, info = env.reset(seed=0)
    (request,) = env.turn_requests(obs, info)
    assert request == TurnRequest(player=info["player"], observation=obs, insert=BOX, stop=("}",),
                                  max_tokens=env.answer_tokens())
    assert not request.extends and request.trim_chars == 0
    legal = info.get("legal_actions")
    assert env.answer_tokens() == (max(8, max(map(len, legal)) + 2) if legal else 32)


@pytest.mark.parametrize("env_id", list(envs.GAMES))
def test_without_a_prefix_the_turn_request_is_as_before(env_id):
    env = gym.make(env_id).unwrapped
    obs, info = env.reset(seed=0)
    assert env.answer_prefix is None
    assert env.turn_requests(obs, info) == [TurnRequest(player=info["player"], observation=obs)]


@pytest.mark.parametrize("text, action", [
    ("bet}", "bet"), ("check}", "check"),
    ("Bet}", "bet"), (" bet }", "bet"),  # a box's usual reading: case and spacing aside
    ("bet}.", "bet"), ("bet} and more", "bet"),  # generation stops at the brace; a token's tail is no answer
])
def test_an_exact_boxed_legal_action_is_played(text, action):
    env, _, _ = kuhn()
    _, _, _, _, info = env.step(engine_reply(text))
    assert not info["invalid"] and info["action"] == action


@pytest.mark.parametrize("text", [
    "bet",  # the box never closed (token limit or end of sequence)
    "",
    "}",
    "I bet}",  # names a legal action, but is not one
    "bet or check}",
    "ACTION}",
    "[bet]}",  # no bracket reading
    "\\text{bet}}",  # no brace inside the box
    "raise}",
])
@pytest.mark.parametrize("lenient", [False, True])
def test_anything_else_is_invalid_even_for_a_lenient_game(text, lenient):
    env, _, _ = kuhn(lenient=lenient, invalid_action="lose")
    _, reward, terminated, _, info = env.step(engine_reply(text))
    assert info["invalid"] and terminated and info["forfeit"] == 0
    assert env.lenient is lenient  # the strict read leaves the setting as it was


def test_strict_reading_applies_each_games_own_box_rule():
    dice = gym.make("selfplay/LiarsDice-v0", answer_prefix=BOX).unwrapped
    obs, info = dice.reset(seed=0)
    bid = info["legal_actions"][0]
    assert dice.parse_answer(bid + "}") == bid and dice.parse_answer(bid) is None
    talk = gym.make("selfplay/SimpleNegotiation-v0", answer_prefix=BOX).unwrapped
    talk.reset(seed=0)
    assert talk.parse_answer("deny}") is None  # no offer waits yet
    assert talk.parse_answer("offer 1 wood for 1 sheep") is None


def test_a_plain_action_is_read_as_without_a_prefix():
    # A fixed opponent's or a person's move is a whole action (no after_insert): the usual reading.
    for action in ("bet", {"text": "bet", "finished": True, "tokens": 0}, "\\boxed{bet}",
                   {"text": "bet", "after_insert": False}):
        env, _, _ = kuhn()
        _, _, _, _, info = env.step(action)
        assert not info["invalid"] and info["action"] == "bet", action


def test_the_prefix_must_hold_a_box_left_open():
    for bad in ("", "Answer:", "\\boxed{bet}", "\\boxed{} then \\boxed{x}", 5):
        with pytest.raises(ValueError, match=r"^answer_prefix=.*: expected null or a string holding "
                                             r"\\boxed\{ with no \} after it$"):
            gym.make(KUHN, answer_prefix=bad)
    assert gym.make(KUHN, answer_prefix="My action: \\boxed{").unwrapped.answer_prefix == "My action: \\boxed{"


def test_the_prefix_fills_the_acting_players_card():
    env = gym.make(KUHN, answer_prefix="\\boxed{$card", answer_choices=True).unwrapped
    obs, info = env.reset(seed=0, options={"cards": ["K", "J"]})
    (request,) = env.turn_requests(obs, info)
    assert request.insert == "\\boxed{K" and request.choices == ("check", "bet")
    obs, _, _, _, info = env.step(engine_reply("bet"))  # player 1 holds J and faces the bet
    (request,) = env.turn_requests(obs, info)
    assert info["player"] == 1 and request.insert == "\\boxed{J" and request.choices == ("call", "fold")
    _, _, done, _, info = env.step(engine_reply("fold"))
    assert done and info["rewards"] == {0: 1.0, 1: -1.0}


def test_a_prefix_field_must_be_one_the_game_fills():
    with pytest.raises(ValueError, match=r"^answer_prefix='\\\\boxed\{\$hand': \$hand is not a field "
                                         r"this game fills \(it fills: \$card\)$"):
        gym.make(KUHN, answer_prefix="\\boxed{$hand")
    with pytest.raises(ValueError, match=r"\$card is not a field this game fills \(it fills: none\)"):
        gym.make("selfplay/TicTacToe-v0", answer_prefix="\\boxed{$card")
    with pytest.raises(ValueError, match=r"a \$ must start a field name"):
        gym.make(KUHN, answer_prefix="$ 5 \\boxed{")
    # $$ is a literal dollar sign
    assert gym.make(KUHN, answer_prefix="$$ \\boxed{").unwrapped.answer_insert() == "$ \\boxed{"


def test_every_text_a_prefix_can_fill_to():
    from envs.base import answer_prefixes

    assert answer_prefixes("\\boxed{", {"card": ("J", "Q", "K")}) == ["\\boxed{"]
    assert answer_prefixes("$card \\boxed{$card", {"card": ("J", "Q", "K")}) == [
        "J \\boxed{J", "Q \\boxed{Q", "K \\boxed{K"]


@pytest.mark.parametrize("env_id", list(envs.GAMES))
def test_fixed_opponents_play_a_prefixed_game_to_its_end(env_id):
    env = gym.make(env_id, answer_prefix=BOX).unwrapped
    players = {0: FixedPlayer(env_id, "random", 1), 1: FixedPlayer(env_id, "strong", 2)}
    spec = EpisodeSpec(env_id=env_id, seed=3, episode_id="fixed", policy_roles=[], opponent="random")
    episode = asyncio.run(play_episode(env, players, EpisodeLimits(max_turns=200), spec))
    assert episode.outcome == "finished" and sum(episode.invalid_counts) == 0


def test_a_person_plays_a_prefixed_game_in_selfplay_play():
    from selfplay.commands.play import Announced, HumanPlayer

    env = gym.make(KUHN, answer_prefix=BOX).unwrapped
    moves = iter(["raise", "check", "call", "check"])
    shown: list[str] = []
    players = {0: HumanPlayer(lambda prompt: next(moves), shown.append),
               1: Announced(FixedPlayer(KUHN, "strong", 1), shown.append)}
    spec = EpisodeSpec(env_id=KUHN, seed=1, episode_id="play", policy_roles=[0], opponent="strong")
    episode = asyncio.run(play_episode(env, players, EpisodeLimits(max_turns=50), spec))
    assert episode.outcome == "finished" and episode.invalid_counts == [0, 0]
    assert any("is not a legal move" in line for line in shown)  # "raise" was asked again


class Scripted:
    """An engine that writes fixed answers (token ids: one per character), recording its prompts."""

    def __init__(self, answers):
        self.answers, self.prompts = list(answers), []

    async def generate(self, prompt_ids, sampling):
        from actors.engine import Generation

        self.prompts.append((list(prompt_ids), sampling))
        text = self.answers.pop(0)
        return Generation(token_ids=[ord(c) for c in text], logprobs=[-0.5] * len(text), text=text,
                          finish_reason="stop")


class CharTokenizer:
    chat_template = None

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def __call__(self, text):
        from types import SimpleNamespace

        return SimpleNamespace(input_ids=[1000] + self.encode(text))


def test_the_runner_splices_the_prefix_and_the_env_reads_prefix_plus_answer():
    from actors.episodes import EpisodeRunner

    engine = Scripted(["check}", "bet}", "fold}"])  # P0 checks, P1 bets, P0 folds
    runner = EpisodeRunner(engine, CharTokenizer(), EpisodeLimits())
    spec = EpisodeSpec(KUHN, seed=0, episode_id="s", policy_roles=[0, 1], env_kwargs={"answer_prefix": BOX},
                       options={"cards": ["J", "K"]})
    episode = asyncio.run(runner.run(spec))
    assert episode.outcome == "finished" and episode.invalid_counts == [0, 0]
    assert episode.rewards == {0: -1.0, 1: 1.0}
    prefix = [ord(c) for c in BOX]
    for (prompt, sampling), sample in zip(engine.prompts, episode.samples):
        assert prompt == sample.prompt_ids + prefix  # the engine continued the prefix
        assert sampling.stop == ("}",) and sampling.max_new_tokens == 8
        answer = sample.response_ids[len(prefix):]
        assert sample.response_ids[:len(prefix)] == prefix
        assert sample.loss_mask == [0] * len(prefix) + [1] * len(answer)
        assert sample.logprobs == [0.0] * len(prefix) + [-0.5] * len(answer)


# ----- constrained answers (answer_choices) ---------------------------------------------------

def test_constrained_answers_ask_for_one_token_among_the_legal_actions():
    env, obs, info = kuhn(answer_choices=True)
    (request,) = env.turn_requests(obs, info)
    assert request == TurnRequest(player=info["player"], observation=obs, insert=BOX, max_tokens=1,
                                  choices=("check", "bet"))
    # The engine wrote one of the choices, and nothing else: read exactly, no brace needed.
    _, _, _, _, after = env.step(engine_reply("bet"))
    assert after["action"] == "bet" and not after["invalid"]
    for text in ("bet}", "Bet", " bet", "fold"):  # never produced by a constrained engine
        env, _, _ = kuhn(answer_choices=True)
        assert env.step(engine_reply(text))[4]["invalid"], text


def test_constrained_answers_need_a_prefix_and_a_bool():
    with pytest.raises(ValueError, match="answer_choices=True needs answer_prefix"):
        gym.make(KUHN, answer_choices=True)
    with pytest.raises(ValueError, match="answer_choices='yes': expected true or false"):
        gym.make(KUHN, answer_prefix=BOX, answer_choices="yes")


def test_choice_tokens_are_one_token_each_after_the_prefix_or_a_clear_error(smollm2):
    from transformers import AutoTokenizer

    from actors.episodes import choice_token_ids

    tok = AutoTokenizer.from_pretrained(smollm2)
    ids = choice_token_ids(tok, BOX, ("check", "bet"))
    head = tok.encode(BOX, add_special_tokens=False)
    assert [tok.encode(BOX + a, add_special_tokens=False) for a in ("check", "bet")] == [head + [i] for i in ids]
    with pytest.raises(ValueError, match="the action 'bid 1 1' is [0-9]+ tokens after"):
        choice_token_ids(tok, BOX, ("bid 1 1", "liar"))
