// The roofline: one core's arithmetic peak, measured by register-only multiply-add loops
// (Sources/CKernels/peak.c) in the widest instruction set this CPU runs. `dae-dist bench --what
// peak` prints it; `--what phases` states each layer's share of it.

import CKernels
import Foundation

public enum ArithmeticPeak {
    /// False where the C probes were built without optimisation (a debug build) or for another
    /// architecture: they then do no work and report 0 operations.
    public static var available: Bool { dae_peak_probes_built() != 0 }

    public struct Measurement: Sendable {
        public var name: String          // e.g. "FP32 FMA, AVX-512"
        public var gflops: Double        // per core, one thread
    }

    /// The FP32 FMA peak in the widest instruction set this CPU runs (AVX-512 F, else AVX2 with
    /// FMA), then the bf16 dot-product peak where it has AVX512_BF16. The best of `repeats` runs
    /// of about `seconds` each: a shared machine's other load only ever lowers a run. Empty on
    /// other CPUs, and in a debug build (the probes need an optimised build: `available`).
    public static func measure(seconds: Double = 0.2, repeats: Int = 5, cpuFlags: Set<String> = BLASCore.cpuFlags()) -> [Measurement] {
        guard available else { return [] }
        typealias Probe = (Int64, UnsafeMutablePointer<Float>) -> Double
        var probes: [(String, Probe)] = []
        if cpuFlags.contains("avx512f") {
            probes.append(("FP32 FMA, AVX-512", { dae_peak_fma_avx512($0, $1) }))
        } else if cpuFlags.isSuperset(of: ["avx2", "fma"]) {
            probes.append(("FP32 FMA, AVX2", { dae_peak_fma_avx2($0, $1) }))
        }
        if cpuFlags.isSuperset(of: ["avx512f", "avx512_bf16"]) {
            probes.append(("bf16 dot product (vdpbf16ps), FP32 accumulation", { dae_peak_dpbf16_avx512($0, $1) }))
        }
        var sink: Float = 0
        return probes.map { name, probe in
            // size the loop to about `seconds` from a short calibration run
            var start = monotonicSeconds()
            _ = probe(100_000, &sink)
            let perIteration = max(1e-10, (monotonicSeconds() - start) / 100_000)
            let iterations = Int64(max(1_000, seconds / perIteration))
            var best = 0.0
            for _ in 0..<repeats {
                start = monotonicSeconds()
                let flops = probe(iterations, &sink)
                best = max(best, flops / (monotonicSeconds() - start) / 1e9)
            }
            return Measurement(name: name, gflops: best)
        }
    }
}
