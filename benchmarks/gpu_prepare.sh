#!/usr/bin/env bash
# Gather into one git-ignored folder what the GPU check needs on a machine that has no network
# and lacks part of peftbench's stack: the pinned wheels of benchmarks/gpu_wheels.txt, a wheel of
# peftbench itself (so `pip check` there checks our own requirements too), and the offline
# mirror's files the check reads (rotten_tomatoes, the GPT-2 tokenizer). Then, there:
#
#   bash benchmarks/gpu_check.sh --bundle .gpu-bundle
#
#   bash benchmarks/gpu_prepare.sh                  # for the GPU machine: Python 3.12, manylinux x86-64,
#                                                   # the wheels marked carry (into .gpu-bundle)
#   bash benchmarks/gpu_prepare.sh --for here DIR   # for this machine's Python, every wheel listed
#                                                   # (the CI rehearsal: a venv with torch, transformers, peft only)
#   ... --also pyarrow==21.0.0                      # one more pinned wheel (repeatable), e.g. where the
#                                                   # guard said the machine's version is too old
#
# Needs the package index (run it here, not there) and the mirror: $PEFTBENCH_MIRROR, else ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."
target=gpu dest=.gpu-bundle also=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --for) target=$2; shift 2 ;;
        --also) also+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "gpu_prepare: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) dest=$1; shift ;;
    esac
done
mirror="${PEFTBENCH_MIRROR:-$(cd .. && pwd)/shared}"
for needed in datasets/rotten_tomatoes tokenizers/gpt2; do
    [[ -d "$mirror/$needed" ]] || { echo "gpu_prepare: no $needed in the mirror $mirror: set PEFTBENCH_MIRROR" >&2; exit 2; }
done
py=${PYTHON:-python3}
case $target in
    gpu)
        groups='carry'
        # pip matches manylinux tags exactly: list the ones wheels of this stack are published under.
        platform=(--python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none)
        for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
            platform+=(--platform "${tag}_x86_64")
        done
        platform+=(--platform any) ;;
    here) groups='carry|have' platform=() ;;
    *) echo "gpu_prepare: --for takes gpu or here, not '$target'" >&2; exit 2 ;;
esac

rm -rf "$dest"
mkdir -p "$dest/wheels" "$dest/mirror/datasets" "$dest/mirror/tokenizers"
mapfile -t pins < <(grep -E "^[A-Za-z0-9_.-]+==[^ ]+ +($groups)\b" benchmarks/gpu_wheels.txt | awk '{print $1}')
pins+=("${also[@]}")
echo "gpu_prepare: ${#pins[@]} wheels for $target into $dest" >&2
pip_quiet=(--disable-pip-version-check -q)
"$py" -m pip download "${pip_quiet[@]}" --no-deps --only-binary=:all: "${platform[@]}" -d "$dest/wheels" "${pins[@]}"
# peftbench's own wheel: its requirements, for pip check on the machine (the code runs from the checkout).
"$py" -m pip wheel "${pip_quiet[@]}" --no-deps -w "$dest/wheels" . >/dev/null
cp -r "$mirror/datasets/rotten_tomatoes" "$dest/mirror/datasets/"
cp -r "$mirror/tokenizers/gpt2" "$dest/mirror/tokenizers/"
{
    echo "target: $target"
    echo "prepared: $(date -u '+%Y-%m-%d %H:%M') UTC"
    echo "pyproject: $(sha256sum pyproject.toml | cut -c1-16)"
    echo "wheels:"
    (cd "$dest/wheels" && ls -1 | sed 's/^/  /')
} >"$dest/MANIFEST"
echo "gpu_prepare: $dest holds $(ls "$dest/wheels" | wc -l) wheels and the mirror files, $(du -sh "$dest" | cut -f1) in all" >&2
