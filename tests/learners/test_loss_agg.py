"""Loss aggregation (trainer.loss_agg): every mode on a small batch worked by hand, the learner's
micro-batched step against the aggregate of the whole batch, the checks on the config fields, and
the aggregation each shipped recipe takes from its paper's code."""

from __future__ import annotations

import pytest
import torch
from learner_helpers import fp32_trainer, random_samples

from learners.learner import Learner
from learners.loss import policy_loss, token_weights
from learners.loss_agg import LOSS_AGGS, sequence_token_weight, step_count
from selfplay.config import ConfigError, load_config

# Three sequences, one per row. On-policy (new = old = 0, ratio 1, nothing clipped), so each loss
# token's loss is -A and its gradient with respect to its log-prob is -A times its weight.
ADV = [[1.0, 2.0, 3.0], [4.0, -2.0, 99.0], [5.0, 5.0, 5.0]]
MASK = [[1, 1, 1], [1, 1, 0], [0, 0, 0]]  # T = 3, 2 and 0 loss tokens: N = 5, S = 2
# Row sums of -A over the loss tokens: -6 and -2 (the third row has none).
HAND = {
    # (-6 - 2) / N=5; gradient -A / 5.
    "token_mean": (-1.6, [[-0.2, -0.4, -0.6], [-0.8, 0.4, 0.0]]),
    # (-6/3 + -2/2) / S=2 = -1.5; gradient -A / (T_i * 2).
    "seq_mean_token_mean": (-1.5, [[-1 / 6, -2 / 6, -3 / 6], [-1.0, 0.5, 0.0]]),
    # (-6 - 2) / S=2 = -4; gradient -A / 2.
    "seq_mean_token_sum": (-4.0, [[-0.5, -1.0, -1.5], [-2.0, 1.0, 0.0]]),
    # (-6 - 2) / (S=2 * L=4) = -1; gradient -A / 8.
    "seq_mean_token_sum_norm": (-1.0, [[-0.125, -0.25, -0.375], [-0.5, 0.25, 0.0]]),
}


@pytest.mark.parametrize("mode", LOSS_AGGS)
def test_each_aggregation_on_a_batch_worked_by_hand(mode):
    assert set(HAND) == set(LOSS_AGGS)
    new = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor(MASK)
    weights = token_weights(mask, mode, length=4)
    loss, stats = policy_loss(new, torch.zeros(3, 3), torch.tensor(ADV), mask, 0.2,
                              weights=weights)
    expected_loss, expected_grad = HAND[mode]
    assert loss.item() == pytest.approx(expected_loss)
    loss.backward()
    assert new.grad[:2].tolist() == [pytest.approx(row) for row in expected_grad]
    assert new.grad[2].tolist() == [0.0, 0.0, 0.0]
    assert stats["pg_loss"] == pytest.approx(-1.6)  # statistics stay token means


def test_weights_and_counts_per_sequence():
    assert [sequence_token_weight(m, 4, 10) for m in LOSS_AGGS] == [1.0, 0.25, 1.0, 0.1]
    assert all(sequence_token_weight(m, 0, 10) == 0.0 for m in LOSS_AGGS)  # nothing to weigh
    assert [step_count(m, [3, 2, 0]) for m in LOSS_AGGS] == [5, 2, 2, 2]
    with pytest.raises(ValueError, match="trainer.loss_agg_length=0"):
        sequence_token_weight("seq_mean_token_sum_norm", 4, 0)
    with pytest.raises(ValueError, match="trainer.loss_agg='mean'"):
        step_count("mean", [1])


def capture_grad(learner: Learner) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    step = learner.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append(learner.flat.master.grad.clone())
        return step(*args, **kwargs)

    learner.optimizer.step = recording_step
    return seen


def whole_batch_gradient(learner: Learner, samples, mode: str, length: int) -> torch.Tensor:
    """The gradient of the aggregate over the whole batch, written out directly: each sample's
    full logits, a padded [B, T] layout of its response tokens, the hand-checked weights."""
    width = max(len(s.response_ids) for s in samples)
    new = torch.zeros(len(samples), width)
    rows = []
    for s in samples:
        ids = torch.tensor([s.prompt_ids + s.response_ids])
        logits = learner.model(input_ids=ids).logits[0, len(s.prompt_ids) - 1:-1].float()
        logp = torch.log_softmax(logits, -1)[torch.arange(len(s.response_ids)),
                                               torch.tensor(s.response_ids)]
        rows.append(torch.nn.functional.pad(logp, (0, width - len(logp))))
    new = torch.stack(rows)
    pad = lambda xs: [x + [0] * (width - len(x)) for x in xs]  # noqa: E731
    mask = torch.tensor(pad([s.loss_mask for s in samples]))
    old = torch.tensor(pad([s.logprobs for s in samples]))
    adv = torch.tensor([s.advantage for s in samples])
    loss, _ = policy_loss(new, old, adv, mask, learner.cfg.clip_eps,
                          weights=token_weights(mask, mode, length))
    learner.flat.grad.zero_()
    loss.backward()
    return learner.flat.grad.clone()


@pytest.mark.parametrize("mode", LOSS_AGGS)
def test_learner_step_is_the_aggregate_of_the_whole_batch(tiny_path, mode):
    samples = random_samples(8, seed=1)
    samples[3].loss_mask = [0] * len(samples[3].loss_mask)  # a sequence with no loss token
    cfg = fp32_trainer(micro_batch_tokens=64, loss_agg=mode, loss_agg_length=7,
                       logits_chunk_tokens=5)
    learner, reference = Learner(tiny_path, cfg), Learner(tiny_path, cfg)
    seen = capture_grad(learner)
    stats = learner.train_step(samples)
    assert stats["learner/micro_batches"] > 2
    want = whole_batch_gradient(reference, samples, mode, 7)
    assert want.abs().max() > 0
    torch.testing.assert_close(seen[0], want, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("override, message", [
    ("trainer.loss_agg=sequence_mean", "trainer.loss_agg='sequence_mean': expected one of"),
    ("trainer.loss_agg=seq_mean_token_sum_norm", "trainer.loss_agg_length=0: expected >= 1"),
    ("trainer.logits_chunk_tokens=0", "trainer.logits_chunk_tokens=0: expected >= 1"),
])
def test_config_refuses_bad_aggregation_in_one_line(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("debug", [override])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("config, mode, length", [
    # SPIRAL trains with OAT 0.2.1's default critic_type "drgrpo": token sums over 4096.
    ("spiral_kuhn_qwen3_4b", "seq_mean_token_sum_norm", 4096),
    ("spiral_mix_qwen3_4b", "seq_mean_token_sum_norm", 4096),
    # SATURN trains with OpenRLHF's PolicyLoss: the mean over sequences of token means.
    ("saturn_1p5b", "seq_mean_token_mean", 0),
    # LeaP has no training recipe: the default.
    ("leap_r1_distill_14b", "token_mean", 0),
    ("leap_debug", "token_mean", 0),
])
def test_recipes_aggregate_as_their_papers_code(config, mode, length):
    trainer = load_config(config).trainer
    assert (trainer.loss_agg, trainer.loss_agg_length) == (mode, length)
