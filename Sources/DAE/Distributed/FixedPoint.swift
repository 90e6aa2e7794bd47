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

public enum FixedPoint {
    public static let fractionBits = 40
    public static let scale = Double(sign: .plus, exponent: fractionBits, significand: 1)   // 2^40

    /// The largest |value| that `accumulate` accepts when `terms` values will be summed.
    public static func limit(terms: Int) -> Double { Double(sign: .plus, exponent: 62 - fractionBits, significand: 1) / Double(max(terms, 1)) }

    /// acc[i] += round(values[i] * 2^40) (round half to even). Returns false, leaving `acc` partly
    /// updated, if some |values[i]| exceeds `limit` or is not finite.
    @discardableResult
    public static func accumulate(_ values: UnsafePointer<Float>, into acc: UnsafeMutablePointer<Int64>,
                                  count: Int, limit: Double) -> Bool {
        // In blocks of 2,048 values (8 KB, still in L1 after the first look): a large model's
        // gradient is read from memory once, not once to check and once to convert.
        var ok = true, start = 0
        while start < count {
            let n = min(block, count - start)
            ok = accumulateBlock(values + start, into: acc + start, count: n, limit: limit) && ok
            start += n
        }
        return ok
    }

    static let block = 2048

    @inline(__always)
    static func accumulateBlock(_ values: UnsafePointer<Float>, into acc: UnsafeMutablePointer<Int64>,
                                count: Int, limit: Double) -> Bool {
        // Gradients are almost always below 2^11 in magnitude, where |x * 2^40| < 2^51 and the fast
        // loop below is exact; one vectorised pass finds out (NaN compares false and takes the
        // careful loop).
        // (Written with SIMD types: the compiler kept the plain loops scalar, at ~4 ns a value.)
        var largest8 = SIMD8<Float>(), i = 0
        while i + 8 <= count {
            let bits = UnsafeRawPointer(values + i).loadUnaligned(as: SIMD8<UInt32>.self)
            let a = unsafeBitCast(bits & 0x7fff_ffff, to: SIMD8<Float>.self)          // |x|
            largest8.replace(with: a, where: a .> largest8 .| a .!= a)   // a NaN sticks (max() would drop it)
            i += 8
        }
        var largest: Float = 0
        for k in 0..<8 { let a = largest8[k]; largest = a > largest || a != a ? a : largest }
        for k in i..<count { let a = abs(values[k]); largest = a > largest || a != a ? a : largest }
        if largest < 0x1p11 && Double(largest) <= limit {
            // Round half to even: for |y| < 2^51, t = y + 1.5 * 2^52 lands where the spacing of
            // doubles is 1, so the FPU's default rounding rounds y, and t's bit pattern is that of
            // 1.5 * 2^52 plus round(y) (the binade does not change). Integer-only after the add;
            // a Double -> Int64 conversion has no SIMD form before AVX-512.
            let magic = 0x1.8p52, magicBits = Int64(bitPattern: magic.bitPattern), scale = Self.scale
            i = 0
            while i + 8 <= count {
                let x = SIMD8<Double>(UnsafeRawPointer(values + i).loadUnaligned(as: SIMD8<Float>.self))
                let t = unsafeBitCast(x * scale + magic, to: SIMD8<Int64>.self)   // exact product: a power-of-two scale
                let sum = UnsafeRawPointer(acc + i).loadUnaligned(as: SIMD8<Int64>.self) &+ (t &- magicBits)
                UnsafeMutableRawPointer(acc + i).storeBytes(of: sum, as: SIMD8<Int64>.self)
                i += 8
            }
            while i < count {
                let t = Double(values[i]) * scale + magic
                acc[i] &+= Int64(bitPattern: t.bitPattern) &- magicBits
                i += 1
            }
            return true
        }
        // Some value is large, or not a number: the plain loop (rare, so a scalar
        // rounded(.toNearestOrEven) per value is fine). Both loops round the same way, so which
        // one a block takes never changes the sum.
        var ok = true
        for i in 0..<count {
            let x = Double(values[i])                       // exact: a Float fits in a Double
            if !(abs(x) <= limit) { ok = false; continue }  // also catches NaN
            acc[i] &+= Int64((x * scale).rounded(.toNearestOrEven))   // exact product: a power-of-two scale
        }
        return ok
    }

    /// values[i] = Float(acc[i] / 2^40).
    public static func toFloat(_ acc: UnsafePointer<Int64>, into values: UnsafeMutablePointer<Float>, count: Int) {
        let inverse = 1 / scale
        for i in 0..<count { values[i] = Float(Double(acc[i]) * inverse) }
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
