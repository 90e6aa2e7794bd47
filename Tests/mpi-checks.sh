#!/usr/bin/env bash
# End-to-end checks over real MPI ranks (run by launch/test before swift test):
#   - short runs with -np 1, 2, 4 (oversubscribed on small machines) and without mpirun give
#     bitwise the same weights and the same loss lines; a repeated run is bitwise the same
#     (with the overlapped reduction, the default, and -np 2 with --no-overlap)
#   - the build without MPI (--disable-default-traits) links no MPI and gives the same weights
#   - an injected rank error and a rank crash end the job non-zero within 15 s
#   - N copies started without a launcher under Slurm (SLURM_NTASKS > 1) stop with an error
#   - checkpoints: a run cut mid-epoch and resumed (-np 2; and a -np 4 checkpoint resumed under
#     -np 2 and in one process) ends bitwise equal to the straight run, with the same loss lines
#   - SIGUSR1/SIGTERM: the job stops after a step, writes a checkpoint, exits 0, and resumes exactly
#   - a crash in the middle of a checkpoint write leaves the previous one, which --resume auto takes
#   - --clip-grad-norm with --weight-decay: bitwise equal on 1 and 3 ranks
#   - DnCNN on odd-sized crops: bitwise equal on 1 and 2 ranks
#   - the stacked model: bitwise equal on 1, 2, 3 ranks through every phase, and resumed exactly
#     from a checkpoint inside a layer's pre-training and from one at a layer's end
#   - a U-Net on random crops of a folder of mixed-size colour images: bitwise the same on 1, 2
#     and 3 ranks, and after a cut under -np 2 resumed in one process
#   - the linear probe: the same losses and accuracies on 1 and 3 ranks
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
args=(train --epochs 2 --limit 300 --batch-size 20 --eval-every 0)
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

if "${mpi[@]}" -np 3 "$bin" "${args[@]}" --threads 2 --run-dir "$work/np3" > "$work/np3.log" 2>&1 &&
   cmp -s "$work/single/model.safetensors" "$work/np3/model.safetensors" && [[ "$(losses "$work/single.log")" == "$(losses "$work/np3.log")" ]]; then
    pass "-np 3 with 2 threads each (uneven split): bitwise equal, same loss lines"
else
    fail "-np 3 differs"; cat "$work/np3.log"
fi

# the overlap (the decoder's bucket reduced during the encoder's backward) is on in the runs above;
# without it the step reduces in one allreduce: the same bits either way
if "${mpi[@]}" -np 2 "$bin" "${args[@]}" --no-overlap --run-dir "$work/np2-no-overlap" > "$work/np2-no-overlap.log" 2>&1 &&
   cmp -s "$work/single/model.safetensors" "$work/np2-no-overlap/model.safetensors"; then
    pass "-np 2 --no-overlap: bitwise equal to the single process (and so to the overlapped -np 2)"
else
    fail "-np 2 --no-overlap differs"; cat "$work/np2-no-overlap.log"
fi

"${mpi[@]}" -np 2 "$bin" "${args[@]}" --reduce fast --run-dir "$work/fast" > "$work/fast.log" 2>&1 && pass "--reduce fast runs on 2 ranks" || { fail "--reduce fast"; cat "$work/fast.log"; }
# 41 samples in batches of 20: the last step has 1 sample for 3 ranks (two ranks have nothing to do)
"${mpi[@]}" -np 3 "$bin" train --epochs 1 --limit 41 --eval-every 0 --reduce fast --run-dir "$work/fast3" > "$work/fast3.log" 2>&1 && pass "--reduce fast with more ranks than samples in the last step" || { fail "--reduce fast, short last step"; cat "$work/fast3.log"; }

if ldd "$nompi" | grep -qi libmpi; then fail "the build without MPI links libmpi"; else pass "the build without MPI links no MPI library"; fi
if "$nompi" "${args[@]}" --run-dir "$work/nompi" > "$work/nompi.log" 2>&1 &&
   cmp -s "$work/single/model.safetensors" "$work/nompi/model.safetensors" && [[ "$(losses "$work/single.log")" == "$(losses "$work/nompi.log")" ]]; then
    pass "the build without MPI gives the same weights and loss lines"
else
    fail "the build without MPI differs"; cat "$work/nompi.log"
fi

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

# ---- gradient clipping and AdamW: the norm of the exact sum, so the same on any world size ----
clip=(train --epochs 1 --limit 300 --eval-every 0 --clip-grad-norm 0.05 --weight-decay 0.01)
"$bin" "${clip[@]}" --run-dir "$work/clip1" > "$work/clip1.log" 2>&1
"${mpi[@]}" -np 3 "$bin" "${clip[@]}" --run-dir "$work/clip3" > "$work/clip3.log" 2>&1
if cmp -s "$work/clip1/model.safetensors" "$work/clip3/model.safetensors" && grep -q "gradient norm clipped to 0.05" "$work/clip3.log"; then
    pass "--clip-grad-norm 0.05 --weight-decay 0.01, -np 3: weights bitwise equal to the single process"
else
    fail "--clip-grad-norm under -np 3 differs"; cat "$work/clip3.log"
fi

# ---- evaluation does not depend on the world size ----
evalargs=(eval --checkpoint "$work/single/model.safetensors" --limit 700 --json)
"$bin" "${evalargs[@]}" > "$work/eval1.json" 2>&1
for np in 2 3; do
    "${mpi[@]}" -np "$np" "$bin" "${evalargs[@]}" > "$work/eval$np.json" 2>&1
    cmp -s "$work/eval1.json" "$work/eval$np.json" && pass "eval with -np $np prints the single process's metrics exactly" || { fail "eval -np $np differs"; cat "$work/eval1.json" "$work/eval$np.json"; }
done

# ---- sampling chains do not depend on the world size ----
sampleargs=(sample --checkpoint "$work/single/model.safetensors" --chains 20 --steps 8 --every 2 --burn-in 2 --classifier-epochs 0 --no-untrained-baseline)
"$bin" "${sampleargs[@]}" --out "$work/sample1" > /dev/null 2>&1
"${mpi[@]}" -np 2 "$bin" "${sampleargs[@]}" --out "$work/sample2" > "$work/sample2.log" 2>&1
if cmp -s "$work/sample1/samples.idx" "$work/sample2/samples.idx" && cmp -s "$work/sample1/chains.png" "$work/sample2/chains.png"; then
    pass "sample with -np 2: the same chains as one process"
else
    fail "sample -np 2 differs"; cat "$work/sample2.log"
fi

# ---- checkpoints and resume ----
same_as_single() {   # $1: run dir, $2: log, $3: what
    # every epoch line printed after the resume must be the straight run's line for that epoch
    local extra; extra=$(comm -23 <(losses "$2" | sort) <(losses "$work/single.log" | sort))
    # and metrics.jsonl ends up with the same epoch lines (no step twice, none missing)
    local steps="import json,sys; print([(r['epoch'], r['step'], r['train_loss']) for r in map(json.loads, open(sys.argv[1])) if r['kind'] == 'epoch'])"
    if [[ -z "${4:-}" && "$(python3 -c "$steps" "$work/single/metrics.jsonl")" != "$(python3 -c "$steps" "$1/metrics.jsonl")" ]]; then
        fail "$3: metrics.jsonl differs from the straight run's"; cat "$1/metrics.jsonl"; return
    fi
    if cmp -s "$work/single/model.safetensors" "$1/model.safetensors" && [[ -n "$(losses "$2")" && -z "$extra" ]]; then
        pass "$3: weights bitwise equal to the straight run, same loss lines"
    else
        fail "$3: differs from the straight run"; cat "$2"
    fi
}
# cut at step 20 (epoch 2 of 15-step epochs), checkpoints every 6 steps: resume from step 18
DAE_DIST_FAIL_AT=0:20 "${mpi[@]}" -np 2 -x DAE_DIST_FAIL_AT "$bin" "${args[@]}" --checkpoint-every 6 --run-dir "$work/cut2" > "$work/cut2.log" 2>&1
"${mpi[@]}" -np 2 "$bin" "${args[@]}" --run-dir "$work/cut2" --resume auto > "$work/cut2-resume.log" 2>&1
grep -q "resuming from .*step-000000018" "$work/cut2-resume.log" && same_as_single "$work/cut2" "$work/cut2-resume.log" "-np 2 cut at step 20, resumed from step 18" || { fail "-np 2 resume did not start at step 18"; cat "$work/cut2-resume.log"; }

DAE_DIST_FAIL_AT=2:20 "${mpi[@]}" -np 4 -x DAE_DIST_FAIL_AT "$bin" "${args[@]}" --checkpoint-every 6 --run-dir "$work/cut4" > "$work/cut4.log" 2>&1
mkdir -p "$work/cut4to1/checkpoints" && cp "$work"/cut4/checkpoints/step-000000018.safetensors "$work/cut4to1/checkpoints/"
"${mpi[@]}" -np 2 "$bin" "${args[@]}" --run-dir "$work/cut4" --resume auto > "$work/cut4-resume.log" 2>&1
same_as_single "$work/cut4" "$work/cut4-resume.log" "-np 4 checkpoint resumed under -np 2"
"$bin" "${args[@]}" --run-dir "$work/cut4to1" --resume "$work/cut4to1/checkpoints/step-000000018.safetensors" > "$work/cut4to1.log" 2>&1
same_as_single "$work/cut4to1" "$work/cut4to1.log" "-np 4 checkpoint resumed in one process (a new run dir)" no-history

# signals: a longer run, stopped by a signal while it trains
long=(train --epochs 2 --limit 6000 --eval-every 0)
"$bin" "${long[@]}" --run-dir "$work/long" > "$work/long.log" 2>&1
wait_for_training() { for _ in $(seq 100); do grep -q "parameters, run dir" "$1" 2>/dev/null && break; sleep 0.1; done; sleep 1; }
for case in "USR1 mpirun" "TERM rank" "TERM launch/run"; do
    set -- $case; sig=$1; target=$2; run="$work/sig-$sig-${target//\//}"
    if [[ $target == launch/run ]]; then
        launch/run -n 2 "${long[@]:1}" --run-dir "$run" > "$run.log" 2>&1 &
    else
        "${mpi[@]}" -np 2 "$bin" "${long[@]}" --run-dir "$run" > "$run.log" 2>&1 &
    fi
    pid=$!
    wait_for_training "$run.log"
    case $target in
        rank) kill -"$sig" "$(pgrep -f "dae-dist train --epochs 2 --limit 6000 --eval-every 0 --run-dir $run" | tail -n 1)" ;;
        *) kill -"$sig" "$pid" ;;
    esac
    wait "$pid"; status=$?
    if [[ $status -eq 0 ]] && grep -q "^stopped by" "$run.log" && ls "$run"/checkpoints/step-*.safetensors > /dev/null 2>&1; then
        "${mpi[@]}" -np 2 "$bin" "${long[@]}" --run-dir "$run" --resume auto > "$run-resume.log" 2>&1
        if cmp -s "$work/long/model.safetensors" "$run/model.safetensors"; then
            pass "SIG$sig to $target: checkpoint, exit 0, and the resumed run is bitwise equal ($(grep -o 'after step [0-9]*' "$run.log"))"
        else
            fail "SIG$sig to $target: resumed run differs"; cat "$run-resume.log"
        fi
    else
        fail "SIG$sig to $target: status $status"; cat "$run.log"
    fi
done

# a crash halfway through the 3rd checkpoint write (steps 6, 12, then 18)
DAE_DIST_CRASH_IN_WRITE=3 "$bin" "${args[@]}" --checkpoint-every 6 --no-epoch-checkpoints --run-dir "$work/torn" > "$work/torn.log" 2>&1
status=$?
torn=$(ls -a "$work/torn/checkpoints" | grep -c '\.tmp-')
"$bin" "${args[@]}" --run-dir "$work/torn" --resume auto > "$work/torn-resume.log" 2>&1
# the torn temporary file is there after the crash, and removed by the resumed run
if [[ $status -ne 0 && $torn -eq 1 ]] && ! ls -a "$work/torn/checkpoints" | grep -q '\.tmp-' && grep -q "resuming from .*step-000000012" "$work/torn-resume.log"; then
    same_as_single "$work/torn" "$work/torn-resume.log" "crash mid-write: the previous checkpoint (step 12) resumed, the torn temporary file removed"
else
    fail "crash mid-write (status $status)"; ls -a "$work/torn/checkpoints"; cat "$work/torn.log" "$work/torn-resume.log"
fi

# ---- the stacked model: same guarantees in every phase ----
# 300 samples in batches of 20 = 15 steps per epoch: layer 1 is steps 1-15, layer 2 16-30,
# fine-tuning 31-45
stacked=(train --model stacked --hidden 64,32 --pretrain-epochs 1 --epochs 1 --batch-size 20 --micro-batch 5 --limit 300 --eval-every 0)
"$bin" "${stacked[@]}" --tied-weights --run-dir "$work/st1" > "$work/st1.log" 2>&1 || { fail "stacked single-process run"; cat "$work/st1.log"; }
for np in 2 3; do
    "${mpi[@]}" -np "$np" "$bin" "${stacked[@]}" --tied-weights --run-dir "$work/st$np" > "$work/st$np.log" 2>&1
    if cmp -s "$work/st1/model.safetensors" "$work/st$np/model.safetensors" && [[ "$(losses "$work/st1.log")" == "$(losses "$work/st$np.log")" ]]; then
        pass "stacked (tied) -np $np: weights bitwise equal to the single process in all 3 phases"
    else
        fail "stacked -np $np differs"; cat "$work/st$np.log"
    fi
done
# cut in layer 2 (step 27; checkpoints every 4 steps: resume from step 24, layer 2 at step 9/15),
# and cut right after layer 2's end (step 31: resume from the epoch-end checkpoint at step 30)
for cut in 27:24 31:30; do
    at=${cut%:*}; from=${cut#*:}
    DAE_DIST_FAIL_AT=1:$at "${mpi[@]}" -np 2 -x DAE_DIST_FAIL_AT "$bin" "${stacked[@]}" --tied-weights --checkpoint-every 4 --run-dir "$work/stcut$at" > "$work/stcut$at.log" 2>&1
    "${mpi[@]}" -np 3 "$bin" "${stacked[@]}" --tied-weights --run-dir "$work/stcut$at" --resume auto > "$work/stcut$at-resume.log" 2>&1
    if grep -q "resuming from .*step-0*$from" "$work/stcut$at-resume.log" && cmp -s "$work/st1/model.safetensors" "$work/stcut$at/model.safetensors"; then
        pass "stacked cut at step $at under -np 2, resumed from step $from under -np 3: bitwise equal ($(grep -o 'step [0-9]*, [a-z-]* [0-9 ]*epoch [0-9]*' "$work/stcut$at-resume.log"))"
    else
        fail "stacked resume after a cut at step $at"; cat "$work/stcut$at-resume.log"
    fi
done

# ---- own images: a U-Net on random crops of mixed-size colour images (PNG, JPEG, TIFF) ----
mkdir -p "$work/own"
for f in rgb.png rgb.jpg rgb.tif gray.png odd.png palette.png alpha.png pages.tif sixteen.png; do cp "Tests/DAETests/Fixtures/images/$f" "$work/own/"; done
own=(train --data "$work/own" --model unet --widths 8,16 --patch 16 --patches-per-epoch 40 --augment flips --noise gaussian:0.05-0.3
     --epochs 2 --batch-size 8 --micro-batch 2 --eval-every 0 --val-fraction 0.01)
"$bin" "${own[@]}" --run-dir "$work/own1" > "$work/own1.log" 2>&1 || { fail "own images single-process run"; cat "$work/own1.log"; }
for np in 2 3; do
    "${mpi[@]}" -np "$np" "$bin" "${own[@]}" --run-dir "$work/own$np" > "$work/own$np.log" 2>&1
    if cmp -s "$work/own1/model.safetensors" "$work/own$np/model.safetensors" && [[ "$(losses "$work/own1.log")" == "$(losses "$work/own$np.log")" ]]; then
        pass "U-Net on crops of mixed-size RGB images, -np $np: weights bitwise equal to the single process"
    else
        fail "own images -np $np differs"; cat "$work/own$np.log"
    fi
done

# DnCNN (no pooling, a residual output) on odd-sized crops of the same images, 1 and 2 ranks
dn=(train --data "$work/own" --model dncnn --depth 4 --widths 8 --patch 15 --patches-per-epoch 32 --epochs 1 --batch-size 8
    --micro-batch 2 --eval-every 0 --val-fraction 0.01)
"$bin" "${dn[@]}" --run-dir "$work/dn1" > "$work/dn1.log" 2>&1
"${mpi[@]}" -np 2 "$bin" "${dn[@]}" --run-dir "$work/dn2" > "$work/dn2.log" 2>&1
if cmp -s "$work/dn1/model.safetensors" "$work/dn2/model.safetensors" && grep -q "DnCNN 3->4x8" "$work/dn2.log"; then
    pass "DnCNN on 15x15 crops, -np 2: weights bitwise equal to the single process"
else
    fail "DnCNN -np 2 differs from one process"; cat "$work/dn1.log" "$work/dn2.log"
fi
# cut at step 7 of 10 under -np 2 (checkpoints every 3 steps), resumed from step 6 in one process
DAE_DIST_FAIL_AT=1:7 "${mpi[@]}" -np 2 -x DAE_DIST_FAIL_AT "$bin" "${own[@]}" --checkpoint-every 3 --run-dir "$work/owncut" > "$work/owncut.log" 2>&1
"$bin" train --run-dir "$work/owncut" --resume auto > "$work/owncut-resume.log" 2>&1
if grep -q "resuming from .*step-000000006" "$work/owncut-resume.log" && cmp -s "$work/own1/model.safetensors" "$work/owncut/model.safetensors"; then
    pass "U-Net on crops cut at step 7 under -np 2, resumed from step 6 in one process (flags from config.json): bitwise equal"
else
    fail "own images resume"; cat "$work/owncut.log" "$work/owncut-resume.log"
fi

# ---- the linear probe does not depend on the world size ----
probeargs=(probe --checkpoint "$work/single/model.safetensors" --limit 1000 --test-limit 500 --iterations 20 --json)
"$bin" "${probeargs[@]}" | sed 's/"seconds":[0-9.e-]*,//' > "$work/probe1.json" 2>&1
"${mpi[@]}" -np 3 "$bin" "${probeargs[@]}" | sed 's/"seconds":[0-9.e-]*,//' > "$work/probe3.json" 2>&1
if [[ $(wc -l < "$work/probe1.json") -eq 3 ]] && cmp -s "$work/probe1.json" "$work/probe3.json"; then
    pass "probe with -np 3: the same losses and accuracies as one process ($(grep -o '"test_accuracy":[0-9.]*' "$work/probe1.json" | tr '\n' ' '))"
else
    fail "probe -np 3 differs"; cat "$work/probe1.json" "$work/probe3.json"
fi

echo "mpi-checks: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
