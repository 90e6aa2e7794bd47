// Corruption of the input: the "denoising" in denoising autoencoder. The training target is
// always the clean image; only the network's input is corrupted.

/// The kinds of corruption, parsed from the `--noise` flag.
public enum NoiseKind: Equatable, CustomStringConvertible, Sendable {
    /// clamp(x + factor * N(0,1), 0, 1): the reference recipe with factor 0.5.
    case gaussian(factor: Float)
    /// Blind noise levels: each sample's factor drawn uniformly in [low, high], then as `gaussian`,
    /// so that one model serves noise levels it is not told (as DnCNN-B does).
    case gaussianRange(low: Float, high: Float)
    /// Each pixel set to 0 with probability p (Vincent et al.'s masking noise).
    case mask(p: Float)
    /// Each pixel, with probability p, set to 0 or 1 with equal chance.
    case saltPepper(p: Float)
    /// No corruption: a plain autoencoder (useful for evaluation).
    case none

    /// Parses `gaussian:0.5`, `gaussian:0.05-0.3` (a range), `mask:0.25`, `saltpepper:0.1` or
    /// `none`; a missing factor takes the default (0.5 for gaussian, 0.25 for mask, 0.1 for
    /// salt-and-pepper).
    public init(parsing text: String) throws(DAEError) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let name = parts.first?.lowercased() ?? ""
        if ["gaussian", "gauss"].contains(name), parts.count == 2, parts[1].contains("-") {
            let ends = parts[1].split(separator: "-", omittingEmptySubsequences: false).map { Float($0) }
            guard ends.count == 2, let low = ends[0], let high = ends[1], low.isFinite, high.isFinite else {
                throw DAEError.badFlag("--noise", "'\(parts[1])' is not a range LO-HI of two numbers in '\(text)'")
            }
            guard low >= 0, low < high else {
                throw DAEError.badFlag("--noise", "a gaussian range needs 0 <= LO < HI, got \(low)-\(high)")
            }
            self = .gaussianRange(low: low, high: high)
            return
        }
        var value: Float? = nil
        if parts.count == 2 {
            guard let v = Float(parts[1]), v.isFinite else {
                throw DAEError.badFlag("--noise", "'\(parts[1])' is not a number in '\(text)'")
            }
            value = v
        }
        switch name {
        case "gaussian", "gauss":
            let f = value ?? 0.5
            guard f >= 0 else { throw DAEError.badFlag("--noise", "gaussian factor must be >= 0, got \(f)") }
            self = .gaussian(factor: f)
        case "mask", "masking":
            let p = value ?? 0.25
            guard (0...1).contains(p) else { throw DAEError.badFlag("--noise", "mask probability must be in [0,1], got \(p)") }
            self = .mask(p: p)
        case "saltpepper", "salt-pepper", "sp":
            let p = value ?? 0.1
            guard (0...1).contains(p) else { throw DAEError.badFlag("--noise", "salt-and-pepper probability must be in [0,1], got \(p)") }
            self = .saltPepper(p: p)
        case "none":
            guard value == nil else { throw DAEError.badFlag("--noise", "'none' takes no factor") }
            self = .none
        default:
            throw DAEError.badFlag("--noise", "unknown noise kind '\(text)'; use gaussian:F, mask:P, saltpepper:P or none")
        }
    }

    public var description: String {
        switch self {
        case .gaussian(let f): return "gaussian:\(f)"
        case .gaussianRange(let low, let high): return "gaussian:\(low)-\(high)"
        case .mask(let p): return "mask:\(p)"
        case .saltPepper(let p): return "saltpepper:\(p)"
        case .none: return "none"
        }
    }

    /// Writes the corrupted copy of `clean` (count pixels) into `noisy`. The random numbers come
    /// from the stream keyed by (seed, epoch, sample index) and nothing else.
    public func corrupt(_ clean: UnsafePointer<Float>, into noisy: UnsafeMutablePointer<Float>, count: Int,
                        seed: UInt64, epoch: Int, sampleIndex: Int, purpose: RandomPurpose = .noise) {
        var rng = RandomStream(seed: seed, purpose: purpose, UInt64(epoch), UInt64(sampleIndex))
        switch self {
        case .none:
            noisy.update(from: clean, count: count)
        case .gaussian(let factor):
            Self.addGaussian(clean, into: noisy, count: count, factor: factor, rng: &rng)
        case .gaussianRange(let low, let high):
            // the sample's level is the stream's first draw; its noise follows from the same stream
            let factor = low + (high - low) * rng.uniform()
            Self.addGaussian(clean, into: noisy, count: count, factor: factor, rng: &rng)
        case .mask(let p):
            for i in 0..<count {
                noisy[i] = rng.uniform() < p ? 0 : clean[i]
            }
        case .saltPepper(let p):
            for i in 0..<count {
                let hit = rng.uniform() < p
                let salt = rng.nextUInt32() & 1 == 1
                noisy[i] = hit ? (salt ? 1 : 0) : clean[i]
            }
        }
    }

    /// noisy = clamp(clean + factor * N(0,1), 0, 1), normals in pairs from `rng`. The stream's
    /// words are first written over `noisy` (a pair's two words sit where its two results go),
    /// then turned into noise in place: no scratch buffer, and Philox runs a whole block at a time.
    static func addGaussian(_ clean: UnsafePointer<Float>, into noisy: UnsafeMutablePointer<Float>, count: Int,
                            factor: Float, rng: inout RandomStream) {
        let words = UnsafeMutableRawPointer(noisy), pairs = count / 2
        rng.fill(words, count: 2 * pairs)
        for p in 0..<pairs {
            let i = 2 * p
            let (z0, z1) = boxMuller(words.load(fromByteOffset: 4 * i, as: UInt32.self),
                                     words.load(fromByteOffset: 4 * i + 4, as: UInt32.self))
            noisy[i] = min(max(clean[i] + factor * z0, 0), 1)
            noisy[i + 1] = min(max(clean[i + 1] + factor * z1, 0), 1)
        }
        if count % 2 == 1 {
            let (z0, _) = rng.normalPair()
            noisy[count - 1] = min(max(clean[count - 1] + factor * z0, 0), 1)
        }
    }
}
