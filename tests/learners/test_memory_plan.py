"""The learner's memory plan: parameter counts of the shipped configs, one plan worked by hand,
and the one-line error when it does not fit."""

from __future__ import annotations

import pytest

from learners.memory_plan import GIB, Architecture, load_architecture, plan_memory, shipped_models


def small() -> Architecture:
    return Architecture.from_config({"hidden_size": 64, "num_hidden_layers": 2,
                                     "num_attention_heads": 4, "num_key_value_heads": 2,
                                     "head_dim": 16, "intermediate_size": 128, "vocab_size": 1000,
                                     "tie_word_embeddings": True, "model_type": "llama"}, "small")


@pytest.mark.parametrize("hub_id, params", [
    # What transformers counts for each config (from_config on the meta device).
    ("Qwen/Qwen3-4B-Base", 4_022_468_096),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 1_777_088_000),
    ("Qwen/Qwen2.5-0.5B", 494_032_768),
])
def test_shipped_configs_count_the_parameters_transformers_counts(hub_id, params):
    assert load_architecture(hub_id).params == params
    assert hub_id.split("/")[1] in shipped_models()


def test_plan_of_a_small_model_worked_by_hand():
    arch = small()
    # Layer: q 64x64, k and v 64x32 each, o 64x64 = 12,288; MLP 3 x 64 x 128 = 24,576; two
    # norms 128: 36,992. Root: tied embeddings 1000 x 64 + final norm 64 = 64,064.
    assert (arch.layer_params, arch.root_params) == (36_992, 64_064)
    p = 2 * 36_992 + 64_064
    assert arch.params == p == 138_048
    plan = plan_memory(arch, ranks=2, micro_batch_tokens=100, gradient_checkpointing=False,
                       device_gib=1.0)
    rows = dict(plan.rows)
    assert rows["master weights (fp32, 1/2)"] == 4 * p / 2 == 276_096
    assert rows["gradients (fp32, 1/2)"] == 276_096
    assert rows["AdamW m and v (fp32, 1/2)"] == 552_192
    assert rows["compute copies (bfloat16: root + 2 layers)"] == 2 * (64_064 + 2 * 36_992)
    assert rows["one layer's gradient before reduce-scatter (fp32)"] == 4 * 36_992
    # Per token and layer 4x64 + 3x64 (q) + 4x32 (k, v) + 4x128 (MLP) = 1,088 bf16 elements.
    assert rows["activations (2 layers)"] == 2 * 1_088 * 100 * 2 == 435_200
    # The default chunk (1,024 loss tokens) holds the whole micro-batch here.
    assert rows["logits of one chunk (100 of 100 loss tokens x 1,000)"] == 14 * 100 * 1000
    assert plan.total_bytes == 276_096 * 2 + 552_192 + 276_096 + 147_968 + 435_200 + 1_400_000 + 2 * GIB
    checkpointed = dict(plan_memory(arch, 2, 100, True, 1.0).rows)
    # Each layer's input (64 bf16 per token) plus one layer's activations, recomputed.
    assert checkpointed["activations (checkpointed: 2 layer inputs + 1 layer)"] == 2 * 64 * 100 * 2 + 2 * 1_088 * 100
    assert "total" in plan.table().splitlines()[-1] and "DOES NOT FIT" in plan.table()


def test_a_plan_that_does_not_fit_is_one_line_naming_the_fields():
    plan = plan_memory(load_architecture("Qwen/Qwen3-4B-Base"), ranks=1, micro_batch_tokens=16384,
                       gradient_checkpointing=False, device_gib=80)
    with pytest.raises(ValueError) as err:
        plan.check()
    message = str(err.value)
    assert "\n" not in message and message.startswith("cluster.learner_memory_gib=80:")
    assert "cluster.learner_ranks" in message and "trainer.micro_batch_tokens" in message
    plan_memory(load_architecture("Qwen/Qwen3-4B-Base"), 4, 16384, True, 80).check()  # fits


def test_unknown_model_names_the_shipped_ones():
    with pytest.raises(ValueError, match="Qwen3-4B-Base"):
        load_architecture("someone/Unknown-7B")


def test_logits_count_one_chunk_not_the_micro_batch():
    # Before chunking: 14 bytes x 16,384 tokens x 151,936 = 32.5 GiB of the 55.7 GiB per rank of
    # spiral_kuhn_qwen3_4b; now one chunk of 1,024 tokens: 2.0 GiB.
    plan = plan_memory(load_architecture("Qwen/Qwen3-4B-Base"), 4, 16384, True, 80)
    rows = dict(plan.rows)
    assert rows["logits of one chunk (1,024 of 16,384 loss tokens x 151,936)"] == 14 * 1024 * 151_936
    assert not any(label.startswith("logits at loss tokens") for label in rows)
    smaller = dict(plan_memory(load_architecture("Qwen/Qwen3-4B-Base"), 4, 16384, True, 80,
                               logits_chunk_tokens=256).rows)
    assert smaller["logits of one chunk (256 of 16,384 loss tokens x 151,936)"] == 14 * 256 * 151_936


def test_saturn_recipe_fits_its_card_with_32k_token_micro_batches():
    from selfplay.config import load_config

    cfg = load_config("saturn_1p5b")
    t, cl = cfg.trainer, cfg.cluster
    assert t.micro_batch_tokens == 32768 and cl.learner_memory_gib == 80
    plan = plan_memory(load_architecture(cfg.model), cl.learner_ranks, t.micro_batch_tokens,
                       t.gradient_checkpointing, cl.learner_memory_gib, "bfloat16",
                       reference=t.kl_coef > 0, logits_chunk_tokens=t.logits_chunk_tokens)
    assert plan.fits and plan.total_bytes < 50 * GIB  # 65 GiB of logits alone before chunking


def test_lora_plan_holds_the_frozen_base_and_the_adapters_optimiser_state():
    from selfplay.core.config_schema import LoraConfig

    arch = small()
    lora = LoraConfig(rank=8, target_modules=["q_proj", "v_proj"])
    # Per layer r * (in + out): q 8 x (64 + 64) = 1,024, v 8 x (64 + 32) = 768; two layers.
    assert arch.lora_params(8, lora.target_modules) == 2 * (1_024 + 768) == 3_584
    plan = plan_memory(arch, ranks=1, micro_batch_tokens=100, gradient_checkpointing=False,
                       device_gib=1.0, lora=lora, reference=True)
    rows = dict(plan.rows)
    assert rows["base weights (frozen, bfloat16)"] == 2 * 138_048
    assert rows["LoRA master weights (fp32)"] == rows["LoRA gradients (fp32)"] == 4 * 3_584
    assert rows["LoRA AdamW m and v (fp32)"] == 8 * 3_584
    assert rows["LoRA compute copy and its gradient (bfloat16)"] == 2 * 2 * 3_584
    assert not any("reference" in label or "reduce-scatter" in label for label in rows)  # the base is it
    assert rows["activations (2 layers)"] == 435_200  # as with full fine-tuning
    assert "LoRA rank 8: 3,584 trainable parameters" in plan.table().splitlines()[0]
    with pytest.raises(ValueError, match="learner_ranks=1"):
        plan_memory(arch, 2, 100, False, 1.0, lora=lora)
    with pytest.raises(ValueError, match="lm_head"):
        arch.lora_params(8, ["q_proj", "lm_head"])
