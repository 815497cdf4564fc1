"""The learner's memory plan for any model, checked against the learner's device: the model's own
config.json (a folder, a built-in, a hub id's cached config, the copies shipped with selfplay), the
device memory given or measured here, one line where either is missing, and every shipped config
either fitting its plan or marked evaluation-only (refused by ``selfplay train``, taken by
``selfplay eval``)."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from learners.memory_plan import Architecture, load_architecture
from selfplay.config import ConfigError, load_config, shipped_configs
from selfplay.placement import memory_check

# A 3B-shaped Llama that selfplay ships no config for.
CUSTOM = {"model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16,
          "num_attention_heads": 16, "num_key_value_heads": 4, "intermediate_size": 8192,
          "vocab_size": 32000, "tie_word_embeddings": False}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Empty caches: no built-in prepared, an empty Hugging Face cache (returned), no cluster."""
    from huggingface_hub import constants

    monkeypatch.setenv("SELFPLAY_CACHE", str(tmp_path / "selfplay"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path / "hub"


def cache_config(hub, repo_id: str, config: dict) -> None:
    """Write ``config`` where the Hugging Face cache keeps ``repo_id``'s main revision."""
    folder = hub / f"models--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(config))


def test_a_hub_id_is_planned_from_its_config_in_the_hugging_face_cache(offline):
    cache_config(offline, "someone/Custom-3B", CUSTOM)
    cfg = load_config("debug", ["model=someone/Custom-3B", "cluster.learner_memory_gib=80"])
    text, error = memory_check.plan_report(cfg)
    params = Architecture.from_config(CUSTOM).params
    assert f"learner memory per rank: Custom-3B ({params / 1e9:.2f} B parameters)" in text
    assert "the Hugging Face cache" in text and error is None


def test_a_folder_and_a_built_in_not_yet_prepared_are_planned(offline, tmp_path, tiny_model):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text(json.dumps(CUSTOM))
    assert memory_check.model_config(str(tmp_path / "mine"))[0] == CUSTOM
    # Nothing prepared under SELFPLAY_CACHE: the built-ins' architectures without their weights,
    # the same as the prepared folders' config.json (tiny_model was prepared elsewhere).
    config, where = memory_check.model_config("tiny")
    assert "not prepared" in where
    assert Architecture.from_config(config).params == load_architecture(tiny_model).params
    config, _ = memory_check.model_config("smollm2-135m-instruct")
    assert Architecture.from_config(config).params == 134_515_008  # transformers' count
    text, _ = memory_check.plan_report(load_config("debug"))
    assert "learner memory per rank: smollm2-135m-instruct (0.13 B" in text


def test_no_config_anywhere_is_one_line_in_dry_run_and_at_start_up(offline, capsys):
    from selfplay.commands import cli

    cfg = load_config("debug", ["model=someone/Unknown-7B"])
    line = memory_check.check_memory(cfg)  # what the start-up log shows; the run goes on
    assert "\n" not in line
    assert line.startswith("learner memory plan: none, the learner's memory is not checked")
    assert "Unknown-7B" in line and "Hugging Face cache" in line and "Qwen3-4B-Base" in line
    assert cli.main(["train", "--config", "debug", "model=someone/Unknown-7B", "--dry-run"]) == 0
    assert line in capsys.readouterr().out.splitlines()


def test_host_ram_comes_from_meminfo_lowered_to_the_cgroup_limit(tmp_path):
    meminfo, cgroup = tmp_path / "meminfo", tmp_path / "memory.max"
    meminfo.write_text("MemTotal:       24683520 kB\nMemFree:         1000000 kB\n")
    cgroup.write_text("max\n")
    assert memory_check.host_ram_gib(meminfo, cgroup) == pytest.approx(24683520 / 2**20)
    cgroup.write_text(f"{8 * 2**30}\n")
    assert memory_check.host_ram_gib(meminfo, cgroup) == 8.0
    assert memory_check.host_ram_gib(tmp_path / "none", tmp_path / "none") is not None  # psutil's figure
    assert memory_check.host_ram_gib() > 0  # this machine


def test_a_cpu_learner_is_checked_against_the_host_ram_when_no_memory_is_given(offline, monkeypatch):
    monkeypatch.setattr(memory_check, "host_ram_gib", lambda: 4.0)
    cfg = load_config("debug")  # a CPU learner, no cluster.learner_memory_gib
    assert memory_check.learner_memory(cfg) == (4.0, "this host's RAM")
    with pytest.raises(ConfigError) as err:
        memory_check.check_memory(cfg)  # ~7 GiB against 4
    message = str(err.value)
    assert "\n" not in message and message.startswith("cluster.learner_memory_gib not set: the learner needs")
    assert "more than the 4 GiB of this host's RAM" in message
    monkeypatch.setattr(memory_check, "host_ram_gib", lambda: 16.0)
    two = load_config("debug", ["cluster.learner_ranks=2", "model=tiny"])  # under 5 GiB a rank
    assert memory_check.learner_memory(two) == (8.0, "this host's RAM (16.00 GiB) shared by 2 learner ranks")
    text = memory_check.check_memory(two)
    assert "of 8 GiB, this host's RAM (16.00 GiB) shared by 2 learner ranks (fits)" in text


def test_a_gpu_learner_is_checked_against_the_card_or_says_it_could_not_be(offline, monkeypatch):
    # This machine: a card's memory where torch sees one, else why not.
    gib, source = memory_check.gpu_memory_gib()
    assert (gib is None and "set cluster.learner_memory_gib" in source) or (gib > 0 and "GPU" in source)
    cfg = load_config("saturn_1p5b", ["cluster.learner_memory_gib=null"])
    monkeypatch.setattr(memory_check, "gpu_memory_gib", lambda: (None, "no CUDA device visible here"))
    text, error = memory_check.plan_report(cfg)
    assert "(not checked: no CUDA device visible here)" in text and error is None
    monkeypatch.setattr(memory_check, "gpu_memory_gib", lambda: (24.0, "this machine's GPU (a 24 GiB card)"))
    text, error = memory_check.plan_report(cfg)
    assert "of 24 GiB, this machine's GPU (a 24 GiB card) (DOES NOT FIT)" in text
    assert error.startswith("cluster.learner_memory_gib not set: the learner needs")


def test_on_a_cluster_the_memory_here_is_not_the_learners(offline, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    gib, why = memory_check.learner_memory(load_config("debug"))
    assert gib is None and "cluster at 10.0.0.1:6379" in why and "set cluster.learner_memory_gib" in why


@pytest.mark.parametrize("name", shipped_configs())
def test_every_model_a_shipped_config_names_has_its_architecture_offline(name, offline):
    cfg = load_config(name)
    config, where = memory_check.model_config(cfg.model)  # no cache at all: the copies shipped with selfplay
    assert "shipped with selfplay" in where or "not prepared" in where
    assert Architecture.from_config(config).params > 0


def test_the_14b_architecture_counts_the_parameters_transformers_counts():
    # transformers' count of the shipped config (from_config on the meta device): 14.77 B, the
    # published model's "14.8B params".
    assert load_architecture("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B").params == 14_770_033_664


@pytest.mark.parametrize("name", shipped_configs())
def test_dry_run_plans_every_shipped_config_and_each_fits_or_is_evaluation_only(name, offline,
                                                                                 monkeypatch, capsys):
    from selfplay.commands import cli

    # A modest machine for the CPU configs; the GPU configs must name the card they are written
    # for (no GPU is measured here).
    monkeypatch.setattr(memory_check, "host_ram_gib", lambda: 16.0, raising=False)
    monkeypatch.setattr(memory_check, "gpu_memory_gib", lambda: (None, "no GPU here"), raising=False)
    cfg = load_config(name)
    cli.main(["train", "--config", name, "--dry-run"])
    out, err = capsys.readouterr()
    total = [line for line in out.splitlines() if line.startswith("  total ") and "GiB" in line]
    assert "learner memory per rank:" in out and len(total) == 1, out
    if cfg.evaluation_only:
        first = (resources.files("selfplay") / "configs" / f"{name}.yaml").read_text().splitlines()[0]
        assert first.startswith("evaluation_only: true")
        assert len(err.strip().splitlines()) == 1
        assert err.startswith("config error: evaluation_only=true")
    else:
        assert total[0].endswith("(fits)"), total[0]


def test_train_refuses_an_evaluation_only_config_in_one_line_and_eval_takes_it(offline, monkeypatch,
                                                                               capsys):
    from selfplay.commands import cli, evaluate

    assert cli.main(["train", "--config", "leap_r1_distill_14b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("config error: evaluation_only=true: config 'leap-r1-distill-14b'")
    seen = []
    monkeypatch.setattr(evaluate, "run_leap_eval", lambda cfg, args: seen.append(cfg) or 0)
    assert cli.main(["eval", "--config", "leap_r1_distill_14b"]) == 0
    assert seen and seen[0].evaluation_only
