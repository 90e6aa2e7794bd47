#!/usr/bin/env bash
# The multi-node table of docs/multinode.md: one epoch over the first LIMIT training images
# (default 6000), 1 rank per node, 1 worker thread per rank, for 2 and 4 nodes and batch 20 and
# 128, over shared memory (plain mpirun on this machine) and over TCP between launch/netns nodes
# with unshaped, 10 Gb/s, 1 Gb/s and 100 Mb/s links; REPS rounds (default 2), the configurations
# interleaved so that each sees the same machine; per row the round with the shortest epoch.
# Also one 2-node run with Open MPI's default binding (no --bind-to none), to show why it is off.
# Prints a Markdown table: step time, allreduce share, samples/s. Needs root.
#   bench/multinode.sh [LIMIT] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
limit=${1:-6000}; reps=${2:-2}
swift build -c release >&2
bin=$PWD/.build/release/dae-dist
export DAE_DIST_BINARY=$bin
work=$(mktemp -d)
export DAE_NETNS_NAME="bm$(($$ % 100000))"
trap 'launch/netns down; rm -rf "$work"' EXIT
args=(--epochs 1 --limit "$limit" --eval-every 0 --threads 1 --no-epoch-checkpoints --quiet)
results=$work/results.tsv

record() {   # $1 label, $2 nodes, $3 batch, $4 run dir
    python3 - "$@" >> "$results" <<'EOF'
import json, sys
label, nodes, batch, run = sys.argv[1:5]
r = [json.loads(l) for l in open(run + "/metrics.jsonl")]
r = [x for x in r if x["kind"] == "epoch"][-1]
print("\t".join([label, nodes, batch, str(r["seconds"]), str(r["allreduce_seconds"]), str(r["step"]), str(r["samples_per_s"])]))
EOF
}

# warm-up (page cache, binary, first-run effects)
"$bin" train "${args[@]}" --limit 1000 --run-dir "$work/warm" > /dev/null
for ((rep = 1; rep <= reps; rep++)); do
    for n in 2 4; do
        launch/netns up "$n" > /dev/null
        for b in 20 128; do
            over=(); ((n > $(nproc))) && over=(--oversubscribe)
            d="$work/r$rep-shm-$n-$b"
            mpirun -np "$n" "${over[@]}" --bind-to none "$bin" train "${args[@]}" --batch-size "$b" --run-dir "$d" > /dev/null
            record "shared memory" "$n" "$b" "$d"
            for rate in none 10gbit 1gbit 100mbit; do
                d="$work/r$rep-$rate-$n-$b"
                launch/netns shape "$rate"
                launch/multinode --use -N "$n" "${args[@]}" --batch-size "$b" --run-dir "$d" > /dev/null
                record "TCP $rate" "$n" "$b" "$d"
            done
            launch/netns shape none
            if [[ $n -eq 2 && $b -eq 20 ]]; then   # the binding pitfall
                d="$work/r$rep-bind-$n-$b"
                mkdir -p "/tmp/dae-netns-$DAE_NETNS_NAME/n1"
                TMPDIR="/tmp/dae-netns-$DAE_NETNS_NAME/n1" ip netns exec "$DAE_NETNS_NAME-n1" mpirun -np 2 --hostfile hostfiles/netns-2 \
                    --mca plm_rsh_agent "$PWD/launch/netns-agent" --mca plm_rsh_no_tree_spawn 1 \
                    --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
                    "$bin" train "${args[@]}" --batch-size "$b" --run-dir "$d" > /dev/null
                record "TCP none, default binding" "$n" "$b" "$d"
            fi
        done
        launch/netns down
    done
done

python3 - "$results" <<'EOF'
import sys
best = {}
order = []
for line in open(sys.argv[1]):
    label, n, b, sec, ar, steps, sps = line.rstrip("\n").split("\t")
    key = (label, int(n), int(b))
    row = (float(sec), float(ar), int(steps), float(sps))
    if key not in best: order.append(key)
    if key not in best or row[0] < best[key][0]: best[key] = row
print("| nodes | batch | links | step ms | allreduce ms/step | allreduce share | samples/s |")
print("| ---: | ---: | --- | ---: | ---: | ---: | ---: |")
for key in sorted(order, key=lambda k: (k[1], k[2], order.index(k))):
    sec, ar, steps, sps = best[key]
    print(f"| {key[1]} | {key[2]} | {key[0]} | {1000*sec/steps:.1f} | {1000*ar/steps:.2f} | {100*ar/sec:.1f} % | {sps:.0f} |")
EOF
