"""Model preparation: atomic, idempotent, and the result really runs in transformers and vLLM."""

from __future__ import annotations

import subprocess
import sys

import pytest

from selfplay.core import models


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFPLAY_CACHE", str(tmp_path))
    return tmp_path / "models"


def test_tiny_prepare_writes_a_loadable_folder_and_second_call_is_a_no_op(fresh_cache):
    path = models.prepare("tiny", verify_vllm=False)
    assert path == fresh_cache / "tiny" and (path / "config.json").is_file()
    assert (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()
    stamp = (path / "config.json").stat().st_mtime_ns
    assert models.prepare("tiny", verify_vllm=False) == path
    assert (path / "config.json").stat().st_mtime_ns == stamp  # not rebuilt


def test_tiny_model_is_small_and_the_same_everywhere(fresh_cache, tiny_model):
    import json

    from safetensors.torch import load_file

    path = models.prepare("tiny", verify_vllm=False)
    config = json.loads((path / "config.json").read_text())
    assert config["hidden_size"] == 64 and config["num_hidden_layers"] == 2
    ours, cached = load_file(path / "model.safetensors"), load_file(f"{tiny_model}/model.safetensors")
    assert all((ours[k] == cached[k]).all() for k in ours)  # seeded: identical weights


def test_a_half_written_folder_is_never_used(fresh_cache):
    # A crash mid-prepare leaves only a temporary folder; the model does not count as prepared.
    stale = fresh_cache / ".tiny-crashed"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{")
    assert not models.is_prepared("tiny")
    path = models.prepare("tiny", verify_vllm=False)
    assert (path / "model.safetensors").is_file()


def test_concurrent_prepares_wait_for_each_other(fresh_cache):
    code = "from selfplay.core.models import prepare; print(prepare('tiny', verify_vllm=False))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1] == str(fresh_cache / "tiny")
    assert [p.name for p in fresh_cache.iterdir() if not p.name.endswith(".lock")] == ["tiny"]


def test_resolve_model_passes_folders_and_hub_ids_through(tmp_path, tiny_model):
    assert models.resolve_model(tiny_model) == tiny_model
    assert models.resolve_model("Qwen/Qwen3-4B-Base") == "Qwen/Qwen3-4B-Base"
    with pytest.raises(FileNotFoundError, match="no config.json"):
        models.resolve_model(str(tmp_path))


def test_cli_model_path_prints_the_prepared_folder(tiny_model):
    proc = subprocess.run([sys.executable, "-m", "selfplay", "model", "path", "tiny"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == tiny_model


@pytest.mark.slow
def test_smollm2_generates_the_same_greedy_text_in_transformers_and_vllm(smollm2):
    from transformers import AutoTokenizer

    hf = models.greedy_transformers(smollm2, max_new_tokens=8)
    vl = models.greedy_vllm(smollm2, max_new_tokens=8)
    text = AutoTokenizer.from_pretrained(smollm2).decode(hf)
    assert len(hf) == 8 and text.strip()  # real text, not nothing
    assert vl == hf, (text, vl, hf)


@pytest.mark.slow
def test_smollm2_has_a_chat_template(smollm2):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                     add_generation_prompt=True)
    assert "hi" in prompt and prompt.rstrip().endswith("assistant")
