#!/usr/bin/env bash
# The stacked model's table in docs/benchmarks.md: fine-tuning of 784-1000-1000-1000 and its
# mirror (batch 100, mask:0.25, one process, 2 threads) against the PyTorch reference of the same
# MLP, REPS rounds (default 5) over SAMPLES training images (default 6000), every configuration
# run once per round so that all see the same machine: dae-dist exact (micro-batch 25, the
# default), exact with --micro-batch 50, --reduce fast, then PyTorch. dae-dist's figure is its
# second epoch's samples/s; PyTorch's, bench/torch_reference.py's timed pass. Prints a Markdown
# table: one column per round, and each row's ratio to PyTorch in the same round.
# BEFORE=/path/to/dae-dist adds "exact, before" and "fast, before" rows from another build (e.g.
# an older commit).
# Needs torch in python3 (pip install torch==2.13.0+cpu).
#   bench/stacked.sh [SAMPLES] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
samples=${1:-6000}; reps=${2:-5}
python=${PYTHON:-python3}
swift build -c release >&2
bin=$PWD/.build/release/dae-dist
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# samples/s of the second fine-tuning epoch
train() {
    local binary=$1; shift
    rm -rf "$work/run"
    "$binary" train --model stacked --hidden 1000,1000,1000 --pretrain-epochs 0 --epochs 2 --batch-size 100 \
        --limit "$samples" --eval-every 0 --threads 2 --no-epoch-checkpoints --run-dir "$work/run" "$@" 2>&1 \
        | awk '/fine-tune epoch +2\//{for (i = 1; i < NF; i++) if ($(i + 1) == "samples/s") print $i}'
}

names=("dae-dist, exact (micro-batch 25, the default)" "dae-dist, exact, \`--micro-batch 50\`" "dae-dist, \`--reduce fast\`")
[[ -n "${BEFORE:-}" ]] && names+=("exact, before ($BEFORE)" "fast, before ($BEFORE)")
declare -A figure
for ((r = 1; r <= reps; r++)); do
    figure[0,$r]=$(train "$bin")
    figure[1,$r]=$(train "$bin" --micro-batch 50)
    figure[2,$r]=$(train "$bin" --reduce fast)
    if [[ -n "${BEFORE:-}" ]]; then
        figure[3,$r]=$(train "$BEFORE")
        figure[4,$r]=$(train "$BEFORE" --reduce fast)
    fi
    figure[torch,$r]=$("$python" bench/torch_reference.py --model stacked --threads 2 --batch 100 --samples "$samples" | tail -1)
    echo "round $r done" >&2
done

header="| |"; rule="| --- |"
for ((r = 1; r <= reps; r++)); do header+=" round $r |"; rule+=" ---: |"; done
echo "$header against PyTorch |"
echo "$rule --- |"
for ((row = 0; row < ${#names[@]}; row++)); do
    line="| ${names[$row]} |"; ratios=""
    for ((r = 1; r <= reps; r++)); do
        line+=" ${figure[$row,$r]} |"
        ratios+="$(awk -v a="${figure[$row,$r]}" -v b="${figure[torch,$r]}" 'BEGIN{printf "%.2fx", a / b}')"
        ((r < reps)) && ratios+=", "
    done
    echo "$line $ratios |"
done
line="| PyTorch 2.13 (eager, 2 threads) |"
for ((r = 1; r <= reps; r++)); do line+=" ${figure[torch,$r]} |"; done
echo "$line |"
