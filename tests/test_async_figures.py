"""``selfplay bench async``'s figures (pure) from hand-made scalars: time, rates, idle shares,
staleness, learning figures at the end, speed-ups and the cluster arithmetic."""

from __future__ import annotations

import pytest

from selfplay.stats.async_figures import (cluster_arithmetic, format_cluster, format_table, head_to_head,
                                          invalid_shares, kuhn_exploitability, loop_span_s, parse_staleness, run_figures,
                                          speedups)


def sync_run() -> dict[str, list[tuple[int, float]]]:
    """Three synchronous steps of a Kuhn Poker run, evaluated at steps 0 and 2 (and the last, 3)."""
    return {
        "perf/step_s": [(1, 2.0), (2, 4.0), (3, 3.0)],
        "learner/samples": [(1, 10.0), (2, 20.0), (3, 15.0)],
        "perf/rollout_s": [(1, 1.0), (2, 2.0), (3, 1.5)],
        "learner/step_s": [(1, 0.5), (2, 1.5), (3, 1.0)],
        # Resuming publishes at the checkpoint's step before training; a fresh run's step 0 holds
        # the evaluation only: neither is a training step.
        "perf/weight_sync_s": [(0, 9.0), (1, 0.2), (2, 0.4), (3, 0.3)],
        "perf/rollout_idle_share": [(1, 0.5), (2, 0.5), (3, 0.2)],
        "perf/learner_idle_share": [(1, 0.6), (2, 0.4), (3, 0.5)],
        "game/KuhnPoker-v0/invalid_share": [(1, 0.9), (2, 0.5), (3, 0.3)],
        "game/KuhnPoker-v0/self/p0/invalid_rate": [(1, 1.0), (2, 1.0), (3, 1.0)],  # not a share
        "eval/KuhnPoker-v0/exploitability": [(0, 0.5), (2, 0.3)],
        "eval/KuhnPoker-v0/exploitability_low": [(0, 0.4), (2, 0.25)],
        "eval/KuhnPoker-v0/exploitability_high": [(0, 0.6), (2, 0.35)],
        "eval/KuhnPoker-v0/initial/p0/win_rate": [(0, 0.5), (2, 0.5), (3, 0.75)],
        "eval/KuhnPoker-v0/initial/p1/win_rate": [(0, 0.5), (2, 0.5), (3, 0.25)],
        "eval/KuhnPoker-v0/initial/p0/return": [(0, 0.0), (3, 0.5)],
        "eval/KuhnPoker-v0/initial/p1/return": [(0, 0.0), (3, -0.1)],
        "eval/KuhnPoker-v0/initial/p0/win_rate_low": [(3, 0.1)],  # an interval, not a figure here
    }


def test_time_is_the_sum_of_step_times_and_rates_are_over_it():
    f = run_figures(sync_run())
    assert f["steps"] == 3 and f["loop_s"] == 9.0 and f["samples"] == 45.0
    assert f["samples_per_s"] == 5.0 and f["step_s"] == 3.0 and f["steps_s"] == 9.0
    assert f["time_source"] == "perf/step_s"
    # The loop's wall clock from train.log: evaluations included, so slower than the steps alone.
    f = run_figures(sync_run(), loop_s=15.0)
    assert f["loop_s"] == 15.0 and f["samples_per_s"] == 3.0 and f["time_source"] == "train.log"
    assert f["steps_s"] == 9.0 and f["step_s"] == 3.0
    assert f["rollout_s"] == 1.5 and f["learn_s"] == 1.0
    assert f["publish_s"] == pytest.approx(0.3)  # step 0's publish is not a training step's
    assert f["rollout_idle_share"] == pytest.approx(0.4) and f["learner_idle_share"] == pytest.approx(0.5)


def test_the_synchronous_loop_logs_no_staleness_and_counts_as_zero():
    f = run_figures(sync_run())
    assert f["staleness_mean"] == 0.0 and f["staleness_max"] == 0.0
    assert f["dropped_stale"] == 0.0 and f["batches_in_flight"] == 0.0


def test_staleness_is_the_mean_of_means_the_max_of_maxima_and_drops_add_up():
    scalars = {**sync_run(),
               "learner/staleness_mean": [(1, 0.0), (2, 1.0), (3, 0.5)],
               "learner/staleness_max": [(1, 0.0), (2, 1.0), (3, 2.0)],
               "learner/dropped/stale": [(1, 0.0), (2, 3.0), (3, 1.0)],
               "perf/batches_in_flight": [(1, 1.0), (2, 2.0), (3, 0.0)]}
    f = run_figures(scalars)
    assert f["staleness_mean"] == 0.5 and f["staleness_max"] == 2.0
    assert f["dropped_stale"] == 4.0 and f["batches_in_flight"] == 1.0


def test_learning_figures_at_the_end_of_the_run():
    f = run_figures(sync_run())
    assert f["invalid_share"] == {"KuhnPoker-v0": pytest.approx(0.4)}  # the last two steps' mean
    assert f["kuhn_exploitability"] == {"step": 2, "value": 0.3, "low": 0.25, "high": 0.35}
    # The last evaluation against the step-0 policy, both roles' mean.
    assert f["head_to_head"] == {"KuhnPoker-v0": {"step": 3, "win_rate": 0.5, "return": pytest.approx(0.2)}}


def test_invalid_share_of_a_run_shorter_than_the_tail_and_per_environment():
    scalars = {"game/KuhnPoker-v0/invalid_share": [(1, 0.2)],
               "game/TicTacToe-v0/invalid_share": [(1, 1.0), (2, 0.0), (3, 0.5)]}
    assert invalid_shares(scalars) == {"KuhnPoker-v0": 0.2, "TicTacToe-v0": 0.25}
    assert invalid_shares(scalars, tail=1) == {"KuhnPoker-v0": 0.2, "TicTacToe-v0": 0.5}


def test_exploitability_is_absent_where_never_reported():
    # Not Kuhn Poker, or every evaluation had too many invalid replies: only the invalid share.
    assert kuhn_exploitability({"eval/KuhnPoker-v0/infoset_invalid_share_max": [(0, 1.0)]}) is None
    assert run_figures({"perf/step_s": [(1, 1.0)]})["kuhn_exploitability"] is None


def test_head_to_head_per_environment_each_at_its_last_evaluation():
    scalars = {"eval/KuhnPoker-v0/initial/p0/win_rate": [(0, 0.5), (4, 1.0)],
               "eval/KuhnPoker-v0/initial/p1/win_rate": [(0, 0.5), (4, 0.0)],
               "eval/TicTacToe-v0/initial/p0/return": [(0, 0.0), (2, 1.0)],
               "eval/TicTacToe-v0/random/p0/return": [(4, 1.0)]}  # not the step-0 policy
    assert head_to_head(scalars) == {"KuhnPoker-v0": {"step": 4, "win_rate": 0.5},
                                     "TicTacToe-v0": {"step": 2, "return": 1.0}}
    assert head_to_head({}) == {}


def test_a_run_without_training_steps_has_no_figures():
    with pytest.raises(ValueError, match="perf/step_s"):
        run_figures({"perf/step_s": [(0, 1.0)]})


def test_speedup_is_samples_per_second_over_the_k0_runs():
    runs = {0: {"samples_per_s": 4.0}, 1: {"samples_per_s": 6.0}, 2: {"samples_per_s": 7.0}}
    assert speedups(runs) == {0: 1.0, 1: 1.5, 2: 1.75}
    assert speedups({1: {"samples_per_s": 6.0}}) == {1: None}
    assert speedups({0: {"samples_per_s": 0.0}, 1: {"samples_per_s": 6.0}}) == {0: None, 1: None}


def test_cluster_arithmetic_rollout_bound_and_learner_bound():
    # Rollout 3 s, learn 1 s, publish 0.5 s: 4.5 s one after the other; overlapped the rollout
    # sets the pace, 3 s: 1.5 times as fast.
    c = cluster_arithmetic(3.0, 1.0, 0.5)
    assert (c["sync_s"], c["async_s"], c["speedup"]) == (4.5, 3.0, 1.5)
    # Learner-bound: learning and publishing (2 + 1 s) set the pace.
    c = cluster_arithmetic(2.0, 2.0, 1.0)
    assert (c["sync_s"], c["async_s"], c["speedup"]) == (5.0, 3.0, pytest.approx(5 / 3))
    # Balanced halves: the most overlap can give.
    assert cluster_arithmetic(1.0, 0.75, 0.25)["speedup"] == 2.0
    assert "synchronous 4.50 s" in format_cluster(cluster_arithmetic(3.0, 1.0, 0.5))


def test_table_has_a_row_per_k_in_order_and_dashes_for_what_is_missing():
    f0 = {**run_figures(sync_run()), "speedup": 1.0}
    f2 = {**f0, "rollout_idle_share": None, "kuhn_exploitability": None, "head_to_head": {}, "samples_per_s": 7.5,
          "speedup": 1.5}
    lines = format_table({2: f2, 0: f0})
    assert len(lines) == 3 and lines[1].split()[0] == "0" and lines[2].split()[0] == "2"
    assert "exploitability 0.300 [0.250, 0.350] at step 2" in lines[1] and "win 0.50 return +0.20" in lines[1]
    # loop_s, samples/s, speed-up, step_s, rollout idle share
    assert lines[1].split()[1:6] == ["9.0", "5.00", "1.00", "3.00", "0.40"]
    assert lines[2].split()[1:6] == ["9.0", "7.50", "1.50", "3.00", "-"]
    assert "exploitability" not in lines[2]


LOG = """2026-12-07 00:43:07,423 INFO selfplay.train: started a private local Ray
2026-12-07 00:43:35,000 INFO selfplay.train: loop: synchronous, on-policy (trainer.max_staleness=0)
2026-12-07 00:43:39,202 INFO selfplay.train: step 0/2 | kuhn expl n/a | ETA 0m00s
(RolloutWorker pid=1) 2026-12-07 00:43:40,000 INFO selfplay.train: loop: a worker's line, not the driver's
2026-12-07 00:43:41,379 INFO selfplay.train: done: 2 steps; TensorBoard: tensorboard --logdir x
2026-12-07 00:43:48,242 INFO selfplay.train: run directory: x
"""


def test_loop_span_runs_from_the_loop_line_to_the_done_line():
    assert loop_span_s(LOG) == pytest.approx(6.379)
    # Across midnight; and a log without both lines (an older driver, a run that stopped) has none.
    assert loop_span_s("2026-12-07 23:59:59,500 INFO selfplay.train: loop: x\n"
                       "2026-12-08 00:00:01,000 INFO selfplay.train: done: 2 steps\n") == pytest.approx(1.5)
    assert loop_span_s(LOG.replace("done:", "finished:")) is None
    assert loop_span_s(LOG.replace(": loop:", ": start:")) is None
    assert loop_span_s("") is None


@pytest.mark.parametrize("text,ks", [("0,1,2", [0, 1, 2]), ("2,0", [0, 2]), ("0", [0])])
def test_staleness_list(text, ks):
    assert parse_staleness(text) == ks


@pytest.mark.parametrize("text", ["1,2", "0,-1", "0,1,1", "0,x", ""])
def test_staleness_list_needs_distinct_values_and_k0(text):
    with pytest.raises(ValueError, match="--staleness"):
        parse_staleness(text)


def test_cli_parses_staleness_and_refuses_a_bad_list(capsys):
    from selfplay.commands.cli import build_parser

    args = build_parser().parse_args(["bench", "async", "--staleness", "1,0", "model=tiny", "--json"])
    assert args.bench_command == "async" and args.staleness == [0, 1] and args.overrides == ["model=tiny"]
    assert build_parser().parse_args(["bench", "async"]).staleness is None  # the default 0,1,2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "async", "--staleness", "1,2"])
    assert "including 0" in capsys.readouterr().err
