"""selfplay/SAT-v0: the single-agent env contract, levels, fixed instances, datasets, rewards,
the largest-level options, and hostile answers (never an exception, always one terminal step)."""

from __future__ import annotations

import itertools
import string

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs.sat import difficulty, format_formula, generate, satisfies
from envs.sat_data import make_dataset, write_jsonl
from envs.sat_env import SatEnv, _prompt_chars_bound, sat_prompt
from env_contract import assert_steps_identically

ENV_ID = "selfplay/SAT-v0"
REWARDS = {"satisfied": 1.0, "unsatisfied": 0.0, "malformed": -1.0}
SATURN_ROW = '{"id": 0, "n_sat": 3, "k": 5, "solution": "11000", "clause": "!A!B!C & !A!C!E & ABE"}'


@pytest.fixture
def dataset(tmp_path):
    """A mixed file: SATURN's example row, then three of the project's rows (one with k > 26)."""
    path = tmp_path / "mixed.jsonl"
    write_jsonl(path, make_dataset([(3, 5, 5), (4, 8, 40), (3, 30, 12)], per_level=1, seed=0))
    path.write_text(SATURN_ROW + "\n" + path.read_text())
    return path


def assert_terminal(step, rewards=REWARDS):
    """One step ends the episode with one of the three rewards; returns the outcome."""
    obs, reward, terminated, truncated, info = step
    assert terminated and not truncated
    assert set(obs) <= set(string.printable) and obs
    assert info["rewards"] == {0: reward} and info["player"] == -1
    outcome = info["outcome"]
    assert reward == rewards[outcome]
    assert info["invalid"] == (outcome == "malformed")
    assert info["invalid_counts"] == [1 if outcome == "malformed" else 0]
    return outcome


# ----- registration and the Gymnasium contract -------------------------------------------------
def test_registered_as_a_one_player_task_outside_games():
    assert ENV_ID in gym.registry and ENV_ID in envs.TASKS and ENV_ID not in envs.GAMES
    assert envs.num_players(ENV_ID) == 1


@pytest.mark.parametrize("kwargs", [{}, {"level": (3, 7, 40)}, {"levels": [[3, 5, 5], [3, 30, 20]]},
                                    {"malformed_reward": -2.0, "lenient": True}])
def test_passes_gymnasiums_env_checker(kwargs):
    check_env(gym.make(ENV_ID, **kwargs).unwrapped)


def test_passes_gymnasiums_env_checker_on_a_dataset(dataset):
    check_env(gym.make(ENV_ID, dataset=str(dataset)).unwrapped)


def test_reset_gives_the_instance_in_info_and_the_prompt():
    env = gym.make(ENV_ID)
    obs, info = env.reset(seed=3)
    assert info["player"] == 0 and type(info["player"]) is int
    assert info["level"] == (3, 5, 5) and info["num_vars"] == 5 and len(info["clauses"]) == 5
    assert info["invalid_counts"] == [0] and not info["invalid"]
    assert round(info["difficulty"], 2) == 5.63
    assert all(isinstance(c, list) and all(type(x) is int and 1 <= abs(x) <= 5 for x in c)
               for c in info["clauses"])
    assert format_formula(info["clauses"], 5) in obs
    assert "\\boxed{BITS}" in obs and "A, B, C, D, E" in obs and "exactly 5 digits" in obs
    assert set(obs) <= set(string.printable) and len(obs) < 1000


def test_same_seed_same_instance_step_by_step():
    assert_steps_identically(lambda: SatEnv(levels=[(3, 5, 5), (3, 7, 20)]), range(40),
                             lambda pick: "\\boxed{" + "".join(pick.choice(list("01"), size=5)) + "}", 5)


def test_a_seeded_reset_builds_the_generators_instance():
    # One configured level draws nothing else, so datasets made with generate() can be replayed.
    for seed in range(5):
        env = SatEnv(level=(3, 7, 20))
        env.reset(seed=seed)
        assert env.instance == generate(3, 7, 20, rng=seed)


def test_levels_come_from_options_and_the_constructor():
    env = SatEnv(level=(4, 8, 40))
    assert env.reset(seed=0)[1]["level"] == (4, 8, 40)
    assert env.reset(seed=0, options={"n": 3, "k": 7, "l": 20})[1]["level"] == (3, 7, 20)
    assert env.reset(seed=0, options={"level": [3, 40, 30]})[1]["level"] == (3, 40, 30)
    env = SatEnv(levels=[(3, 5, 5), (3, 5, 6)])
    assert {env.reset(seed=s)[1]["level"] for s in range(30)} == {(3, 5, 5), (3, 5, 6)}


@pytest.mark.parametrize("level", [(3, 5, 5), (3, 7, 40), (6, 7, 40), (3, 27, 20), (4, 60, 50)])
def test_the_planted_assignment_is_accepted_and_its_complement_judged_by_the_clauses(level):
    env = SatEnv(level=level)
    for seed in range(10):
        env.reset(seed=seed)
        inst = env.instance
        assert assert_terminal(env.step(f"So: \\boxed{{{inst.solution}}}")) == "satisfied"
        flipped = "".join("1" if b == "0" else "0" for b in inst.solution)
        env.reset(seed=seed)
        expected = "satisfied" if satisfies(inst.clauses, flipped) else "unsatisfied"
        assert assert_terminal(env.step(f"\\boxed{{{flipped}}}")) == expected


def test_beyond_26_variables_the_prompt_uses_x_names_in_answer_order():
    env = SatEnv(level=(3, 30, 10))
    obs, info = env.reset(seed=1)
    assert "x1, x2, ..., x30" in obs and "exactly 30 digits" in obs
    assert format_formula(info["clauses"], 30) in obs and "x" in format_formula(info["clauses"], 30)
    bits = ["0"] * 30
    env.reset(seed=1, options={"clauses": [[30], [-1]], "num_vars": 30})
    bits[29] = "1"
    assert assert_terminal(env.step("\\boxed{" + "".join(bits) + "}")) == "satisfied"


def test_the_env_agrees_with_brute_force_on_a_fixed_instance():
    clauses = [[1, -2, 3], [-1, 2], [2, -3, 4], [-4, -1]]
    env = SatEnv()
    for bits in itertools.product("01", repeat=4):
        bits = "".join(bits)
        _, info = env.reset(options={"clauses": clauses, "num_vars": 4})
        assert info["clauses"] == clauses and info["level"] == (3, 4, 4)
        truth = all(any((bits[abs(x) - 1] == "1") == (x > 0) for x in c) for c in clauses)
        assert assert_terminal(env.step(f"\\boxed{{{bits}}}")) == ("satisfied" if truth else "unsatisfied")


@pytest.mark.parametrize("text", ["10110", "\\boxed{1011}", "\\boxed{101101}", "\\boxed{10a10}",
                                  "\\boxed{}", ""])
def test_malformed_answers_are_invalid_with_the_malformed_reward(text):
    env = SatEnv(satisfied_reward=2.0, unsatisfied_reward=-0.5, malformed_reward=-3.0)
    env.reset(seed=0)
    rewards = {"satisfied": 2.0, "unsatisfied": -0.5, "malformed": -3.0}
    assert assert_terminal(env.step(text), rewards) == "malformed"
    assert env.min_return == -3.0


def test_rewards_are_configurable_through_make():
    env = gym.make(ENV_ID, satisfied_reward=5.0, unsatisfied_reward=0.5)
    env.reset(seed=0, options={"clauses": [[1]], "num_vars": 1})
    assert env.step("\\boxed{1}")[1] == 5.0
    env.reset(seed=0, options={"clauses": [[1]], "num_vars": 1})
    assert env.step("\\boxed{0}")[1] == 0.5


def test_lenient_accepts_a_bare_answer():
    env = SatEnv(lenient=True)
    env.reset(options={"clauses": [[1, 2]], "num_vars": 2})
    assert assert_terminal(env.step("A=1, B=0, so 10")) == "satisfied"


def test_render_gives_the_verdict():
    env = SatEnv(render_mode="ansi")
    env.reset(options={"clauses": [[1, 2], [-1]], "num_vars": 2})
    assert "Find a satisfying assignment" in env.render()
    env.step("\\boxed{10}")
    assert env.render() == ("The assignment 10 leaves 1 of 2 clauses false (the first is clause 2). "
                            "Reward: +0.")


# ----- datasets --------------------------------------------------------------------------------
def test_a_dataset_env_serves_row_i(dataset):
    env = gym.make(ENV_ID, dataset=str(dataset))
    obs, info = env.reset(options={"index": 0})
    assert info["index"] == 0 and info["clauses"] == [[-1, -2, -3], [-1, -3, -5], [1, 2, 5]]
    assert "!A!B!C & !A!C!E & ABE" in obs
    assert assert_terminal(env.step("\\boxed{11000}")) == "satisfied"
    rows = make_dataset([(3, 5, 5), (4, 8, 40), (3, 30, 12)], per_level=1, seed=0)
    for i, row in enumerate(rows, start=1):
        obs, info = env.reset(options={"index": i})
        assert info["level"] == row.level and info["clauses"] == [list(c) for c in row.clauses]
        assert assert_terminal(env.step(f"\\boxed{{{row.solution}}}")) == "satisfied"


def test_a_dataset_env_draws_seeded_rows(dataset):
    env = SatEnv(dataset=dataset)
    drawn = [env.reset(seed=s)[1]["index"] for s in range(40)]
    assert set(drawn) == {0, 1, 2, 3}
    assert drawn == [env.reset(seed=s)[1]["index"] for s in range(40)]


# ----- largest level -----------------------------------------------------------------------------
def test_largest_level_options_pick_the_longest_prompt():
    assert SatEnv().largest_level_options() == {"n": 3, "k": 5, "l": 5}
    levels = [(3, 5, 5), (3, 7, 40), (6, 7, 40), (4, 8, 40)]
    env = SatEnv(levels=levels)
    assert max(levels, key=lambda lv: difficulty(*lv)) == (3, 7, 40)  # D and length disagree here
    options = env.largest_level_options()
    assert options == {"n": 6, "k": 7, "l": 40}
    longest = max(len(env.reset(seed=s, options=options)[0]) for s in range(20))
    others = max(len(env.reset(seed=s, options={"level": lv})[0]) for s in range(20) for lv in levels[:2])
    assert longest > others


def test_largest_level_options_of_a_dataset_is_its_longest_row(dataset):
    env = SatEnv(dataset=dataset)
    assert env.largest_level_options() == {"index": 2}  # (4, 8, 40): 160 literals
    assert env.reset(options=env.largest_level_options())[1]["level"] == (4, 8, 40)


def test_the_preflight_measures_the_largest_level():
    from selfplay.placement.preflight import opening_prompt_tokens

    class WordTokenizer:  # no chat template: the preflight tokenizes the bare prompt
        chat_template = None

        def __call__(self, text):
            return type("Encoding", (), {"input_ids": text.split()})()

    small = opening_prompt_tokens(ENV_ID, {}, WordTokenizer(), 0)
    large = opening_prompt_tokens(ENV_ID, {"levels": [[3, 5, 5], [6, 7, 40]]}, WordTokenizer(), 0)
    assert small < large and large > 39  # 40 clauses joined by " & "


@pytest.mark.parametrize("level", [(3, 5, 5), (6, 7, 40), (3, 27, 30), (5, 300, 100)])
def test_the_prompt_bound_holds(level):
    for seed in range(10):
        assert len(sat_prompt(generate(*level, rng=seed))) <= _prompt_chars_bound(*level)


# ----- bad arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"level": (4, 3, 5)}, "n=4 > k=3"),
    ({"level": (3, 5, 71)}, "l=71 > 70"),
    ({"level": (3, 5)}, r"level=\(3, 5\): expected \(n, k, l\)"),
    ({"levels": []}, "non-empty list"),
    ({"levels": [(3, 5, 5), (0, 5, 5)]}, "n=0"),
    ({"level": (3, 5, 5), "levels": [(3, 5, 5)]}, "level and levels given"),
    ({"invalid_action": "random"}, "accepts only 'lose'"),
    ({"malformed_reward": float("nan")}, "malformed_reward=nan"),
    ({"level": (3, 2000, 2000)}, "MAX_OBS_CHARS"),
])
def test_bad_constructor_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SatEnv(**kwargs)


@pytest.mark.parametrize("options, match", [
    ({"n": 3, "k": 5}, r"lack \['l'\]"),
    ({"n": 3, "k": 2, "l": 1}, "n=3 > k=2"),
    ({"level": (3, 5, 5), "n": 3}, "either 'level' or"),
    ({"clauses": [[1]]}, "both 'clauses' and 'num_vars'"),
    ({"clauses": [[1, 3]], "num_vars": 2}, "literal 3"),
    ({"clauses": [[1]], "num_vars": 1, "n": 1}, "mix"),
    ({"index": 0}, "needs a dataset"),
    ({"levl": (3, 5, 5)}, "unknown reset option"),
])
def test_bad_reset_options_raise_value_error(options, match):
    with pytest.raises(ValueError, match=match):
        SatEnv().reset(options=options)


def test_a_bad_dataset_index_raises_value_error(dataset):
    env = SatEnv(dataset=dataset)
    for index in (4, -1, "1", True, 1.0):
        with pytest.raises(ValueError, match=r"expected an integer in \[0, 4\)"):
            env.reset(options={"index": index})


# ----- hostile answers ---------------------------------------------------------------------------
_BOX_CHARS = st.sampled_from(list("01") * 6 + list(" 2x{}\\!-\n") + ["\\boxed{", "\\text{", "}"])
_BOX_BODY = st.lists(_BOX_CHARS, max_size=12).map("".join)
_NESTED = st.recursive(_BOX_BODY, lambda inner: st.builds(lambda a, b, c: f"{a}\\boxed{{{b}}}{c}",
                                                            _BOX_BODY, inner, _BOX_BODY), max_leaves=6)
_HOSTILE = st.one_of(
    st.text(),
    st.text(alphabet=string.printable, min_size=2000, max_size=9000),
    st.integers(min_value=0).map(str),
    st.integers(min_value=10**50, max_value=10**400).map(lambda i: f"\\boxed{{{i}}}"),
    _BOX_BODY.map(lambda b: f"\\boxed{{{b}}}"),
    _NESTED,
)


@settings(max_examples=300, deadline=None)
@given(text=_HOSTILE, seed=st.integers(0, 2**16), lenient=st.booleans())
def test_any_text_is_one_terminal_step_with_one_of_three_rewards(text, seed, lenient):
    env = SatEnv(lenient=lenient, levels=[(3, 5, 5), (1, 2, 2)])
    env.reset(seed=seed)
    outcome = assert_terminal(env.step(text))
    if outcome != "malformed":
        assert "\\boxed" in text or lenient


@pytest.mark.parametrize("text", [
    "1" * 1_000_000, "9" * 200_000, "\\boxed{" * 50_000, "\\boxed{" + "1" * 500_000 + "}",
    "}" * 100_000 + "\\boxed{", "\\boxed{" * 1000 + "10110" + "}" * 1000, "1" * 300_000 + "a",
    "\x00\\boxed{10110}\x00", "\\boxed{10110" + "\n" * 10_000 + "}",
])
def test_huge_and_odd_answers_are_quick_and_safe(text):
    for lenient in (False, True):
        env = SatEnv(lenient=lenient)
        env.reset(seed=0)
        assert_terminal(env.step(text))


def test_non_string_actions_are_malformed():
    for action in (None, 10110, b"\\boxed{10110}", ["\\boxed{10110}"]):
        env = SatEnv()
        env.reset(seed=0)
        assert assert_terminal(env.step(action)) == "malformed"


def test_the_format_example_is_shown_only_when_asked_and_says_nothing_about_the_formula():
    plain = gym.make("selfplay/SAT-v0").unwrapped
    shown = gym.make("selfplay/SAT-v0", example=True).unwrapped
    prompts = []
    for seed in range(5):
        assert "For example" not in plain.reset(seed=seed, options={"n": 3, "k": 5, "l": 5})[0]
        prompts.append(shown.reset(seed=seed, options={"n": 3, "k": 5, "l": 5})[0])
    examples = {p.splitlines()[-1] for p in prompts}
    assert examples == {"For example, \\boxed{10101} sets A true and B false."}  # one for all formulas
