# Two commands on a fresh machine: `make run` (the main job) and `make test` (the test suite).
# Each sets up .venv first when needed (scripts/setup.sh, again whenever what it installs changed).

VENV := .venv
STAMP := $(VENV)/.peftbench-setup
# The offline mirror of datasets and the GPT-2 tokenizer (../shared beside the checkout, or
# `make run PEFTBENCH_MIRROR=/path`): where there is one, names resolve there and nothing is asked
# of the Hugging Face Hub; without one, datasets and models come from the Hub as usual.
PEFTBENCH_MIRROR ?= $(abspath ../shared)
ifneq ($(wildcard $(PEFTBENCH_MIRROR)/datasets),)
export PEFTBENCH_MIRROR
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
endif

# The main job: MiniLM on rotten_tomatoes with LoRA, IA3 and prefix tuning (and the reference rows).
RUN_ARGS ?= --model minilm --dataset rotten_tomatoes --methods lora,ia3,prefix_tuning --out runs/

.PHONY: setup run test lint docs gpu-bundle

setup: $(STAMP)

$(STAMP): scripts/setup.sh pyproject.toml plugins/peftbench-bitfit/pyproject.toml plugins/peftbench-peft-extras/pyproject.toml
	bash scripts/setup.sh
	touch $@

run: $(STAMP)
	$(VENV)/bin/peftbench run $(RUN_ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

docs: $(STAMP)
	$(VENV)/bin/peftbench docs --records leaderboard/records --site docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# What the GPU check needs on a machine without network (see benchmarks/gpu_check.sh --bundle).
gpu-bundle:
	bash benchmarks/gpu_prepare.sh
