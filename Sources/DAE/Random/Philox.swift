// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel Random Numbers: As Easy
// as 1, 2, 3", SC 2011), the generator behind cuRAND and PyTorch's CUDA RNG.
//
// Why counter-based: every random number is a pure function of (key, counter). The noise a sample
// gets is keyed by (seed, epoch, sample index), so it does not depend on which rank, thread or
// batch position handles the sample, and a resumed run needs no saved RNG state.

/// One Philox4x32-10 block: 4 random UInt32 for a 128-bit counter and a 64-bit key.
@inline(__always)
public func philox4x32(counter c: (UInt32, UInt32, UInt32, UInt32),
                       key k: (UInt32, UInt32)) -> (UInt32, UInt32, UInt32, UInt32) {
    var (c0, c1, c2, c3) = c
    var (k0, k1) = k
    for _ in 0..<10 {
        let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
        let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
        let n0 = UInt32(truncatingIfNeeded: p1 >> 32) ^ c1 ^ k0
        let n1 = UInt32(truncatingIfNeeded: p1)
        let n2 = UInt32(truncatingIfNeeded: p0 >> 32) ^ c3 ^ k1
        let n3 = UInt32(truncatingIfNeeded: p0)
        (c0, c1, c2, c3) = (n0, n1, n2, n3)
        k0 = k0 &+ 0x9E37_79B9
        k1 = k1 &+ 0xBB67_AE85
    }
    return (c0, c1, c2, c3)
}

/// What a stream of random numbers is for; part of the counter so that streams never overlap.
public enum RandomPurpose: UInt32 {
    case noise = 1        // corruption of one training sample
    case shuffle = 2      // the epoch's sample order
    case initialization = 3
    case evalNoise = 4
    case sampling = 5     // the corruption step of a sampling chain: (step, chain)
    case binarize = 6     // Bernoulli draws of a sampling chain: (step, chain)
    case chainStart = 7   // a chain's random starting image: (0, chain)
    case patch = 8        // a training patch's corner and flip: (epoch, sample position)
}

/// A stream of random numbers identified by (seed, purpose, a, b): for noise a = epoch and
/// b = sample index. Drawing from it advances a block counter; two streams with different
/// identities never share a block.
public struct RandomStream {
    @usableFromInline let key: (UInt32, UInt32)
    @usableFromInline let id: (UInt32, UInt32, UInt32)
    @usableFromInline var block: UInt32 = 0
    @usableFromInline var buffer: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
    @usableFromInline var used: Int = 4

    public init(seed: UInt64, purpose: RandomPurpose, _ a: UInt64, _ b: UInt64 = 0) {
        key = (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
        // The counter is (block, a, b, purpose | high bits of a and b): 32 bits of each of a
        // and b go in full, their next 12 bits share the last word with the purpose.
        let high = (UInt32(truncatingIfNeeded: a >> 32) & 0xFFF) << 8
            | (UInt32(truncatingIfNeeded: b >> 32) & 0xFFF) << 20
        id = (UInt32(truncatingIfNeeded: a), UInt32(truncatingIfNeeded: b), purpose.rawValue | high)
    }

    /// The next 32 random bits.
    @inlinable public mutating func nextUInt32() -> UInt32 {
        if used == 4 {
            buffer = philox4x32(counter: (block, id.0, id.1, id.2), key: key)
            block &+= 1
            used = 0
        }
        defer { used += 1 }
        switch used {
        case 0: return buffer.0
        case 1: return buffer.1
        case 2: return buffer.2
        default: return buffer.3
        }
    }

    /// Uniform in [0, 1) with 24 random bits (every value exactly representable as Float).
    @inlinable public mutating func uniform() -> Float {
        Float(nextUInt32() >> 8) * (1.0 / 16_777_216.0)
    }

    /// Uniform in (0, 1]: safe to take the logarithm of.
    @inlinable public mutating func uniformOpenZero() -> Float {
        Float((nextUInt32() >> 8) + 1) * (1.0 / 16_777_216.0)
    }

    /// Uniform integer in 0..<n without modulo bias (Lemire's multiply-and-reject).
    @inlinable public mutating func below(_ n: UInt32) -> UInt32 {
        precondition(n > 0)
        var m = UInt64(nextUInt32()) &* UInt64(n)
        if UInt32(truncatingIfNeeded: m) < n {
            let threshold = (0 &- n) % n
            while UInt32(truncatingIfNeeded: m) < threshold {
                m = UInt64(nextUInt32()) &* UInt64(n)
            }
        }
        return UInt32(truncatingIfNeeded: m >> 32)
    }

    /// A pair of independent standard normals (Box-Muller). Computed in Double so the tails are
    /// right, then rounded to Float.
    @inlinable public mutating func normalPair() -> (Float, Float) {
        let u1 = Double(uniformOpenZero())
        let u2 = Double(uniform())
        let r = (-2.0 * _log(u1)).squareRoot()
        let theta = 2.0 * Double.pi * u2
        return (Float(r * _cos(theta)), Float(r * _sin(theta)))
    }
}

// Foundation-free libm access keeps this file usable from any target.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@inlinable func _log(_ x: Double) -> Double { log(x) }
@inlinable func _cos(_ x: Double) -> Double { cos(x) }
@inlinable func _sin(_ x: Double) -> Double { sin(x) }

/// The epoch's sample order: a permutation of 0..<count keyed by (seed, epoch), by Fisher-Yates.
/// Every rank computes the same permutation and takes its own part of it.
public func epochPermutation(count: Int, seed: UInt64, epoch: Int, into order: inout [Int32]) {
    order.removeAll(keepingCapacity: true)
    order.append(contentsOf: (0..<Int32(count)))
    var stream = RandomStream(seed: seed, purpose: .shuffle, UInt64(epoch))
    var i = count - 1
    while i > 0 {
        let j = Int(stream.below(UInt32(i + 1)))
        order.swapAt(i, j)
        i -= 1
    }
}
