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

    /// A pair of independent standard normals from the stream's next two words (`boxMuller`).
    @inlinable public mutating func normalPair() -> (Float, Float) {
        let u1 = nextUInt32()
        return boxMuller(u1, nextUInt32())
    }

    /// Stores the stream's next `count` words at `words` (4-byte aligned): whole Philox blocks
    /// at a time, after whatever is left of the current one, so the words are those `count`
    /// calls of `nextUInt32()` would return.
    @inlinable public mutating func fill(_ words: UnsafeMutableRawPointer, count: Int) {
        var i = 0
        while i < count, used < 4 {
            words.storeBytes(of: nextUInt32(), toByteOffset: 4 * i, as: UInt32.self)
            i += 1
        }
        while count - i >= 4 {
            let b = philox4x32(counter: (block, id.0, id.1, id.2), key: key)
            block &+= 1
            words.storeBytes(of: b.0, toByteOffset: 4 * i, as: UInt32.self)
            words.storeBytes(of: b.1, toByteOffset: 4 * i + 4, as: UInt32.self)
            words.storeBytes(of: b.2, toByteOffset: 4 * i + 8, as: UInt32.self)
            words.storeBytes(of: b.3, toByteOffset: 4 * i + 12, as: UInt32.self)
            i += 4
        }
        while i < count {
            words.storeBytes(of: nextUInt32(), toByteOffset: 4 * i, as: UInt32.self)
            i += 1
        }
    }
}

/// Two independent standard normals from two random words, by Box-Muller in Float:
/// r = sqrt(-2 ln u1), (z0, z1) = r (cos 2 pi u2, sin 2 pi u2), with u1 = (a >> 8 + 1) / 2^24 in
/// (0, 1] and u2 = (b >> 8) / 2^24 in [0, 1).
///
/// No libm: the logarithm, sine and cosine are short polynomials in Float with no branch, about
/// 2.5 times faster than libm's in Double, and the bits are the same on every CPU and C library
/// (Swift fuses no multiply-adds on its own). Both reductions are exact because u1 and u2 are
/// integers over 2^24: ln u1 = ln k - 24 ln 2 with k = a >> 8 + 1 an exact Float, split as 2^e m
/// with m in [sqrt(1/2), sqrt(2)]; the angle's top 3 bits are its octant and the other 21 the
/// exact offset inside it. Each result is within a few units in the last place of the same
/// formula in Double with libm (RandomnessTests checks 2^20 pairs); the largest |z| is
/// sqrt(48 ln 2) = 5.77, at the smallest u1.
@inline(__always) @inlinable
public func boxMuller(_ a: UInt32, _ b: UInt32) -> (Float, Float) {
    // radius: -2 ln u1 = 2 ((24 - e) ln 2 - ln m), k = 2^e m
    let k = Float(Int32(bitPattern: (a &>> 8) &+ 1))
    var bits = k.bitPattern
    var e = Int32(bitPattern: bits &>> 23) &- 127
    bits = (bits & 0x007F_FFFF) | 0x3F80_0000                      // m in [1, 2)
    let halve = bits > 0x3FB5_04F3                                  // m > sqrt(2): use m / 2
    bits = halve ? bits &- 0x0080_0000 : bits
    e = halve ? e &+ 1 : e
    let m = Float(bitPattern: bits)
    // ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| <= 0.1716: the series to t^9 is within Float's precision
    let t = (m - 1) / (m + 1), t2 = t * t
    let lnM = 2 * t * (1 + t2 * (1.0 / 3 + t2 * (1.0 / 5 + t2 * (1.0 / 7 + t2 * (1.0 / 9)))))
    let n = Float(24 &- e)                                          // 0 ... 24
    let ln2High: Float = 0.693_145_751_953_125                      // 15 bits: n * ln2High is exact
    let ln2Low: Float = 1.428_606_820_286_2e-06                     // ln 2 - ln2High
    let radius = (2 * ((n * ln2High - lnM) + n * ln2Low)).squareRoot()

    // angle: 2 pi u2 = octant pi/4 + offset, offset = (b >> 8 & (2^21 - 1)) pi/4 / 2^21; odd
    // octants are mirrored (pi/4 - offset, also exact) so the polynomials see [0, pi/4] only
    let angleBits = b &>> 8
    let octant = angleBits &>> 21
    let within = angleBits & 0x1F_FFFF
    let steps = octant & 1 == 1 ? 0x20_0000 &- within : within
    let x = Float(Int32(bitPattern: steps)) * (Float.pi / 4 / 2_097_152)
    let x2 = x * x
    let s = x * (1 - x2 * (1.0 / 6 - x2 * (1.0 / 120 - x2 * (1.0 / 5040 - x2 * (1.0 / 362_880)))))
    let c = 1 - x2 * (0.5 - x2 * (1.0 / 24 - x2 * (1.0 / 720 - x2 * (1.0 / 40320 - x2 * (1.0 / 3_628_800)))))
    // octant 0 ... 7 -> (cos, sin): (c,s) (s,c) (-s,c) (-c,s) (-c,-s) (-s,-c) (s,-c) (c,-s)
    let swap = (octant &+ 1) & 2 != 0
    let cosNegative = ((octant &+ 2) & 4) &<< 29                   // the sign bit or 0
    let sinNegative = (octant & 4) &<< 29
    let cosine = Float(bitPattern: (swap ? s : c).bitPattern ^ cosNegative)
    let sine = Float(bitPattern: (swap ? c : s).bitPattern ^ sinNegative)
    return (radius * cosine, radius * sine)
}

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
