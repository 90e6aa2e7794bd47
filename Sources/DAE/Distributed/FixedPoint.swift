// Exact, order-independent gradient sums. Floating-point addition is not associative, so a float
// allreduce gives results that depend on the number of ranks and on MPI's reduction tree. Instead
// every micro-batch gradient is rounded once to 64-bit fixed point with 40 fractional bits
// (resolution 2^-40 ~ 9.1e-13), and those integers are summed: integer addition is associative,
// so any grouping (threads, ranks, MPI's algorithm) gives the same bits. The sum is converted back
// to Float once.
//
// Range: to rule out overflow of the sum of m micro-batch values, each value must satisfy
// |g| * 2^40 <= 2^62 / m, i.e. |g| <= 2^22 / m (4,194,304 / m: about 1 million for the reference's
// 4 micro-batches). Gradients of a mean loss are far below that; a larger one means training has
// diverged, and it is reported as an error rather than wrapped around.

import CKernels

/// Where a computation may add its results in fixed point itself, as `ExactSum.add` would (the
/// stacked model's lockstep weight gradients, added by linear.c as they are computed): value i of
/// the flat parameter buffer goes to `accumulator[i - first]`; values beyond `limit` or not
/// finite are left out and the worker marked as overflowed (`markOverflow`). Only for values no
/// other thread adds to meanwhile (ExactSum.directTarget).
public struct FixedPointTarget {
    public let accumulator: UnsafeMutablePointer<Int64>
    public let first: Int
    public let limit: Double
    let overflowFlag: UnsafeMutablePointer<Int64>
    public func markOverflow() { overflowFlag.pointee = 1 }
}

public enum FixedPoint {
    public static let fractionBits = 40
    public static let scale = Double(sign: .plus, exponent: fractionBits, significand: 1)   // 2^40

    /// The largest |value| that `accumulate` accepts when `terms` values will be summed.
    public static func limit(terms: Int) -> Double { Double(sign: .plus, exponent: 62 - fractionBits, significand: 1) / Double(max(terms, 1)) }

    /// acc[i] += round(values[i] * 2^40) (round half to even). Returns false, leaving `acc` partly
    /// updated, if some |values[i]| exceeds `limit` or is not finite.
    /// A C kernel (Sources/CKernels/update.c, AVX2 where the CPU has it): in blocks of 2,048
    /// values, each scanned for its largest magnitude while in L1, then converted exactly with
    /// integer arithmetic (the rare block with a value of 2^11 or more, or not finite, takes a
    /// scalar loop that rounds the same way).
    @discardableResult
    public static func accumulate(_ values: UnsafePointer<Float>, into acc: UnsafeMutablePointer<Int64>,
                                  count: Int, limit: Double) -> Bool {
        dae_fixed_point_accumulate(values, acc, Int64(count), limit, UpdateKernels.avx2 ? 1 : 0) != 0
    }

    /// values[i] = Float(acc[i] / 2^40): the plain definition, which `drain`'s kernel is tested
    /// against (training reads sums back with `drain`).
    public static func toFloat(_ acc: UnsafePointer<Int64>, into values: UnsafeMutablePointer<Float>, count: Int) {
        let inverse = 1 / scale
        for i in 0..<count { values[i] = Float(Double(acc[i]) * inverse) }
    }

    /// values[i] = Float(acc[i] / 2^40), as `toFloat`, and acc[i] = 0: the sum read back and the
    /// accumulator cleared for the next round in one pass. A C kernel (update.c; AVX2 where the
    /// CPU has it, converting Int64 to Double exactly below 2^51 with the same magic number as
    /// `accumulate`); in training a little faster than the Swift loop and a separate zeroing
    /// (docs/benchmarks.md).
    public static func drain(_ acc: UnsafeMutablePointer<Int64>, into values: UnsafeMutablePointer<Float>, count: Int) {
        dae_fixed_point_drain(acc, values, Int64(count), UpdateKernels.avx2 ? 1 : 0)
    }
}

/// How one optimizer step's samples are cut up. The global batch of n samples (positions
/// first ..< first + n of the epoch's permutation) is split into micro-batches of `microBatch`
/// consecutive positions (the last may be shorter). The split depends only on the batch, never on
/// the world size; ranks then take contiguous runs of micro-batches, as evenly as possible.
public struct StepPlan: Sendable, Equatable {
    public let first: Int
    public let count: Int
    public let microBatch: Int

    public init(first: Int, count: Int, microBatch: Int) {
        precondition(count > 0 && microBatch > 0)
        self.first = first; self.count = count; self.microBatch = microBatch
    }

    public var microBatches: Int { (count + microBatch - 1) / microBatch }

    /// Positions in the epoch order of micro-batch j.
    public func positions(ofMicroBatch j: Int) -> Range<Int> {
        let start = first + j * microBatch
        return start ..< min(start + microBatch, first + count)
    }

    /// The micro-batches rank r of `size` processes: r*m/size ..< (r+1)*m/size (evenShare).
    public func microBatches(rank: Int, size: Int) -> Range<Int> {
        evenShare(microBatches, part: rank, of: size)
    }

    /// Positions rank r of `size` processes in fast mode: the batch cut into `size` near-equal
    /// contiguous parts (no micro-batches).
    public func positions(rank: Int, size: Int) -> Range<Int> {
        let share = evenShare(count, part: rank, of: size)
        return (first + share.lowerBound) ..< (first + share.upperBound)
    }
}
