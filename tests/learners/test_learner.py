"""The Learner on the tiny model: packing, accumulation, direction of the update, saving."""

from __future__ import annotations

import time

import pytest
import torch
from learner_helpers import fp32_trainer, random_samples

from selfplay.commands.bench.learner import bench_learner
from learners.learner import Learner, pack_micro_batches
from selfplay.core.config_schema import TrainerConfig
from selfplay.core.samples import Sample


def capture_grads(learner: Learner) -> list[list[torch.Tensor]]:
    """Record the gradients the optimiser is about to apply, at every optimiser step."""
    seen: list[list[torch.Tensor]] = []
    step = learner.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append([learner.flat.master.grad.clone()])
        return step(*args, **kwargs)

    learner.optimizer.step = recording_step
    return seen


def test_packing_keeps_padded_size_under_budget_longest_first():
    # Descending: 50 (#1), 40 (#3) -> 2*50 = 100 fits; 30 (#2) would make 3*50 > 100; then 30, 10.
    assert pack_micro_batches([10, 50, 30, 40], 100) == [[1, 3], [2, 0]]
    assert pack_micro_batches([500, 10], 100) == [[0], [1]]  # too long: alone


def test_gradient_accumulation_equals_one_big_batch(tiny_path):
    samples = random_samples(8, seed=1)
    small, big = Learner(tiny_path, fp32_trainer(micro_batch_tokens=64)), Learner(tiny_path, fp32_trainer())
    g_small, g_big = capture_grads(small), capture_grads(big)
    s_small, s_big = small.train_step(samples), big.train_step(samples)
    assert s_small["learner/micro_batches"] > 2 and s_big["learner/micro_batches"] == 1
    torch.testing.assert_close(g_small[0][0], g_big[0][0], rtol=1e-4, atol=1e-7)
    assert g_big[0][0].abs().sum() > 0
    # logprobs() covers every response token, masked ones too, aligned with response_ids.
    assert [len(x) for x in big.logprobs(samples)] == [len(s.response_ids) for s in samples]
    for key in ("learner/loss/total", "learner/loss/pg", "learner/grad_norm", "learner/entropy"):
        assert s_small[key] == pytest.approx(s_big[key], rel=1e-4)


def sampled(learner: Learner, prompt: list[int], n: int, advantage: float) -> Sample:
    """A response sampled from the policy itself, with its own (on-policy) log-probs."""
    torch.manual_seed(0)
    ids = torch.tensor([prompt])
    out = learner.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                 max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
    s = Sample(prompt_ids=prompt, response_ids=out[0, len(prompt):].tolist(), logprobs=[0.0] * n,
               loss_mask=[1] * n, env_id="test", role=0, ret=advantage, episode_id="e")
    s.logprobs = learner.logprobs([s])[0]
    s.advantage = advantage
    return s


@pytest.mark.parametrize("advantage", [1.0, -1.0])
def test_train_step_moves_logprob_of_response_with_sign_of_advantage(tiny_path, advantage):
    learner = Learner(tiny_path, fp32_trainer(lr=1e-3, grad_clip=1.0))
    s = sampled(learner, [1, 523, 77, 9001, 42], 8, advantage)
    before = sum(s.logprobs)
    stats = learner.train_step([s])
    after = sum(learner.logprobs([s])[0])
    assert (after - before) * advantage > 0.05
    # On-policy: new == old, so nothing is clipped and the approximate KL is ~0.
    assert stats["learner/clip_fraction"] == 0.0 and stats["learner/approx_kl"] < 1e-8
    assert learner.step == 1


def test_stats_have_hierarchical_names_and_warmup_raises_lr(tiny_path):
    learner = Learner(tiny_path, fp32_trainer(lr=1e-3, warmup_steps=2, kl_coef=0.1, epochs=2))
    samples = random_samples(3)
    first, second = learner.train_step(samples), learner.train_step(samples)
    expected = {"learner/loss/pg", "learner/loss/total", "learner/kl", "learner/clip_fraction",
                "learner/approx_kl", "learner/entropy", "learner/grad_norm", "learner/lr",
                "learner/tokens", "learner/tokens_per_s", "learner/step_s"}
    assert expected <= set(first)
    assert first["learner/lr"] == pytest.approx(0.5e-3) and second["learner/lr"] == pytest.approx(1e-3)
    # Tokens: every prompt+response token, once per epoch; the rate is those tokens over the step.
    assert first["learner/tokens"] == 2 * sum(s.num_tokens for s in samples)
    assert first["learner/tokens_per_s"] == pytest.approx(first["learner/tokens"] / first["learner/step_s"])
    # The reference is the initial policy: KL starts at 0 (first epoch) and grows after updates.
    assert 0.0 < first["learner/kl"] < second["learner/kl"]


def test_bf16_learner_keeps_float32_master_weights(tiny_path):
    learner = Learner(tiny_path, TrainerConfig(dtype="bfloat16", device="cpu", lr=1e-6))
    start = learner.flat.master.clone()
    assert start.dtype == torch.float32
    learner.train_step(random_samples(2))
    moved = float((learner.flat.master - start).abs().max())
    assert 0 < moved < 1e-5  # the step landed in the master copy (bf16 alone would round it away)
    assert torch.equal(learner.flat.flat, learner.flat.master.to(torch.bfloat16))
    for p in learner.model.parameters():  # the model reads the flat buffer
        assert p.dtype == torch.bfloat16 and p.untyped_storage().data_ptr() == learner.flat.flat.untyped_storage().data_ptr()


def test_save_writes_a_loadable_hf_folder_and_named_weights_match(tiny_path, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    learner = Learner(tiny_path, fp32_trainer())
    learner.train_step(random_samples(2))
    learner.save(tmp_path)
    assert (tmp_path / "optimizer.pt").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    AutoTokenizer.from_pretrained(tmp_path)
    weights = dict(learner.named_weights())
    # What the folder stores (the tied lm_head.weight once, as the embedding) is what we publish.
    assert set(weights) == set(load_file(tmp_path / "model.safetensors"))
    assert "lm_head.weight" not in weights
    for name, tensor in loaded.state_dict().items():
        expected = weights["model.embed_tokens.weight" if name == "lm_head.weight" else name]
        assert expected.device.type == "cpu" and torch.equal(expected, tensor)


def _bench_on_the_clock(tiny_path, trainer: TrainerConfig, num_samples: int) -> dict:
    """``bench_learner`` (one step of each loop) with a wall clock around it; checks what can be
    wrong: the work against an independent count, the times against the clock."""
    start = time.perf_counter()
    out = bench_learner(tiny_path, trainer, num_samples=num_samples, seq_len=32, steps=1)
    wall = time.perf_counter() - start
    assert out["tokens_per_step"] == num_samples * 32
    # Both timed steps ran inside the call, one after the other.
    assert 0 < out["learner_step_s"] and 0 < out["bare_step_s"]
    assert out["learner_step_s"] + out["bare_step_s"] <= wall
    # So each rate is at least the step's tokens over the whole call (a rate off by a unit or
    # computed from the wrong time would fall below it), and the ratio says which loop was faster.
    assert out["learner_tokens_per_s"] >= out["tokens_per_step"] / wall
    assert out["bare_tokens_per_s"] >= out["tokens_per_step"] / wall
    assert (out["ratio"] > 1) == (out["learner_step_s"] < out["bare_step_s"])
    return out


def test_bench_reports_both_loops_and_their_ratio(tiny_path):
    _bench_on_the_clock(tiny_path, TrainerConfig(device="cpu"), num_samples=2)


def test_bench_reports_both_loops_on_the_same_work(tiny_path):
    # A benchmark prints figures; here that it measures both loops on equal work, in float32.
    _bench_on_the_clock(tiny_path, TrainerConfig(device="cpu", dtype="float32"), num_samples=4)


def test_bf16_gradients_accumulate_in_float32_across_micro_batches(tiny_path):
    # Several micro-batches a step. Each one's backward yields a bf16 gradient; what AdamW sees
    # must be their exact float32 sum, not a running sum rounded to bf16 after every micro-batch.
    samples = random_samples(8, seed=2)
    cfg = TrainerConfig(dtype="bfloat16", device="cpu", lr=0.0, grad_clip=1e9,
                        micro_batch_tokens=64)
    learner, alone = Learner(tiny_path, cfg), Learner(tiny_path, cfg)  # same seed: same weights
    for s, own in zip(samples, alone.logprobs(samples)):
        s.logprobs = own  # on-policy: no token is clipped, every micro-batch has a gradient
    seen = capture_grads(learner)
    stats = learner.train_step(samples)
    batches = pack_micro_batches([s.num_tokens for s in samples], cfg.micro_batch_tokens)
    assert stats["learner/micro_batches"] == len(batches) > 2
    n_loss = sum(sum(s.loss_mask) for s in samples)
    expected = torch.zeros_like(alone.flat.master)
    for idx in batches:  # each micro-batch alone, from a zero bf16 gradient, in the step's order
        alone.flat.grad.zero_()
        alone._micro_step([samples[i] for i in idx], n_loss)
        assert alone.flat.grad.dtype == torch.bfloat16 and alone.flat.grad.abs().sum() > 0
        expected += alone.flat.grad.float()
    assert torch.equal(seen[0][0], expected)
    # The next step starts afresh: lr 0 leaves the weights as they were, so the same samples
    # must give the very same gradient, with nothing of the last step left in either buffer.
    learner.train_step(samples)
    assert torch.equal(seen[1][0], seen[0][0])


@pytest.mark.parametrize("temperature", [0.7, 0.3])
def test_tempered_logprobs_are_float32_logits_divided(tiny_path, temperature):
    # What vLLM's sampler and the transformers engine report: the bf16 model's logits upcast to
    # float32, then divided. Dividing the bf16 logits first rounds them to bf16 again (here
    # ~4e-4 nats a token on the tiny model's small logits, ~0.05 on SmolLM2's).
    learner = Learner(tiny_path, TrainerConfig(dtype="bfloat16", device="cpu"),
                      temperature=temperature)
    samples = random_samples(3, seed=4)
    for s, got in zip(samples, learner.logprobs(samples)):
        ids = torch.tensor([s.prompt_ids + s.response_ids])
        with torch.no_grad():
            logits = learner.model(ids).logits[0, len(s.prompt_ids) - 1:-1].float()
        expected = torch.log_softmax(logits / temperature, dim=-1)[
            torch.arange(len(s.response_ids)), torch.tensor(s.response_ids)]
        torch.testing.assert_close(torch.tensor(got), expected, rtol=0, atol=1e-5)
