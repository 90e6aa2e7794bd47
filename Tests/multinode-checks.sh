#!/usr/bin/env bash
# Multi-node checks on one machine (run by launch/test after Tests/mpi-checks.sh): "nodes" are
# network namespaces on a bridge (launch/netns), ranks talk over TCP only (launch/multinode):
#   - launch/multinode -N 2 as the README runs it (it makes and removes its own nodes), unshaped
#     links, 300 samples: weights bitwise equal to the single process, same loss lines, no namespace left
#   - a node vanishing from the network mid-run (its veth link deleted) ends the job non-zero within
#     a bound (Open MPI's daemon keepalive, set by launch/multinode: 5 s + 3 x 2 s), and the last
#     periodic checkpoint, resumed in one process, finishes bitwise equal to the straight run
#   - the same when the node's processes are killed (a node crash) instead
# Needs root for the namespaces. Skips (exit 0, with a message) only if a namespace cannot be
# created at all (no CAP_NET_ADMIN, e.g. an unprivileged container). Every namespace set made
# here has a name of its own and is torn down on exit, whatever happens.
set -uo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # CI runs as root
bound=40   # seconds from the node's loss to the job's end (measured: ~10 s for a cut link, ~1 s for a kill)

sets=()
pids=()
work=$(mktemp -d)
cleanup() {
    local p s i
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    for s in "${sets[@]}"; do
        # processes this test started inside its nodes (daemons, ranks) go with them
        for i in 1 2; do ip netns pids "$s-n$i" 2>/dev/null | xargs -r kill -9 2>/dev/null; done
        DAE_NETNS_NAME=$s launch/netns down
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v ip > /dev/null || { echo "multinode-checks: SKIPPED: ip not found (apt-get install iproute2; .ci/run installs it)"; exit 0; }
probe="dpr$$"; probe=${probe:0:8}
if ! ip netns add "$probe" 2>/dev/null; then
    echo "multinode-checks: SKIPPED: cannot create a network namespace here (needs root / CAP_NET_ADMIN)"
    exit 0
fi
ip netns del "$probe"

passed=0; failed=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }
losses() { grep '^epoch' "$1" | sed 's/ *[0-9]* samples\/s.*//'; }

swift build -c release 2>&1 | tail -1 || { echo "FAIL: release build"; exit 1; }
bin=.build/release/dae-dist
export DAE_DIST_BINARY=$PWD/$bin
# a fresh set name in $s, recorded for cleanup (not run in a subshell, so `sets` keeps it)
newset() { s="mc$(( ($$ * 10 + ${#sets[@]}) % 1000000 ))"; sets+=("$s"); }

# ---- 2 nodes over TCP, bitwise equal to one process ----
args=(--epochs 2 --limit 300 --batch-size 20 --eval-every 0)
"$bin" train "${args[@]}" --run-dir "$work/single" > "$work/single.log" 2>&1 || fail "single-process run"
# launch/multinode as the README shows it: it makes the nodes itself and takes them down after
newset
if DAE_NETNS_NAME=$s launch/multinode -N 2 "${args[@]}" --run-dir "$work/two" > "$work/two.log" 2>&1; then
    if cmp -s "$work/single/model.safetensors" "$work/two/model.safetensors" && [[ "$(losses "$work/single.log")" == "$(losses "$work/two.log")" ]] &&
       grep -q "2 rank(s) (mpi, 1 on this node" "$work/two.log"; then
        pass "2 namespace nodes over TCP: weights bitwise equal to the single process, same loss lines"
    else
        fail "2 namespace nodes: weights or loss lines differ"; cat "$work/two.log"
    fi
else
    fail "2 namespace nodes: run failed"; cat "$work/two.log"
fi
if ip netns list | grep -q "^$s-n"; then
    fail "launch/multinode left its namespaces behind: $(ip netns list | grep "^$s-n" | tr '\n' ' ')"
fi

# ---- a node lost mid-run ----
long=(--epochs 2 --limit 6000 --eval-every 0)
"$bin" train "${long[@]}" --run-dir "$work/long" > "$work/long.log" 2>&1 || fail "single-process long run"
for how in cut kill; do
    newset; run="$work/lost-$how"
    DAE_NETNS_NAME=$s launch/netns up 2 > "$work/up-$how.log" 2>&1 || { fail "node loss ($how): launch/netns up"; cat "$work/up-$how.log"; continue; }
    DAE_NETNS_NAME=$s launch/multinode --use -N 2 "${long[@]}" --threads 1 --checkpoint-every 50 --run-dir "$run" > "$run.log" 2>&1 &
    pid=$!; pids+=("$pid")
    for _ in $(seq 300); do [[ -e "$run/checkpoints/step-000000100.safetensors" ]] && break; sleep 0.1; done
    if ! kill -0 "$pid" 2>/dev/null || [[ ! -e "$run/checkpoints/step-000000100.safetensors" ]]; then
        fail "node loss ($how): the run ended or made no checkpoint before the loss"; cat "$run.log"; continue
    fi
    start=$(date +%s.%N)
    case $how in
        cut) DAE_NETNS_NAME=$s launch/netns cut 2 ;;                       # node 2 leaves the network
        kill) ip netns pids "$s-n2" | xargs -r kill -9 ;;                   # node 2's daemon and rank die
    esac
    # wait at most 3 x the bound, so that a hang fails instead of blocking CI
    for _ in $(seq $((bound * 30))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        fail "node loss ($how): the job still runs $((bound * 3)) s after the loss"; kill -9 "$pid"; cat "$run.log"; continue
    fi
    wait "$pid"; status=$?
    elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    last=$(ls "$run/checkpoints" | grep -E '^step-[0-9]+\.safetensors$' | tail -n 1)
    if [[ $status -ne 0 ]] && awk -v e="$elapsed" -v b="$bound" 'BEGIN { exit !(e <= b) }'; then
        pass "node loss ($how): job ended with status $status ${elapsed} s after the loss (bound ${bound} s)"
    else
        fail "node loss ($how): status $status after ${elapsed} s (bound ${bound} s)"; cat "$run.log"
    fi
    # the survivors resume in one process from the last periodic checkpoint
    "$bin" train "${long[@]}" --run-dir "$run" --resume auto > "$run-resume.log" 2>&1
    if grep -q "resuming from .*$last" "$run-resume.log" && cmp -s "$work/long/model.safetensors" "$run/model.safetensors"; then
        pass "node loss ($how): resumed in one process from $last, weights bitwise equal to the straight run"
    else
        fail "node loss ($how): resume from $last differs"; cat "$run-resume.log"
    fi
    DAE_NETNS_NAME=$s launch/netns down
done

echo "multinode-checks: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
