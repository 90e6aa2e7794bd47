#!/usr/bin/env bash
# The scaling table of docs/distributed.md: one full-MNIST epoch of the reference recipe for one
# process, -np 1, 2, 4, exact and fast, one after another; prints each run's epoch line and the
# first bytes of its weights' md5 (equal md5 = bitwise-equal weights).
set -u
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
swift build -c release >&2
B=.build/release/dae-dist
A=(train --epochs 1 --eval-every 0 --no-epoch-checkpoints --run-dir /tmp/dae-scaling --overwrite)   # each run replaces the last
run() { echo "== $1"; shift; "$@" 2>&1 | grep -E "^epoch|rank\(s\)"; md5sum /tmp/dae-scaling/model.safetensors | cut -c1-12; }
run "single exact (default threads)" "$B" "${A[@]}"
run "np1 exact" mpirun -np 1 --bind-to none "$B" "${A[@]}"
run "np2 exact" mpirun -np 2 --bind-to none "$B" "${A[@]}"
run "np4 exact" mpirun -np 4 --oversubscribe --bind-to none "$B" "${A[@]}"
run "single fast (default threads)" "$B" "${A[@]}" --reduce fast
run "np2 fast" mpirun -np 2 --bind-to none "$B" "${A[@]}" --reduce fast
run "np4 fast" mpirun -np 4 --oversubscribe --bind-to none "$B" "${A[@]}" --reduce fast
run "single exact 1 thread" "$B" "${A[@]}" --threads 1
run "single fast 1 thread" "$B" "${A[@]}" --threads 1 --reduce fast
