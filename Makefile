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

# The published leaderboard of 0.4 (hours on 2 cores, on an otherwise idle machine; it resumes from its
# records): MiniLM on four datasets with the three main methods and every reference row, tuned, 5
# seeds (3 put a row's 95% interval at 2.5 times its seeds' spread, 5 at 1.2: a row whose seeds vary
# as much as the test set's own error would be ±3 points with 3); 10 on glue/rte, whose 277 test
# examples give one seed's accuracy a standard error of 3 points by themselves (with 5 seeds ia3's
# interval was ±3.2 points without its seeds disagreeing more than that; with 10, 0.7 times the
# spread); then the gallery of every method on a fixed 2,000-example training subset, 3 seeds. Seeds
# 0-2 are also the tuning seeds; more seeds add runs without changing any finished one. --max-length
# is per dataset, truncating nothing: the longest example is 78 tokens (rotten_tomatoes), 87
# (emotion), 289 (glue/rte, a pair) and 125 (stsb, a pair). A sweep's records are committed as they
# come (it outlasts a machine: a fresh clone resumes where it stopped). The five pages are published
# in $(PUBLISH_OUT), where a complete page resumes to nothing (a new protocol's sweep goes to
# PUBLISH_OUT=leaderboard/next first, the records it replaces to leaderboard/previous); GALLERY_OUT
# sends the gallery, the longest of them, elsewhere until it is complete.
PUBLISH_OUT ?= leaderboard/records
GALLERY_OUT ?= $(PUBLISH_OUT)
# A dataset whose sweep had failed runs does not stop the next one (make publish exits 1 at the end);
# an interrupt (Ctrl-C, exit 130) stops them all.
OR_GO_ON = || { code=$$?; [ $$code -ge 128 ] && exit $$code; status=1; }
# fp32 everywhere: the sweep spans machines, and bf16 (auto where the CPU has it) would change the
# run ids and the numbers mid-sweep; every CPU runs fp32.
PUBLISH_RUN := $(VENV)/bin/peftbench run --model minilm --tune --precision fp32
PUBLISHED := lora,ia3,prefix_tuning,full_finetune
GALLERY := adalora,bitfit,boft,c3a,delora,dora,fourierft,gralora,hira,hra,ia3,ln_tuning,loha,lokr,lora,lora_fa,lora_plus,miss,oft,olora,p_tuning,pissa,prefix_tuning,prompt_tuning,randlora,road,rslora,shira,vblora,vera,full_finetune
PAGE_RUN := $(PUBLISH_RUN) --methods $(PUBLISHED) --num-seeds
GALLERY_RUN := $(PUBLISH_RUN) --num-seeds 3 --methods $(GALLERY)

.PHONY: setup run test lint docs gpu-bundle publish

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

publish: $(STAMP)
	status=0; \
	$(PAGE_RUN) 5 --dataset rotten_tomatoes --max-length 128 --out $(PUBLISH_OUT)/minilm-rotten_tomatoes $(OR_GO_ON); \
	$(PAGE_RUN) 5 --dataset emotion --max-length 128 --out $(PUBLISH_OUT)/minilm-emotion $(OR_GO_ON); \
	$(PAGE_RUN) 10 --dataset glue --dataset-config rte --max-length 320 --out $(PUBLISH_OUT)/minilm-glue-rte $(OR_GO_ON); \
	$(PAGE_RUN) 5 --dataset stsb --max-length 128 --out $(PUBLISH_OUT)/minilm-stsb $(OR_GO_ON); \
	$(GALLERY_RUN) --dataset rotten_tomatoes --train-examples 2000 --max-length 128 --out $(GALLERY_OUT)/minilm-rotten_tomatoes-gallery $(OR_GO_ON); \
	exit $$status

# What the GPU check needs on a machine without network (see benchmarks/gpu_check.sh --bundle).
gpu-bundle:
	bash benchmarks/gpu_prepare.sh
