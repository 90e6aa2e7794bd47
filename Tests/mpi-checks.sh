#!/usr/bin/env bash
# End-to-end checks over real MPI ranks (run by launch/test before swift test):
#   - short runs with -np 1, 2, 4 (oversubscribed on small machines) and without mpirun give
#     bitwise the same weights and the same loss lines; a repeated run is bitwise the same
#   - the build without MPI (--disable-default-traits) links no MPI and gives the same weights
#   - an injected rank error and a rank crash end the job non-zero within 15 s
#   - N copies started without a launcher under Slurm (SLURM_NTASKS > 1) stop with an error
set -uo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # CI runs as root
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0; failed=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }

swift build -c release 2>&1 | tail -1 || { echo "FAIL: release build"; exit 1; }
swift build -c release --disable-default-traits --scratch-path .build-nompi 2>&1 | tail -1 || { echo "FAIL: build without MPI"; exit 1; }
bin=.build/release/dae-dist
nompi=.build-nompi/release/dae-dist
args=(train --epochs 2 --limit 300 --batch-size 20)
mpi=(mpirun --oversubscribe --bind-to none)

losses() { grep '^epoch' "$1" | sed 's/ *[0-9]* samples\/s.*//'; }   # the loss part of each epoch line

"$bin" "${args[@]}" --run-dir "$work/single" > "$work/single.log" 2>&1 || fail "single-process run"
"$bin" "${args[@]}" --run-dir "$work/again" > "$work/again.log" 2>&1
cmp -s "$work/single/model.safetensors" "$work/again/model.safetensors" && pass "a repeated run is bitwise identical" || fail "a repeated run differs"

for np in 1 2 4; do
    if "${mpi[@]}" -np "$np" "$bin" "${args[@]}" --run-dir "$work/np$np" > "$work/np$np.log" 2>&1; then
        if cmp -s "$work/single/model.safetensors" "$work/np$np/model.safetensors" && [[ "$(losses "$work/single.log")" == "$(losses "$work/np$np.log")" ]]; then
            pass "-np $np: weights bitwise equal to the single process, same loss lines"
        else
            fail "-np $np: weights or loss lines differ from the single process"; cat "$work/np$np.log"
        fi
    else
        fail "-np $np run failed"; cat "$work/np$np.log"
    fi
done

"${mpi[@]}" -np 3 "$bin" "${args[@]}" --threads 2 --run-dir "$work/np3" > "$work/np3.log" 2>&1
cmp -s "$work/single/model.safetensors" "$work/np3/model.safetensors" && pass "-np 3 with 2 threads each (uneven split): bitwise equal" || { fail "-np 3 differs"; cat "$work/np3.log"; }

"${mpi[@]}" -np 2 "$bin" "${args[@]}" --reduce fast --run-dir "$work/fast" > "$work/fast.log" 2>&1 && pass "--reduce fast runs on 2 ranks" || { fail "--reduce fast"; cat "$work/fast.log"; }

if ldd "$nompi" | grep -qi libmpi; then fail "the build without MPI links libmpi"; else pass "the build without MPI links no MPI library"; fi
"$nompi" "${args[@]}" --run-dir "$work/nompi" > "$work/nompi.log" 2>&1
cmp -s "$work/single/model.safetensors" "$work/nompi/model.safetensors" && pass "the build without MPI gives the same weights" || { fail "the build without MPI differs"; cat "$work/nompi.log"; }

for hook in DAE_DIST_FAIL_AT DAE_DIST_CRASH_AT; do
    start=$(date +%s)
    env "$hook=1:3" timeout 60 "${mpi[@]}" -np 4 -x "$hook" "$bin" "${args[@]}" --run-dir "$work/$hook" > "$work/$hook.log" 2>&1
    status=$?
    elapsed=$(( $(date +%s) - start ))
    if [[ $status -ne 0 && $status -ne 124 && $elapsed -le 15 ]] && grep -q "rank 1:" "$work/$hook.log"; then
        pass "$hook: job ended with status $status after ${elapsed}s, naming rank 1"
    else
        fail "$hook: status $status after ${elapsed}s"; cat "$work/$hook.log"
    fi
done

if SLURM_NTASKS=4 "$bin" "${args[@]}" --run-dir "$work/slurm" > "$work/slurm.log" 2>&1; then
    fail "SLURM_NTASKS=4 without a launcher was accepted"
elif grep -q "srun --mpi=pmix" "$work/slurm.log"; then
    pass "SLURM_NTASKS=4 without a launcher stops with an explanation"
else
    fail "SLURM_NTASKS=4: unexpected message"; cat "$work/slurm.log"
fi

echo "mpi-checks: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
