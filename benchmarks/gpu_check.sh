#!/usr/bin/env bash
# The GPU check: on one CUDA GPU, offline, in under 8 minutes.
#   1. the tests marked gpu (every CUDA-only path: bf16 + fp32 masters, fused AdamW, pinned copies,
#      --compile, CUDA peak memory, MFU, an out-of-memory run recorded as failed, reload identical);
#   2. benchmarks/gpu_benchmark.py: gpt2-random x lora, ia3, prefix_tuning against HF Trainer (a), (b);
#   3. a timed default sweep (lora, ia3, prefix_tuning, --num-seeds 3 --tune on gpt2-random x
#      rotten_tomatoes), once with the runs sharing the GPU as peftbench chooses and once one at a time.
# Every figure is added to benchmarks/results/<card>.md as soon as it is measured, so a check cut
# short keeps what it measured; each part has its own time limit. Logs go to benchmarks/results/logs/.
#
#   bash benchmarks/gpu_check.sh             # on a machine with a CUDA GPU
#   bash benchmarks/gpu_check.sh --dry-run   # on the CPU with a tiny model: the plumbing only (CI)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export PEFTBENCH_MIRROR="${PEFTBENCH_MIRROR:-$(cd .. && pwd)/shared}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

if [[ "${1:-}" == "--dry-run" ]]; then
    OUT="${GPU_CHECK_OUT:-$(mktemp -d)}"
    DEVICE=cpu MODEL=tiny-gpt2 SEEDS=2
    BENCH_ARGS=(--device cpu --train-samples 128)
    SWEEP_ARGS=(--max-steps 2)
    SHARED_RUNS=2 # the CPU default is 1: ask for sharing so the dry run takes that path too
    LIMITS=(900 900 900 900) # a slow CI machine is not what the dry run checks
else
    OUT="${GPU_CHECK_OUT:-benchmarks/results}"
    DEVICE=cuda MODEL=gpt2-random SEEDS=3
    BENCH_ARGS=()
    SWEEP_ARGS=()
    SHARED_RUNS="" # peftbench's own choice for this card
    LIMITS=(90 180 100 100) # seconds per part: under 8 minutes in all
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
status=0

part() { # part NAME SECONDS COMMAND...: run with a time limit, log it, note a failure in the results
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s)" >&2
    timeout --signal=INT --kill-after=20 "$limit" "$@" > >(tee "$LOGS/$SLUG-$name.log") 2>&1
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        status=1
        printf '\n**%s did not finish cleanly** (exit %s%s); its log: `logs/%s-%s.log`\n\n' \
            "$name" "$rc" "$([[ $rc -eq 124 || $rc -eq 130 ]] && echo ', time limit')" "$SLUG" "$name" >>"$RESULTS"
    fi
}

{
    echo "# GPU check on $CARD"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M') UTC, peftbench $("$PY" -c 'import peftbench; print(peftbench.__version__)'), $("$PY" -c 'import torch, transformers, peft; print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")'), written by \`benchmarks/gpu_check.sh\`."
    echo
    if [[ $DEVICE == cuda ]]; then
        echo '```'
        nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit --format=csv 2>/dev/null || true
        echo '```'
        echo
    fi
} >"$RESULTS"

# 1. The CUDA paths (under a minute).
part gpu-tests "${LIMITS[0]}" "$PY" -m pytest tests/test_gpu.py -m gpu -q -rA -p no:cacheprovider
{
    echo "## Tests marked gpu"
    echo
    echo '```'
    grep -E '^(PASSED|FAILED|SKIPPED|ERROR)|passed|failed' "$LOGS/$SLUG-gpu-tests.log" | tail -20
    echo '```'
    echo
} >>"$RESULTS"

# 2. Engine against HF Trainer (two to four minutes on one H100).
echo "## Engine against HF Trainer (a) and (b)" >>"$RESULTS"
echo >>"$RESULTS"
part engines "${LIMITS[1]}" "$PY" benchmarks/gpu_benchmark.py --model "$MODEL" --append "$RESULTS" "${BENCH_ARGS[@]}"

# 3. The default sweep, timed: runs sharing the device, then one at a time (fresh folders each).
sweep=(--model "$MODEL" --device "$DEVICE" --methods lora,ia3,prefix_tuning --num-seeds "$SEEDS" --tune)
part sweep-shared "${LIMITS[2]}" "$PY" benchmarks/timed_sweep.py "${sweep[@]}" "${SWEEP_ARGS[@]}" \
    ${SHARED_RUNS:+--runs-per-device "$SHARED_RUNS"} --append "$RESULTS"
part sweep-one-at-a-time "${LIMITS[3]}" "$PY" benchmarks/timed_sweep.py "${sweep[@]}" "${SWEEP_ARGS[@]}" \
    --runs-per-device 1 --append "$RESULTS"

echo "results: $RESULTS" >&2
exit $status
