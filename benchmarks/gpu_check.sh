#!/usr/bin/env bash
# The GPU check: on one CUDA GPU, offline, in one call of about 7 minutes at most, installation included.
# Its parts, in order of value, each with its own time limit:
#   gpu-tests     the tests marked gpu (every CUDA-only path: bf16 + fp32 masters, fused AdamW, pinned
#                 copies, --compile, CUDA peak memory, MFU, an out-of-memory run recorded as failed, reload)
#   engines       benchmarks/gpu_benchmark.py: gpt2-random x lora, ia3, prefix_tuning against HF Trainer
#   sweep         the default sweep timed (lora, ia3, prefix_tuning, --num-seeds 3 --tune on gpt2-random x
#                 rotten_tomatoes), runs sharing the GPU as peftbench chooses; goal: under 3 minutes
#   share-shared, share-one-at-a-time
#                 a smaller sweep (lora, ia3, 2 seeds, no reference rows, no inference timing) with runs
#                 sharing the GPU, then one at a time: what sharing buys
# Every figure is added to <results>/<card>.md as soon as it is measured, so a check cut short keeps what
# it measured; logs go to <results>/logs/. A part that fails is named at the end with the command that
# reruns it alone (--parts), which appends to the same results file.
#
#   bash benchmarks/gpu_check.sh                        # on a CUDA machine set up like ours (.venv)
#   bash benchmarks/gpu_check.sh --bundle .gpu-bundle   # on a bare one: its own python3 and torch, the rest
#                                                       # installed with no network from the folder that
#                                                       # benchmarks/gpu_prepare.sh gathered, then a guard
#   bash benchmarks/gpu_check.sh --parts sweep          # only these parts (comma-separated)
#   bash benchmarks/gpu_check.sh --dry-run              # on the CPU with a tiny model: the plumbing only (CI)
# GPU_CHECK_OUT=DIR writes the results there instead of benchmarks/results.
set -uo pipefail
cd "$(dirname "$0")/.."
PARTS_ALL=gpu-tests,engines,sweep,share-shared,share-one-at-a-time
dry_run="" bundle="" parts=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --dry-run) dry_run=1; shift ;;
        --bundle) bundle=$2; shift 2 ;;
        --parts) parts=$2; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for part in ${parts//,/ }; do
    [[ ",$PARTS_ALL," == *",$part,"* ]] || { echo "gpu_check: unknown part '$part'; parts: $PARTS_ALL" >&2; exit 2; }
done
started=$SECONDS
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

if [[ -n $bundle ]]; then
    # A bare machine: its own python3 and torch; everything else from the bundle, no index, into a
    # temporary folder that goes first on the path (after the checkout, whose code is what runs).
    PY="${PYTHON:-python3}"
    site=$(mktemp -d)
    if ! "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$site" "$bundle"/wheels/*.whl; then
        echo "gpu_check: the wheels in $bundle did not install (see above); rerun benchmarks/gpu_prepare.sh" >&2
        exit 3
    fi
    export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
    export PEFTBENCH_MIRROR="$bundle/mirror" PEFTBENCH_PLUGINS=""
    export PEFTBENCH_CACHE="${PEFTBENCH_CACHE:-$(mktemp -d)}"
    "$PY" benchmarks/gpu_guard.py --bundle "$bundle" || exit 3
    echo "gpu_check: installed and checked in $((SECONDS - started)) s" >&2
else
    PY="${PYTHON:-.venv/bin/python}"
    export PEFTBENCH_MIRROR="${PEFTBENCH_MIRROR:-$(cd .. && pwd)/shared}"
fi

if [[ -n $dry_run ]]; then
    OUT="${GPU_CHECK_OUT:-$(mktemp -d)}"
    DEVICE=cpu MODEL=tiny-gpt2 SEEDS=2
    BENCH_ARGS=(--device cpu --train-samples 128)
    SWEEP_ARGS=(--max-steps 2)
    SHARED_RUNS=2 # the CPU default is 1: ask for sharing so the dry run takes that path too
    declare -A LIMIT=([gpu-tests]=900 [engines]=900 [sweep]=900 [share-shared]=900 [share-one-at-a-time]=900)
else
    OUT="${GPU_CHECK_OUT:-benchmarks/results}"
    DEVICE=cuda MODEL=gpt2-random SEEDS=3
    BENCH_ARGS=()
    SWEEP_ARGS=()
    SHARED_RUNS="" # peftbench's own choice for this card
    # Seconds per part: 7 minutes at most together, with the install and guard; the sweep's goal is 180 s.
    declare -A LIMIT=([gpu-tests]=65 [engines]=120 [sweep]=180 [share-shared]=25 [share-one-at-a-time]=35)
    if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
        echo "no CUDA GPU here: run with --dry-run for the CPU plumbing check" >&2
        exit 2
    fi
fi
CARD=$("$PY" -c "import torch; print(torch.cuda.get_device_name() if '$DEVICE' == 'cuda' else 'cpu-dry-run')")
SLUG=$(echo "$CARD" | tr -cs 'A-Za-z0-9' '-' | sed 's/^-//; s/-$//' | tr 'A-Z' 'a-z')
RESULTS="$OUT/$SLUG.md"
LOGS="$OUT/logs"
mkdir -p "$LOGS"
failed=()

wanted() { [[ -z $parts || ",$parts," == *",$1,"* ]]; }

part() { # part NAME COMMAND...: run with its time limit, log it, note a failure in the results
    local name=$1 limit=${LIMIT[$1]}
    shift
    echo "== $name (limit ${limit} s, $((SECONDS - started)) s into the check)" >&2
    local begun=$SECONDS
    timeout --signal=INT --kill-after=5 "$limit" "$@" > >(tee "$LOGS/$SLUG-$name.log") 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - begun)) s" >&2
    if [[ $rc -ne 0 ]]; then
        failed+=("$name")
        printf '\n**%s did not finish cleanly** (exit %s%s); its log: `logs/%s-%s.log`\n\n' \
            "$name" "$rc" "$([[ $rc -eq 124 || $rc -eq 130 ]] && echo ', time limit')" "$SLUG" "$name" >>"$RESULTS"
    fi
}

if [[ -z $parts || ! -f $RESULTS ]]; then
    {
        echo "# GPU check on $CARD"
        echo
        echo "$(date -u '+%Y-%m-%d %H:%M') UTC, peftbench $("$PY" -c 'import peftbench; print(peftbench.__version__)'), $("$PY" -c 'import sys, torch, transformers, peft; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")'), written by \`benchmarks/gpu_check.sh\`."
        echo
        if [[ $DEVICE == cuda ]]; then
            echo '```'
            nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit --format=csv 2>/dev/null || true
            echo '```'
            echo
        fi
    } >"$RESULTS"
else
    printf '\n## Rerun of %s\n\n%s UTC.\n\n' "$parts" "$(date -u '+%Y-%m-%d %H:%M')" >>"$RESULTS"
fi

# 1. The CUDA paths.
if wanted gpu-tests; then
    part gpu-tests "$PY" -m pytest tests/test_gpu.py -m gpu -q -rA -p no:cacheprovider
    {
        echo "## Tests marked gpu"
        echo
        echo '```'
        grep -E '^(PASSED|FAILED|SKIPPED|ERROR)|passed|failed' "$LOGS/$SLUG-gpu-tests.log" | tail -20
        echo '```'
        echo
    } >>"$RESULTS"
fi

# 2. Engine against HF Trainer.
if wanted engines; then
    printf '## Engine against HF Trainer (a) and (b)\n\n' >>"$RESULTS"
    part engines "$PY" benchmarks/gpu_benchmark.py --model "$MODEL" --append "$RESULTS" "${BENCH_ARGS[@]}"
fi

# 3. The default sweep, timed, runs sharing the GPU as peftbench chooses (a fresh folder: nothing skipped).
sweep=(--model "$MODEL" --device "$DEVICE" --methods lora,ia3,prefix_tuning --num-seeds "$SEEDS" --tune)
if wanted sweep; then
    part sweep "$PY" benchmarks/timed_sweep.py "${sweep[@]}" "${SWEEP_ARGS[@]}" \
        ${SHARED_RUNS:+--runs-per-device "$SHARED_RUNS"} --append "$RESULTS"
fi

# 4. What sharing buys, on a smaller sweep: runs sharing the GPU, then one at a time.
small=(--model "$MODEL" --device "$DEVICE" --methods lora,ia3 --num-seeds 2 --no-references --no-inference-timing)
if wanted share-shared; then
    part share-shared "$PY" benchmarks/timed_sweep.py "${small[@]}" "${SWEEP_ARGS[@]}" \
        ${SHARED_RUNS:+--runs-per-device "$SHARED_RUNS"} --append "$RESULTS"
fi
if wanted share-one-at-a-time; then
    part share-one-at-a-time "$PY" benchmarks/timed_sweep.py "${small[@]}" "${SWEEP_ARGS[@]}" \
        --runs-per-device 1 --append "$RESULTS"
fi

printf '\nThe check took %s s in all.\n' "$((SECONDS - started))" >>"$RESULTS"
echo "results: $RESULTS ($((SECONDS - started)) s)" >&2
if [[ ${#failed[@]} -gt 0 ]]; then
    joined=$(IFS=,; echo "${failed[*]}")
    echo "gpu_check: rerun what failed alone: bash benchmarks/gpu_check.sh ${bundle:+--bundle $bundle }--parts $joined" >&2
    exit 1
fi
