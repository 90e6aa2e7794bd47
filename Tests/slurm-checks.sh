#!/usr/bin/env bash
# launch/slurm.sbatch under a real Slurm on this machine (launch/slurm-local: Debian's slurm-wlm
# and munge, one node). Run by launch/test after the multi-node checks when DAE_SLURM_CHECKS=1
# (.ci/run sets it); on its own: bash Tests/slurm-checks.sh. Needs root. Checks:
#   - sbatch -n 2 of launch/slurm.sbatch with srun --mpi=pmix, and with mpirun inside the
#     allocation: final weights bitwise equal to the single-process run
#   - srun --mpi=none -n 2 of the binary fails with dae-dist's error and trains nothing
#   - preemption: scancel --signal=USR1 --batch mid-run -> the job checkpoints, exits and requeues
#     itself, runs again from the checkpoint and finishes bitwise equal to an uninterrupted run
#   - a job that hits its wall time with no warning signal: the next run resumes from the newest
#     checkpoint (in the recorded runs, the one dae-dist wrote on Slurm's TERM) and ends bitwise equal
# Brings Slurm up in a directory of its own and always takes it down again.
set -uo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # CI runs as root; mpirun in the job inherits it
[[ $EUID -eq 0 ]] || { echo "slurm-checks: SKIPPED: needs root (installs and runs slurmctld, slurmd, munged)"; exit 0; }
passed=0; failed=0
work=$(mktemp -d /tmp/dae-slurm-checks.XXXXXX)   # a path every job step sees (one machine)
export DAE_SLURM_DIR=$work/slurm
export SLURM_CONF=$DAE_SLURM_DIR/slurm.conf
cleanup() {
    launch/slurm-local down 2> /dev/null
    if ((failed)); then rm -rf /tmp/dae-slurm-checks-logs; cp -r "$work/slurm/log" /tmp/dae-slurm-checks-logs && echo "slurm logs kept in /tmp/dae-slurm-checks-logs"; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }

swift build -c release 2>&1 | tail -1 || { echo "FAIL: release build"; exit 1; }
bin=.build/release/dae-dist
launch/slurm-local up > "$work/up.log" 2>&1 || { echo "FAIL: launch/slurm-local up"; cat "$work/up.log"; exit 1; }
sed -n '1,2p' "$work/up.log"

# the single-node shape of the job: the script's #SBATCH header asks for 2 nodes x 2 tasks x 2 CPUs
shape=(--nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=5)
job_field() { scontrol show job "$1" 2>/dev/null | grep -o "$2=[^ ]*" | head -n 1 | cut -d= -f2; }
wait_job_done() {   # $1 job id, $2 seconds: until the job reaches a final state
    local state
    for _ in $(seq $(($2 * 2))); do
        state=$(job_field "$1" JobState)
        case "$state" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) echo "$state"; return ;; esac
        # a requeued job waits (BeginTime) about cred_expire + 1 s (11 s here) before it starts again;
        # `scontrol update jobid=N StartTime=now` skips that, but one run with it here ended FAILED, so wait
        sleep 0.5
    done
    echo "${state:-unknown}"
}

# ---- sbatch, both launch paths ----
short=(--epochs 2 --limit 300 --batch-size 20 --eval-every 0)
"$bin" train "${short[@]}" --run-dir "$work/single" > "$work/single.log" 2>&1 || fail "single-process run"
for launcher in srun mpirun; do
    out=$work/$launcher.out
    DAE_DIST_LAUNCHER=$launcher DAE_DIST_RUN_DIR=$work/$launcher timeout 300 \
        sbatch --wait --parsable "${shape[@]}" --job-name="dae-$launcher" --output="$out" launch/slurm.sbatch "${short[@]}" > "$work/$launcher.id"
    status=$?
    if [[ $status -eq 0 ]] && grep -q "2 rank(s) (mpi" "$out" && cmp -s "$work/single/model.safetensors" "$work/$launcher/model.safetensors"; then
        pass "sbatch -n 2 via $launcher: weights bitwise equal to the single process (job $(cat "$work/$launcher.id"))"
    else
        fail "sbatch -n 2 via $launcher: status $status"; cat "$out"
    fi
done

# ---- the single-process trap ----
if timeout 120 srun --mpi=none -n 2 "${shape[@]:3}" "$bin" train "${short[@]}" --run-dir "$work/twice" > "$work/twice.log" 2>&1; then
    fail "srun --mpi=none -n 2 trained"; cat "$work/twice.log"
elif grep -q "alone in its MPI world" "$work/twice.log" && [[ ! -e "$work/twice/model.safetensors" ]]; then
    pass "srun --mpi=none -n 2 fails with dae-dist's error: $(grep -m1 -o 'SLURM_NTASKS=2 but[^:]*' "$work/twice.log")"
else
    fail "srun --mpi=none -n 2: unexpected output"; cat "$work/twice.log"
fi

# ---- preemption: USR1 to the batch script, checkpoint, requeue, resume ----
long=(--epochs 2 --limit 12000 --eval-every 0)
"$bin" train "${long[@]}" --run-dir "$work/long" > "$work/long.log" 2>&1 || fail "single-process long run"
out=$work/preempt.out
id=$(DAE_DIST_RUN_DIR=$work/preempt sbatch --parsable "${shape[@]}" --job-name=dae-preempt --output="$out" launch/slurm.sbatch "${long[@]}")
for _ in $(seq 600); do grep -q "parameters, run dir" "$out" 2>/dev/null && break; sleep 0.1; done
sleep 2
scancel --signal=USR1 --batch "$id"
state=$(wait_job_done "$id" 300)
if [[ "$state" == COMPLETED && "$(job_field "$id" Restarts)" -ge 1 ]] && grep -q "^stopped by" "$out" && grep -q "resuming from" "$out" &&
   cmp -s "$work/long/model.safetensors" "$work/preempt/model.safetensors"; then
    echo "preempted job $id: $(scontrol show job "$id" | grep -oE '(JobState|Restarts|SubmitTime|StartTime|EndTime)=[^ ]+' | tr '\n' ' ')"
    pass "scancel --signal=USR1 --batch: $(grep -m1 -o 'stopped by SIGUSR1 after step [0-9]*' "$out"), requeued, resumed from $(grep -m1 -o 'resuming from [^:]*' "$out" | sed 's|.*/||'), bitwise equal to the uninterrupted run"
else
    fail "preemption: job $id $state, restarts $(job_field "$id" Restarts)"; cat "$out"
fi

# ---- wall time without a warning signal ----
# The same script without its --signal line, a 1-minute limit, a run that needs about 2: Slurm
# ends it at the limit (TERM, then KILL after KillWait). However the ranks end, the next job
# resumes from the newest checkpoint and ends bitwise equal.
# DAE_SLURM_WALLTIME=0 skips it (it takes about 3 minutes).
if [[ "${DAE_SLURM_WALLTIME:-1}" == 1 ]]; then
    wall=(--epochs 4 --limit 30000 --eval-every 0 --checkpoint-every 100)
    "$bin" train "${wall[@]}" --run-dir "$work/wall-straight" > "$work/wall-straight.log" 2>&1 || fail "single-process wall-time reference"
    grep -v '^#SBATCH --signal' launch/slurm.sbatch > "$work/nosignal.sbatch"
    out=$work/wall.out
    id=$(DAE_DIST_RUN_DIR=$work/wall sbatch --parsable "${shape[@]:0:4}" --time=1 --no-requeue --job-name=dae-wall --output="$out" "$work/nosignal.sbatch" "${wall[@]}")
    state=$(wait_job_done "$id" 240)
    newest=$(ls "$work/wall/checkpoints" 2>/dev/null | grep -oE '[0-9]+' | sort -n | tail -n 1 | sed 's/^0*//')
    echo "wall-time job $id: $state after $(job_field "$id" RunTime), newest checkpoint at step ${newest:-none}; its last lines:"
    tail -n 4 "$out" | sed 's/^/    /'
    out2=$work/wall2.out
    DAE_DIST_RUN_DIR=$work/wall timeout 300 sbatch --wait --parsable "${shape[@]}" --job-name=dae-wall --output="$out2" launch/slurm.sbatch "${wall[@]}" > /dev/null
    status=$?
    from=$(grep -m1 -oE 'resuming from [^ ]*step-0*[0-9]+' "$out2" | grep -oE '[1-9][0-9]*$')
    if [[ "$state" == TIMEOUT && $status -eq 0 && -n "$from" && "$from" == "$newest" ]] && cmp -s "$work/wall-straight/model.safetensors" "$work/wall/model.safetensors"; then
        pass "wall time hit without a signal (job $id $state): the next job resumed from step $from (checkpoints every 100 steps) and ended bitwise equal"
    else
        fail "wall time: first job $state, second status $status, resumed from '${from:-?}', newest checkpoint '${newest:-?}'"; cat "$out" "$out2"
    fi
fi

echo "slurm-checks: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
