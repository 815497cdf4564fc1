"""The rollout worker as a real Ray actor hosting real vLLM (tiny model)."""

from __future__ import annotations

import pytest

import envs
from selfplay.config import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def worker(ray_session, tiny_model):
    from actors.rollout_worker import RolloutWorker

    env_list = ",".join(f"{{id: {e}, kwargs: {{invalid_action: random}}}}" for e in envs.GAMES)
    cfg = load_config("debug", [f"envs=[{env_list}]", "model=tiny", "rollout.max_new_tokens=8",
                                "rollout.self_play_fraction=0.5", "rollout.opponents=[random, strong, snapshot]",
                                "pool.snapshot_every=1", "rollout.kv_cache_gib=1", "rollout.max_turns=100"])
    actor = ray_session.remote(RolloutWorker).options(num_cpus=1).remote(
        tiny_model, cfg.rollout, cfg.envs, cfg.eval, cfg.seed, 0)
    ray_session.get(actor.init.remote())
    yield actor
    ray_session.get(actor.shutdown.remote())


def test_worker_actor_plays_a_batch_of_every_game_to_the_end(ray_session, worker):
    episodes, summaries, perf = ray_session.get(worker.collect.remote(20, 0))
    assert len(episodes) == 20 and perf["perf/rollout_tokens"] == sum(e.generated_tokens for e in episodes)
    # The driver's copy: the same episodes without samples or transcripts.
    assert [s.episode_id for s in summaries] == [e.episode_id for e in episodes]
    assert all(not s.samples and not s.transcript for s in summaries)
    assert [s.rewards for s in summaries] == [e.rewards for e in episodes]
    assert {e.env_id for e in episodes} == set(envs.GAMES)
    for e in episodes:
        assert e.outcome == "finished" and sum(e.rewards.values()) == pytest.approx(0.0)
        assert {s.role for s in e.samples} <= set(e.policy_roles)
        assert all(s.ret == e.rewards[s.role] for s in e.samples)
    # Until a snapshot exists, "snapshot" episodes are self-play; the rest face fixed opponents.
    assert {e.opponent for e in episodes} <= {"self", "random", "strong"}
    assert any(len(e.policy_roles) == 1 for e in episodes) and any(len(e.policy_roles) == 2 for e in episodes)


def test_evaluation_plays_every_game_opponent_and_seat(ray_session, worker):
    episodes = ray_session.get(worker.evaluate.remote(list(envs.GAMES), ["random", "strong"], 1))
    assert sorted((e.env_id, e.opponent, e.policy_roles[0]) for e in episodes) == sorted(
        (g, o, s) for g in envs.GAMES for o in ("random", "strong") for s in (0, 1))


def test_a_snapshot_of_the_policy_becomes_an_opponent(ray_session, worker, tiny_model):
    ray_session.get(worker.sync_snapshots.remote({"snapshot@0": tiny_model}))
    episodes, _, _ = ray_session.get(worker.collect.remote(30, 1))
    against = [e for e in episodes if e.opponent == "snapshot@0"]
    assert against, "some episodes should face the snapshot"
    for e in against:  # the snapshot's turns produce no training samples
        assert len(e.policy_roles) == 1 and {s.role for s in e.samples} <= set(e.policy_roles)
        assert all(s.opponent == "snapshot@0" for s in e.samples)  # RAE's key: a snapshot kind
    ray_session.get(worker.sync_snapshots.remote({}))  # evicted: its engine goes
    episodes, _, _ = ray_session.get(worker.collect.remote(10, 2))
    assert not any(e.opponent.startswith("snapshot@") for e in episodes)
