"""Model preparation: atomic, idempotent, and the result really runs in transformers and vLLM."""

from __future__ import annotations

import subprocess
import sys

import pytest

from selfplay import model_cache as models
from selfplay.core.config_schema import ConfigError


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
    code = "from selfplay.model_cache import prepare; print(prepare('tiny', verify_vllm=False))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1] == str(fresh_cache / "tiny")
    assert [p.name for p in fresh_cache.iterdir() if not p.name.endswith(".lock")] == ["tiny"]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty local Hugging Face hub cache in place of the machine's."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def cache_hub_model(cache, repo_id: str) -> None:
    """Lay ``repo_id`` out in ``cache`` as ``hf download`` does: refs/main names a snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text("{}")


def test_resolve_model_passes_folders_and_cached_hub_ids_through(tmp_path, tiny_model, hub_cache):
    assert models.resolve_model(tiny_model) == tiny_model
    cache_hub_model(hub_cache, "Qwen/Qwen3-4B-Base")  # as on a GPU cluster that downloaded it
    assert models.resolve_model("Qwen/Qwen3-4B-Base") == "Qwen/Qwen3-4B-Base"


def test_a_folder_without_config_json_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"^model='.*': the folder has no config.json, so it is not a "
                                          r"Hugging Face model folder$"):
        models.resolve_model(str(tmp_path))


def test_a_missing_folder_is_a_config_error_listing_the_built_in_models(tmp_path):
    with pytest.raises(ConfigError, match=r"^model='.*/missing/dir': neither a built-in model "
                                          r"\(smollm2-135m-instruct, tiny\) nor an existing folder$"):
        models.resolve_model(str(tmp_path / "missing" / "dir"))


def test_a_hub_id_not_in_the_local_cache_says_what_to_do(hub_cache):
    with pytest.raises(ConfigError) as err:
        models.resolve_model("Qwen/Qwen3-4B-Base")
    text = str(err.value)
    assert "\n" not in text and text.startswith("model='Qwen/Qwen3-4B-Base': not an existing folder")
    assert f"not in the local Hugging Face cache ({hub_cache}), and it could not be downloaded" in text
    assert "hf download Qwen/Qwen3-4B-Base" in text and "or pass a local model folder" in text
    # The revision must be there, not just the repository's folder (a download cut short).
    (hub_cache / "models--Qwen--Qwen3-4B-Base" / "refs").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache"):
        models.resolve_model("Qwen/Qwen3-4B-Base")


def test_a_hub_id_the_hub_serves_is_passed_through(hub_cache, monkeypatch):
    fetched = []
    monkeypatch.setattr(models, "fetch_hub_config", lambda repo_id: fetched.append(repo_id))
    assert models.resolve_model("Qwen/Qwen3-4B-Base") == "Qwen/Qwen3-4B-Base"
    assert fetched == ["Qwen/Qwen3-4B-Base"]


def test_an_unreachable_hub_is_said_in_seconds(hub_cache, monkeypatch):
    import time

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.perf_counter()
    problem = models.fetch_hub_config("Qwen/Qwen3-4B-Base")
    assert problem.startswith("the hub at http://127.0.0.1:9 cannot be reached from here")
    assert time.perf_counter() - start < 10


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


def test_a_misspelt_built_in_name_suggests_the_closest_one():
    with pytest.raises(ConfigError, match=r"did you mean smollm2-135m-instruct\?"):
        models.resolve_model("smollm2-135m-instruc")
