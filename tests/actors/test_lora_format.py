"""The PEFT adapter folder as the engines read it: names mapped to the model's weights, and the
merge ``W_base + alpha/r * B @ A`` against peft's own (fast: the tiny model, no engine)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from lora_helpers import load_peft, make_adapter
from selfplay.core.lora_format import (folder_bytes, lora_pairs, merged_weights, read_adapter,
                                       read_folder_files, weight_name, write_folder_files)


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory) -> str:
    return make_adapter(tiny_model, str(tmp_path_factory.mktemp("lora") / "v1"), seed=1)


def test_peft_names_map_to_the_models_weights():
    assert (weight_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
            == "model.layers.0.self_attn.q_proj.weight")
    assert weight_name("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight") == \
        "model.layers.1.mlp.down_proj.weight"
    with pytest.raises(ValueError, match="not a LoRA A or B"):
        weight_name("base_model.model.model.layers.0.self_attn.q_proj.weight")


@pytest.mark.parametrize("rslora", [False, True])
def test_merge_equals_peft_merge_and_logits(tiny_model, tmp_path, rslora):
    from transformers import AutoModelForCausalLM

    folder = make_adapter(tiny_model, str(tmp_path / "a"), seed=2, use_rslora=rslora)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    state = dict(base.state_dict())
    pairs = read_adapter(folder)
    assert len(pairs) == 2 * 7  # two layers, seven projections each
    merged = merged_weights(state, pairs)
    reference = load_peft(tiny_model, folder)
    expected = reference.merge_and_unload().state_dict()
    for name, weight in merged.items():
        torch.testing.assert_close(weight, expected[name], rtol=0, atol=1e-6)
        assert not torch.equal(weight, state[name])  # the adapter does change it
    # The merged model computes what peft's unmerged adapter computes.
    base.load_state_dict(merged, strict=False)
    ids = torch.tensor([[1, 20, 300, 4000, 50]])
    with torch.no_grad():
        torch.testing.assert_close(base(ids).logits, load_peft(tiny_model, folder)(ids).logits,
                                   rtol=0, atol=1e-5)


def test_merge_keeps_the_base_dtype_and_refuses_unknown_or_misshapen_weights(adapter):
    pairs = read_adapter(adapter)
    pair = pairs[0]
    out_f, in_f = pair.lora_b.shape[0], pair.lora_a.shape[1]
    base = {pair.weight_name: torch.zeros(out_f, in_f, dtype=torch.bfloat16)}
    merged = merged_weights(base, [pair])
    assert merged[pair.weight_name].dtype == torch.bfloat16
    torch.testing.assert_close(merged[pair.weight_name].float(), pair.delta(), atol=1e-2, rtol=1e-2)
    with pytest.raises(KeyError, match="not a weight"):
        merged_weights({}, [pair])
    with pytest.raises(ValueError, match="adapter's B @ A"):
        merged_weights({pair.weight_name: torch.zeros(in_f + 1, out_f)}, [pair])


def test_unsupported_adapters_are_refused(adapter):
    from safetensors.torch import load_file

    with open(os.path.join(adapter, "adapter_config.json")) as f:
        config = json.load(f)
    tensors = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    assert lora_pairs(config, tensors)
    for key, value in (("use_dora", True), ("rank_pattern", {"q_proj": 4}), ("bias", "all")):
        with pytest.raises(ValueError, match=key):
            lora_pairs(dict(config, **{key: value}), tensors)
    a_only = {n: t for n, t in tensors.items() if "lora_A" in n}
    with pytest.raises(ValueError, match="only its lora_A"):
        lora_pairs(config, a_only)
    with pytest.raises(ValueError, match="modules_to_save"):
        lora_pairs(config, dict(tensors, **{"base_model.model.lm_head.weight": torch.zeros(2, 2)}))


def test_folder_files_round_trip(adapter, tmp_path):
    files = read_folder_files(adapter)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(files)
    copy = str(tmp_path / "copy")
    assert write_folder_files(copy, files) == folder_bytes(adapter) == sum(map(len, files.values()))
    assert read_folder_files(copy) == files
    with pytest.raises(ValueError, match="plain file name"):
        write_folder_files(str(tmp_path / "bad"), {"../escape": b"x"})


def test_folder_files_with_one_adapter_subfolder_per_policy(adapter, tmp_path):
    files = {f"{name}/{file}": data for name in ("first", "second")
             for file, data in read_folder_files(adapter).items()}
    copy = str(tmp_path / "policies")
    assert write_folder_files(copy, files) == folder_bytes(copy) == sum(map(len, files.values()))
    assert sorted(os.listdir(copy)) == ["first", "second"]
    assert read_folder_files(copy) == files
    assert read_folder_files(os.path.join(copy, "first")) == read_folder_files(adapter)
    for bad in ("/abs/file", "first/../x", "a/b/c", "first/", "./x", ""):
        with pytest.raises(ValueError, match="plain file name"):
            write_folder_files(str(tmp_path / "bad"), {bad: b"x"})
    assert not os.path.exists(tmp_path / "bad")  # refused before anything is written
    os.makedirs(os.path.join(copy, "first", "deeper"))
    with pytest.raises(ValueError, match="two levels"):
        read_folder_files(copy)
