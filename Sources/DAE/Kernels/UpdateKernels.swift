// Which versions of dae-dist's C kernels for the passes over every parameter (Adam's update, the
// fixed-point accumulation: Sources/CKernels/update.c) run on this CPU.

import CKernels

/// AVX2 where the CPU has it, else the baseline (SSE2 on x86-64). The versions give the same bits;
/// only speed differs. Recorded as `update_kernels` in `--version` and the files' metadata.
public enum UpdateKernels {
    /// Set from the CPU's features; a test may switch it to compare the versions.
    nonisolated(unsafe) public static var avx2 = dae_update_avx2_built() != 0 && BLASCore.cpuFlags().contains("avx2")
    public static var name: String { avx2 ? "avx2" : "baseline" }
}

/// Exact mode's lockstep products of fully connected layers (Sources/CKernels/linear.c): the C
/// kernel where the CPU has AVX2 and FMA, else OpenBLAS, a call per micro-batch. The two round
/// differently (each gives bits that depend on neither the threads nor the ranks), so the choice
/// is recorded as `lockstep_linear` in `--version` and the files' metadata.
public enum LockstepLinearKernel {
    /// Set from the CPU's features; a test may switch it off to run the OpenBLAS path.
    nonisolated(unsafe) public static var avx2 = dae_linear_avx2_built() != 0 && BLASCore.cpuFlags().isSuperset(of: ["avx2", "fma"])
    public static var name: String { avx2 ? "avx2_fma" : "openblas" }
}
