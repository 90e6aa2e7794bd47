// Which OpenBLAS kernels run. A DYNAMIC_ARCH OpenBLAS (Debian's) picks its kernels once, when the
// library is loaded, from the CPU's family and model numbers. A CPU newer than the OpenBLAS build
// is not in its table: Debian 12's 0.3.21 does not know Emerald Rapids (family 6, model 207), and
// then falls back to its "Prescott" kernels, SSE3 code that runs sgemm 4-7x slower than the AVX-512
// kernels the same CPU runs (`dae-dist bench --what gemm`: 14-24 against 98 GFLOP/s per core).
// OpenBLAS's documented override is the OPENBLAS_CORETYPE variable, read only while the library
// loads, i.e. before any of our code runs. So the command-line tool, as its first act, asks
// `BLASCore.upgrade` whether OpenBLAS fell back although the CPU's features (the kernel's
// /proc/cpuinfo flags, which list only what the OS has enabled) run a better kernel, and if so
// executes itself again with the variable set. A user's own OPENBLAS_CORETYPE is never touched.
// The core in use is recorded in config.json and every checkpoint (BuildInfo.openblasCore).

import CBLAS
import Foundation

public enum BLASCore {
    /// The core OpenBLAS chose when it loaded (openblas_get_corename).
    public static var current: String {
        guard let text = openblas_get_corename() else { return "unknown" }
        return String(cString: text).trimmingCharacters(in: .whitespaces)
    }

    /// The OPENBLAS_CORETYPE to ask for instead of `detected`, or nil to keep it. Only OpenBLAS's
    /// fallback for an unknown CPU is replaced: a core it chose knowingly (Zen, Haswell, SkylakeX...)
    /// stays, since OpenBLAS may have had reasons (a Zen 4 runs its Zen kernels well).
    public static func upgrade(detected: String, cpuFlags: Set<String>) -> String? {
        guard detected.lowercased() == "prescott" else { return nil }
        // SkylakeX's sgemm kernel needs AVX-512 F, CD, BW, DQ and VL (OpenBLAS's own test for it)
        if cpuFlags.isSuperset(of: ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]) { return "SkylakeX" }
        if cpuFlags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }

    /// The feature flags of the first CPU in /proc/cpuinfo (empty where there is none).
    public static func cpuFlags(cpuinfo path: String = "/proc/cpuinfo") -> Set<String> {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        for line in text.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        }
        return []
    }

    /// Executes this program again with OPENBLAS_CORETYPE set when `upgrade` names a better core
    /// and the user has not set the variable. Call it first thing in main, before MPI or threads
    /// exist (the process keeps its pid, so mpirun and Slurm see nothing). Returns only when no
    /// re-execution is needed or exec failed (then the slower kernels run, as before).
    public static func reexecWithBetterCoreIfNeeded() {
        guard ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil,
              let core = upgrade(detected: current, cpuFlags: cpuFlags()) else { return }
        // the variable also stops the new image from re-executing again: without it, no exec
        guard setenv("OPENBLAS_CORETYPE", core, 1) == 0 else { return }
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        unsetenv("OPENBLAS_CORETYPE")   // exec failed: carry on as loaded
    }
}
