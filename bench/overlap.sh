#!/usr/bin/env bash
# What overlapping the reduction with the backward saves across nodes (docs/multinode.md,
# "Overlap"): 2 launch/netns nodes, 1 rank each, links shaped to 1 Gb/s and 100 Mb/s, batch 20
# and 128, one epoch over LIMIT training images (default 6000), 1 worker thread per rank, exact
# reduction, with the overlap (the default) and with --no-overlap; REPS rounds (default 3) with
# every configuration interleaved within a round, so that both modes see the same machine.
# Prints a Markdown table of medians (range): step time, time in the reduction per step
# (dae-dist's allreduce_seconds: the head's allreduce plus waiting for the decoder's), samples/s.
# Also checks that both modes wrote byte-identical weights (for --reduce fast only on 2 nodes,
# where a float sum of two terms does not depend on the algorithm). Needs root.
#   bench/overlap.sh [LIMIT] [REPS] [NODES] [REDUCE]       REDUCE: exact (default) or fast
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
limit=${1:-6000}; reps=${2:-3}; nodes=${3:-2}; reduce=${4:-exact}
swift build -c release >&2
bin=$PWD/.build/release/dae-dist
export DAE_DIST_BINARY=$bin
work=$(mktemp -d)
export DAE_NETNS_NAME="ov$(($$ % 100000))"
trap 'launch/netns down > /dev/null 2>&1 || true; rm -rf "$work"' EXIT
args=(--epochs 1 --limit "$limit" --eval-every 0 --threads 1 --no-epoch-checkpoints --quiet --reduce "$reduce")
results=$work/results.tsv

"$bin" train "${args[@]}" --limit 1000 --run-dir "$work/warm" > /dev/null   # page cache, binary
launch/netns up "$nodes" > /dev/null
for ((rep = 1; rep <= reps; rep++)); do
    for rate in 1gbit 100mbit; do
        launch/netns shape "$rate" > /dev/null
        for b in 20 128; do
            for mode in overlap no-overlap; do
                flag=(); [[ $mode == no-overlap ]] && flag=(--no-overlap)
                d="$work/r$rep-$rate-$b-$mode"
                launch/multinode --use -N "$nodes" "${args[@]}" "${flag[@]}" --batch-size "$b" --run-dir "$d" > /dev/null
                python3 - "$rate" "$b" "$mode" "$d" >> "$results" <<'PY'
import json, sys
rate, b, mode, run = sys.argv[1:5]
r = [json.loads(l) for l in open(run + "/metrics.jsonl")]
r = [x for x in r if x["kind"] == "epoch"][-1]
print("\t".join([rate, b, mode, str(1000 * r["seconds"] / r["step"]), str(1000 * r["allreduce_seconds"] / r["step"]), str(r["samples_per_s"])]))
PY
            done
            [[ $reduce == fast && $nodes -gt 2 ]] || cmp -s "$work/r$rep-$rate-$b-overlap/model.safetensors" "$work/r$rep-$rate-$b-no-overlap/model.safetensors" \
                || { echo "bench/overlap.sh: the two modes wrote different weights ($rate, batch $b)" >&2; exit 1; }
        done
    done
done

echo "$nodes nodes, 1 rank each, --threads 1, --reduce $reduce, $limit samples, $reps rounds; medians (range); weights byte-identical in both modes"
python3 - "$results" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    rate, b, mode, step, red, sps = line.split("\t")
    rows.setdefault((rate, int(b), mode), []).append((float(step), float(red), float(sps)))
def cell(xs, fmt):
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"
print("| link | batch | reduction | step ms | reduction ms/step | samples/s |")
print("| --- | ---: | --- | ---: | ---: | ---: |")
for (rate, b, mode), v in sorted(rows.items(), key=lambda kv: (kv[0][0] != "1gbit", kv[0][1], kv[0][2] != "overlap")):
    print(f"| {rate} | {b} | {mode} | {cell([x[0] for x in v], '{:.1f}')} | {cell([x[1] for x in v], '{:.2f}')} | {cell([x[2] for x in v], '{:.0f}')} |")
PY
