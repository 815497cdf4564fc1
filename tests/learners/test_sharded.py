"""The sharded learner (FSDP2) on 2 CPU ranks (gloo, spawned processes) against the single-process
learner: the same update, exact weights out, a resumable checkpoint whose HF folder loads anywhere.
"""

from __future__ import annotations

import pytest
import torch
from learner_helpers import fp32_trainer, random_samples
from sharded_helpers import checkpoint_round_trip, first_steps, reference_gradient, run_ranks

from learners.checkpoint import list_checkpoints
from learners.learner import Learner
from learners.step_parts import pack_micro_batches, split_by_tokens


def test_split_by_tokens_balances_longest_first_and_keeps_order():
    # Descending: 50 -> r0, 40 -> r1, 30 -> r1 (40 < 50), 10 -> r0 (50 < 70): 60 vs 70 tokens.
    assert split_by_tokens([10, 50, 30, 40], 2) == [[0, 1], [2, 3]]
    assert split_by_tokens([5, 5], 3) == [[0], [1], []]  # fewer samples than ranks
    assert split_by_tokens([7, 3, 2], 1) == [[0, 1, 2]]


@pytest.fixture(scope="module")
def two_rank_run(tiny_path, tmp_path_factory):
    """One 2-rank run of ``checkpoint_round_trip`` and the single-process learner on the same
    batches; the uneven split leaves one rank with fewer micro-batches (it runs empty ones)."""
    out = tmp_path_factory.mktemp("sharded")
    trainer = fp32_trainer(micro_batch_tokens=64, grad_clip=0.05)
    samples = random_samples(9, seed=1)
    second = samples[::-1][:7]
    shares = split_by_tokens([s.num_tokens for s in samples], 2)
    counts = [len(pack_micro_batches([samples[i].num_tokens for i in share], 64)) for share in shares]
    assert counts[0] != counts[1], counts  # the test must exercise the empty micro-batches
    run_ranks(checkpoint_round_trip, 2, tiny_path, trainer, samples, str(out))
    ref = Learner(tiny_path, trainer)
    loaded = dict(ref.named_weights())
    grads: dict[str, torch.Tensor] = {}
    step = ref.optimizer.step

    def recording_step(*args, **kwargs):  # the clipped gradient of the first step
        grads.update({n: p.grad.clone() for n, p in ref.model.named_parameters()} if not grads else {})
        return step(*args, **kwargs)

    ref.optimizer.step = recording_step
    ref_stats1 = ref.train_step(samples)
    ref_step1 = dict(ref.named_weights())
    ref_stats2 = ref.train_step(second)
    return {"out": out, "got": torch.load(out / "results-2.pt", weights_only=False), "ref": {
        "loaded": loaded, "grads1": grads, "stats1": ref_stats1, "step1": ref_step1, "stats2": ref_stats2,
        "step2": dict(ref.named_weights())}}


@pytest.mark.slow
def test_gathered_weights_equal_the_unsharded_model_exactly(two_rank_run):
    got, ref = two_rank_run["got"]["loaded"], two_rank_run["ref"]["loaded"]
    assert sorted(got) == sorted(ref)  # the same names, the tied head once
    for name in ref:
        assert torch.equal(got[name], ref[name]), name


@pytest.mark.slow
def test_two_ranks_make_the_update_of_one_rank_on_the_whole_batch(two_rank_run):
    got, ref = two_rank_run["got"], two_rank_run["ref"]
    assert got["stats1"]["learner/grad_norm"] > 0.05  # the clip was active
    for key in ("learner/loss/total", "learner/loss/pg", "learner/grad_norm", "learner/entropy",
                "learner/approx_kl", "learner/tokens", "learner/response_tokens"):
        assert got["stats1"][key] == pytest.approx(ref["stats1"][key], rel=1e-5), key
    # Summation order differs (two halves, other paddings, then a reduce-scatter): gradients
    # agree to float32 rounding (seen: 6e-6 of each tensor's largest entry).
    for name, grad in ref["grads1"].items():
        scale = grad.abs().max()
        assert (got["grads1"][name] - grad).abs().max() <= 3e-5 * scale, name
    # AdamW's first steps divide by |g|, which magnifies that rounding where a gradient entry is
    # a near-cancelling sum close to eps (seen: 1.6e-5 on a move of 1e-3), so the weights are
    # bounded by a share of the step's largest move; on average they agree far closer.
    for step in ("step1", "step2"):
        for name, tensor in ref[step].items():
            moved = (tensor - ref["loaded"][name]).abs().max()
            diff = (got[step][name] - tensor).abs()
            assert diff.max() <= 0.1 * moved, (step, name, float(diff.max()), float(moved))
            assert diff.mean() <= 1e-3 * moved, (step, name, float(diff.mean()), float(moved))


@pytest.mark.slow
def test_sharded_checkpoint_resumes_exactly_and_its_hf_folder_loads(two_rank_run):
    from transformers import AutoModelForCausalLM

    got = two_rank_run["got"]
    assert got["resumed_step"] == 1 and got["resumed_state"]["note"] == "x"
    for name, tensor in got["step2"].items():
        assert torch.equal(got["resumed_step2"][name], tensor), name
    [(step, folder)] = list_checkpoints(two_rank_run["out"] / "run")
    assert step == 1 and (folder / "sharded" / ".metadata").is_file()
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    for name, tensor in hf.state_dict().items():
        if name != "lm_head.weight":  # tied to the embeddings
            assert torch.equal(tensor, got["step1"][name]), name


@pytest.mark.slow
def test_chunked_logits_and_sequence_mean_on_two_ranks(tiny_path, tmp_path):
    """The sequence count is global: two ranks (with an empty micro-batch on one) make the update
    of one unsharded learner on the whole batch under seq_mean_token_mean, with the logits in
    chunks of 5 positions against the whole micro-batch's; and chunking changes a bf16 sharded
    step by bf16 rounding only."""
    samples = random_samples(9, seed=1)
    base = dict(micro_batch_tokens=64, loss_agg="seq_mean_token_mean", kl_coef=0.1)
    fp32_chunked = fp32_trainer(**base, logits_chunk_tokens=5)
    bf16 = [fp32_trainer(**base, dtype="bfloat16", logits_chunk_tokens=c) for c in (5, 10**6)]
    out = tmp_path / "steps.pt"
    run_ranks(first_steps, 2, tiny_path, [fp32_chunked, *bf16], samples, str(out))
    got = torch.load(out, weights_only=False)
    ref = Learner(tiny_path, fp32_trainer(**base, logits_chunk_tokens=10**6), temperature=0.7)
    grads = reference_gradient(ref)
    ref_stats = ref.train_step(samples)
    for key in ("learner/loss/total", "learner/loss/pg", "learner/entropy", "learner/kl"):
        assert got[0]["stats"][key] == pytest.approx(ref_stats[key], rel=1e-5), key
    for name, grad in grads.items():  # float32 rounding, as in the test above
        assert (got[0]["grads"][name] - grad).abs().max() <= 3e-5 * grad.abs().max(), name
    chunked, whole = got[1], got[2]
    for name, grad in whole["grads"].items():  # seen: 2e-3 of the largest entry
        assert (chunked["grads"][name] - grad).abs().max() <= 1e-2 * grad.abs().max(), name
    assert chunked["stats"]["learner/loss/total"] == pytest.approx(
        whole["stats"]["learner/loss/total"], rel=1e-4)
