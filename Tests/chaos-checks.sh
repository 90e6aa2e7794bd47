#!/usr/bin/env bash
# Chaos: a training run killed N times, each time at a random step on a random rank, and resumed
# each time on a random world size (one process without mpirun, mpirun -np 1, mpirun -np 2) with
# nothing but --run-dir and --resume auto, must end bitwise equal to the uninterrupted run.
#   Tests/chaos-checks.sh [N] [SEED]      N kills (default 5); SEED repeats a sequence (printed)
# The kill is DAE_DIST_CRASH_AT=R:S (FaultInjection.swift): rank R exits abruptly before step S,
# as a killed process would, with no MPI call; mpirun then ends the other ranks.
set -uo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # CI runs as root
kills=${1:-5}
seed=${2:-$(( $(date +%s) % 100000 ))}
RANDOM=$seed
echo "chaos-checks: $kills kills, seed $seed (Tests/chaos-checks.sh $kills $seed repeats it)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin=.build/release/dae-dist
swift build -c release 2>&1 | tail -1 || { echo "FAIL: release build"; exit 1; }

# 2 epochs of 300 samples in batches of 20: 30 steps; a checkpoint every 4 steps (and at epoch ends)
args=(train --epochs 2 --limit 300 --batch-size 20 --eval-every 0 --threads 1 --checkpoint-every 4 --seed 11)
total=30
"$bin" "${args[@]}" --run-dir "$work/straight" > "$work/straight.log" 2>&1 || { echo "FAIL: the uninterrupted run"; cat "$work/straight.log"; exit 1; }

launch() {   # launch <world> <crash spec or ""> <args...>: one process, mpirun -np 1 or mpirun -np 2
    local world=$1 crash=$2; shift 2
    local env=(); [[ -n "$crash" ]] && env=(DAE_DIST_CRASH_AT="$crash")
    case $world in
        none) env "${env[@]}" "$bin" "$@" ;;
        *)    env "${env[@]}" timeout 120 mpirun --oversubscribe --bind-to none -np "$world" "$bin" "$@" ;;
    esac
}
worlds=(none 1 2)
run="$work/chaos"
step=0   # the step the run has reached at least (checkpoints lag behind it)
first=1
for ((k = 1; k <= kills; k++)); do
    world=${worlds[RANDOM % 3]}
    ranks=$([[ $world == 2 ]] && echo 2 || echo 1)
    rank=$((RANDOM % ranks))
    at=$((step + 1 + RANDOM % 8)); ((at > total)) && at=$total
    if ((first)); then extra=("${args[@]}"); first=0; else extra=(train --resume auto); fi
    launch "$world" "$rank:$at" "${extra[@]}" --run-dir "$run" > "$work/kill$k.log" 2>&1
    status=$?
    if ((status == 0)); then
        echo "FAIL: kill $k (rank $rank at step $at, world $world) did not end the job"; cat "$work/kill$k.log"; exit 1
    fi
    echo "kill $k: world $world, rank $rank crashed at step $at (exit $status); newest checkpoint $(ls "$run/checkpoints" 2>/dev/null | tail -1)"
    step=$at
done
world=${worlds[RANDOM % 3]}
if ! launch "$world" "" train --resume auto --run-dir "$run" > "$work/final.log" 2>&1; then
    echo "FAIL: the final resume (world $world)"; cat "$work/final.log"; exit 1
fi
if cmp -s "$work/straight/model.safetensors" "$run/model.safetensors"; then
    echo "PASS: $kills kills and resumes on random world sizes (last: $world) end bitwise equal to the uninterrupted run"
    echo "chaos-checks: 1 passed, 0 failed"
else
    echo "FAIL: the resumed run's weights differ from the uninterrupted run's"; cat "$work/final.log"
    echo "chaos-checks: 0 passed, 1 failed"; exit 1
fi
