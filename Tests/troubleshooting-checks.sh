#!/usr/bin/env bash
# Provokes, on this machine, the failures of docs/troubleshooting.md that one machine can show,
# checks the message a user sees and that the documented fix works:
#   - mpirun -np (cores + 1) without --oversubscribe: "not enough slots"; --oversubscribe trains
#   - mpirun as root without --allow-run-as-root or OMPI_ALLOW_RUN_AS_ROOT*: refused; the variables work
#   - mpirun's default binding (-np 1: bound to one core, 1 thread); --bind-to none: all cores
#   - --threads beyond the CPUs a bound rank may run on: dae-dist's warning, capped; and more
#     threads than micro-batches: the warning that names a --batch-size that uses them
#   - SLURM_NTASKS=2 in a one-rank world (what srun without --mpi=pmix gives): dae-dist's error
#     (the real srun is in Tests/slurm-checks.sh)
#   - OpenBLAS's generic "Prescott" kernels on a CPU with AVX2/AVX-512: dae-dist asks for better
#     ones (OPENBLAS_CORETYPE), and leaves a user's own OPENBLAS_CORETYPE alone
#   - launch/run on a PATH without dpkg: runs; with the libraries not found and no known package
#     manager: prints the package names for Debian, Fedora, Arch, Homebrew and exits 1
# Run by launch/test after Tests/chaos-checks.sh; on its own: bash Tests/troubleshooting-checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0; failed=0; skipped=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); [[ -n "${2:-}" && -f "$2" ]] && sed 's/^/    /' "$2" | head -n 30; }
skip() { echo "SKIPPED: $1"; skipped=$((skipped + 1)); }
work=$(mktemp -d /tmp/dae-troubleshooting.XXXXXX)
trap 'rm -rf "$work"' EXIT

swift build -c release 2>&1 | tail -n 1 || { echo "FAIL: release build"; exit 1; }
bin=.build/release/dae-dist
cores=$(nproc)
root=(); [[ $EUID -eq 0 ]] && root=(--allow-run-as-root)
tiny=(--epochs 1 --limit 100 --eval-every 0 --no-epoch-checkpoints)
rd() { mktemp -d -u "$work/run.XXXXXX"; }   # a fresh run directory (not created)

if command -v mpirun > /dev/null; then
    # ---- not enough slots ----
    np=$((cores + 1))
    mpirun "${root[@]}" -np "$np" "$bin" train "${tiny[@]}" --batch-size $((5 * np)) --run-dir "$(rd)" > "$work/slots.log" 2>&1
    status=$?
    if [[ $status -ne 0 ]] && grep -q "There are not enough slots available in the system to satisfy the $np" "$work/slots.log"; then
        pass "mpirun -np $np on $cores cores: exit $status, \"There are not enough slots available in the system to satisfy the $np slots...\""
    else
        fail "mpirun -np $np on $cores cores: exit $status, expected the slots message" "$work/slots.log"
    fi
    if mpirun "${root[@]}" --oversubscribe -np "$np" "$bin" train "${tiny[@]}" --batch-size $((5 * np)) --run-dir "$(rd)" > "$work/over.log" 2>&1 &&
       grep -q "^epoch   1/1" "$work/over.log"; then
        pass "fix: mpirun --oversubscribe -np $np trains"
    else
        fail "mpirun --oversubscribe -np $np" "$work/over.log"
    fi

    # ---- run as root ----
    if [[ $EUID -eq 0 ]]; then
        env -u OMPI_ALLOW_RUN_AS_ROOT -u OMPI_ALLOW_RUN_AS_ROOT_CONFIRM mpirun -np 1 "$bin" train "${tiny[@]}" --run-dir "$(rd)" > "$work/root.log" 2>&1
        status=$?
        if [[ $status -ne 0 ]] && grep -q "mpirun has detected an attempt to run as root" "$work/root.log"; then
            pass "mpirun as root: exit $status, \"mpirun has detected an attempt to run as root.\""
        else
            fail "mpirun as root: exit $status, expected the refusal" "$work/root.log"
        fi
        if OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 1 "$bin" train "${tiny[@]}" --run-dir "$(rd)" > "$work/rootok.log" 2>&1 &&
           grep -q "^epoch   1/1" "$work/rootok.log"; then
            pass "fix: OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun trains"
        else
            fail "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun" "$work/rootok.log"
        fi
    else
        skip "the run-as-root refusal (not root)"
    fi

    # ---- default binding: a rank on one core ----
    if ((cores >= 2)); then
        mpirun "${root[@]}" -np 1 --report-bindings "$bin" train "${tiny[@]}" --run-dir "$(rd)" > "$work/bound.log" 2>&1
        mpirun "${root[@]}" -np 1 --report-bindings --bind-to none "$bin" train "${tiny[@]}" --run-dir "$(rd)" > "$work/unbound.log" 2>&1
        threads_of() { grep -m1 -oE '[0-9]+ worker thread' "$1" | cut -d' ' -f1; }
        bound=$(threads_of "$work/bound.log"); unbound=$(threads_of "$work/unbound.log")
        # one core: 1 thread, or its hardware threads on an SMT machine; fewer than all CPUs
        if grep -q "MCW rank 0 bound to" "$work/bound.log" && [[ -n "$bound" && "$bound" -lt "$cores" ]]; then
            pass "mpirun -np 1 (default binding): $(grep -m1 -o 'MCW rank 0 bound to.*' "$work/bound.log"), $bound worker thread(s)"
        else
            fail "mpirun -np 1 default binding: expected one core and fewer than $cores threads" "$work/bound.log"
        fi
        if grep -q "MCW rank 0 is not bound" "$work/unbound.log" && [[ "$unbound" == "$cores" ]]; then
            pass "fix: --bind-to none: \"MCW rank 0 is not bound\", $cores worker threads"
        else
            fail "mpirun -np 1 --bind-to none: expected no binding and $cores threads" "$work/unbound.log"
        fi

        # ---- threads x ranks beyond the cores ----
        mpirun "${root[@]}" -np 2 --bind-to core "$bin" train --threads 4 "${tiny[@]}" --run-dir "$(rd)" > "$work/threads.log" 2>&1
        status=$?
        capped=$(grep -m1 -oE '^warning: --threads 4 is more than the [0-9]+ CPUs? this rank may run on; using [0-9]+$' "$work/threads.log" | grep -oE '[0-9]+$')
        if [[ $status -eq 0 && -n "$capped" && "$capped" -lt 4 ]] && [[ "$(threads_of "$work/threads.log")" == "$capped" ]]; then
            pass "mpirun -np 2 --bind-to core ... --threads 4: \"$(grep -m1 '^warning: --threads' "$work/threads.log")\", trains with $capped"
        else
            fail "--threads 4 on a rank bound to one core: exit $status, expected the warning" "$work/threads.log"
        fi
    else
        skip "binding and threads checks (1 core)"
    fi
else
    skip "mpirun checks (no mpirun on PATH)"
fi

# ---- more threads than micro-batches ----
"$bin" train --threads 2 --batch-size 5 "${tiny[@]}" --run-dir "$(rd)" > "$work/idle.log" 2>&1
if ((cores < 2)); then
    skip "idle-thread warning (1 core: --threads 2 is capped first)"
elif grep -q "^warning: 2 threads per rank but only 1 micro-batch per step: 1 thread idle; --micro-batch 2 or --batch-size 10 would use all 2 (or pass --threads 1)$" "$work/idle.log"; then
    pass "--threads 2 --batch-size 5: \"$(grep -m1 '^warning: 2 threads' "$work/idle.log")\""
else
    fail "--threads 2 --batch-size 5: expected the idle-thread warning" "$work/idle.log"
fi

# ---- one rank in a 2-task Slurm step ----
SLURM_NTASKS=2 "$bin" train "${tiny[@]}" --run-dir "$work/alone" > "$work/alone.log" 2>&1
status=$?
if [[ $status -ne 0 && ! -e "$work/alone" ]] && grep -q "^error: SLURM_NTASKS=2 but this process is alone in its MPI world" "$work/alone.log"; then
    pass "SLURM_NTASKS=2, one rank: exit $status, \"$(cut -c1-80 "$work/alone.log" | head -n 1)...\", nothing trained"
else
    fail "SLURM_NTASKS=2 in a one-rank world: exit $status" "$work/alone.log"
fi

# ---- launch/run without dpkg ----
# A PATH of symlinks to everything in /usr/bin and /usr/sbin except dpkg*, and Swift's own folder.
nodpkg=$work/bin-nodpkg; mkdir -p "$nodpkg"
for f in /usr/bin/* /usr/sbin/*; do
    case "${f##*/}" in dpkg*) ;; *) [[ -e "$nodpkg/${f##*/}" ]] || ln -s "$f" "$nodpkg/${f##*/}" ;; esac
done
swiftdir=$(dirname "$(command -v swift)")
if env PATH="$nodpkg:$swiftdir" bash -c '! command -v dpkg' > /dev/null &&
   env PATH="$nodpkg:$swiftdir" launch/run -n 1 "${tiny[@]}" --run-dir "$work/nodpkg/r" > "$work/nodpkg.log" 2>&1 &&
   [[ -s "$work/nodpkg/r/model.safetensors" ]]; then
    pass "launch/run -n 1 on a PATH without dpkg: trained, $(grep -m1 -o 'wrote .*model.safetensors' "$work/nodpkg.log" | sed "s|$work/||")"
else
    fail "launch/run on a PATH without dpkg" "$work/nodpkg.log"
fi
if [[ -z "$(command -v mpirun)" ]]; then
    skip "launch/run -n 2 on a PATH without dpkg (no mpirun)"
elif env PATH="$nodpkg:$swiftdir" launch/run -n 2 "${tiny[@]}" --run-dir "$work/nodpkg/r2" > "$work/nodpkg2.log" 2>&1 &&
   [[ -s "$work/nodpkg/r2/model.safetensors" ]] && grep -q "2 rank(s) (mpi" "$work/nodpkg2.log"; then
    pass "launch/run -n 2 on a PATH without dpkg: mpirun, 2 ranks, trained"
else
    fail "launch/run -n 2 on a PATH without dpkg" "$work/nodpkg2.log"
fi

# ---- launch/run with the libraries not found and no package manager it knows ----
nopm=$work/bin-nopm; mkdir -p "$nopm"
for f in "$nodpkg"/*; do
    case "${f##*/}" in apt*|dnf*|yum*|pacman*) ;; *) ln -s "$(readlink "$f")" "$nopm/${f##*/}" ;; esac
done
env PATH="$nopm:$swiftdir" PKG_CONFIG_LIBDIR="$work/empty" PKG_CONFIG_PATH= launch/run -n 1 "${tiny[@]}" --run-dir "$work/nopm/r" > "$work/nopm.log" 2>&1
status=$?
if [[ $status -eq 1 && ! -e "$work/nopm/r" ]] && grep -q "^launch/run: not found: openblas zlib libpng" "$work/nopm.log" &&
   grep -q "Debian/Ubuntu: apt-get install" "$work/nopm.log" && grep -q "Fedora/RHEL:   dnf install" "$work/nopm.log" &&
   grep -q "Arch:          pacman -S" "$work/nopm.log" && grep -q "Homebrew:      brew install" "$work/nopm.log"; then
    pass "launch/run with no libraries found and no known package manager: exit 1, \"$(head -n 1 "$work/nopm.log")\" and the package names for 4 platforms"
else
    fail "launch/run with the libraries missing: exit $status" "$work/nopm.log"
fi

# ---- OpenBLAS's fallback kernels ----
# Forcing Prescott shows what OpenBLAS does on a CPU it does not know; without the variable,
# dae-dist must run better kernels wherever the CPU has AVX2 and FMA.
forced=$(OPENBLAS_CORETYPE=Prescott "$bin" --version | grep '^OpenBLAS')
chosen=$(env -u OPENBLAS_CORETYPE "$bin" --version | grep '^OpenBLAS')
if [[ $forced == *"(core: Prescott)"* ]]; then
    pass "a user's OPENBLAS_CORETYPE=Prescott is kept: \"$forced\""
else
    fail "OPENBLAS_CORETYPE=Prescott not kept: \"$forced\""
fi
if grep -q -w avx2 /proc/cpuinfo && grep -q -w fma /proc/cpuinfo; then
    if [[ $chosen != *"(core: Prescott)"* ]]; then
        pass "on a CPU with AVX2 and FMA, dae-dist never runs OpenBLAS's Prescott kernels: \"$chosen\""
    else
        fail "dae-dist runs OpenBLAS's Prescott kernels on a CPU with AVX2: \"$chosen\""
    fi
else
    skip "this CPU has no AVX2/FMA: OpenBLAS's own choice stands"
fi

echo "troubleshooting-checks: $passed passed, $failed failed$( ((skipped)) && echo ", $skipped skipped")"
[[ $failed -eq 0 ]]
