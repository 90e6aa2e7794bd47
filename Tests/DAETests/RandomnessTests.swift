// The counter-based generator, the noise kinds and the epoch permutation: statistics within
// bounds, and the same (seed, epoch, sample index) always giving the same numbers.

import DAE
import Foundation
import XCTest

final class RandomnessTests: XCTestCase {
    func testPhiloxKnownAnswer() {
        // Known-answer vectors of Random123 (kat_vectors: philox4x32 10 rounds).
        let zero = philox4x32(counter: (0, 0, 0, 0), key: (0, 0))
        XCTAssertEqual([zero.0, zero.1, zero.2, zero.3], [0x6627_E8D5, 0xE169_C58D, 0xBC57_AC4C, 0x9B00_DBD8])
        let ones = philox4x32(counter: (0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF), key: (0xFFFF_FFFF, 0xFFFF_FFFF))
        XCTAssertEqual([ones.0, ones.1, ones.2, ones.3], [0x408F_276D, 0x41C8_3B0E, 0xA20B_C7C6, 0x6D54_51FD])
        let pi = philox4x32(counter: (0x243F_6A88, 0x85A3_08D3, 0x1319_8A2E, 0x0370_7344), key: (0xA409_3822, 0x299F_31D0))
        XCTAssertEqual([pi.0, pi.1, pi.2, pi.3], [0xD16C_FE09, 0x94FD_CCEB, 0x5001_E420, 0x2412_6EA1])
    }

    func corrupt(_ kind: NoiseKind, value: Float, count: Int = 100_000, epoch: Int = 1, index: Int = 5) -> [Float] {
        let clean = [Float](repeating: value, count: count)
        var noisy = [Float](repeating: -1, count: count)
        clean.withUnsafeBufferPointer { c in
            noisy.withUnsafeMutableBufferPointer { n in
                kind.corrupt(c.baseAddress!, into: n.baseAddress!, count: count, seed: 42, epoch: epoch, sampleIndex: index)
            }
        }
        return noisy
    }

    func testGaussianNoiseMeanAndVariance() {
        // On a 0.5 image with factor 0.1 clamping never bites (5 sigma): noise = (y - 0.5) / 0.1.
        let z = corrupt(.gaussian(factor: 0.1), value: 0.5).map { Double(($0 - 0.5) / 0.1) }
        let n = Double(z.count)
        let mean = z.reduce(0, +) / n
        let variance = z.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / (n - 1)
        XCTAssertEqual(mean, 0, accuracy: 5 / n.squareRoot())          // 5 standard errors
        XCTAssertEqual(variance, 1, accuracy: 5 * (2 / n).squareRoot())
        let beyond3 = Double(z.filter { abs($0) > 3 }.count) / n        // 0.27% for a normal
        XCTAssertEqual(beyond3, 0.0027, accuracy: 0.0012)
    }

    func testBoxMullerInFloatMatchesTheDoubleFormula() {
        // The Float polynomials against r cos/sin(theta) in Double with libm, on 2^20 random word
        // pairs and on every edge of both reductions: u1 = 1 (radius 0) and its smallest value
        // (the largest radius), every octant boundary and the words next to it.
        var rng = RandomStream(seed: 7, purpose: .noise, 0, 0)
        var pairs: [(UInt32, UInt32)] = (0..<(1 << 20)).map { _ in (rng.nextUInt32(), rng.nextUInt32()) }
        for octant: UInt32 in 0..<8 {
            for offset: Int64 in [-1, 0, 1] {
                let angle = UInt32(truncatingIfNeeded: (Int64(octant) << 21 + offset) & 0xFF_FFFF) << 8
                for a: UInt32 in [0, 0xFFFF_FFFF, 0x8000_0000, 0xFF, 0x1234_5678] { pairs.append((a, angle | 0xFF)) }
            }
        }
        var worst = 0.0
        for (a, b) in pairs {
            let u1 = Double((a >> 8) + 1) / 16_777_216, u2 = Double(b >> 8) / 16_777_216
            let r = (-2 * log(u1)).squareRoot(), theta = 2 * Double.pi * u2
            let (z0, z1) = boxMuller(a, b)
            // measured 1.8e-7: about 3 units in the last place of a radius near 5
            let error = max(abs(Double(z0) - r * cos(theta)), abs(Double(z1) - r * sin(theta))) / max(r, 1)
            worst = max(worst, error)
        }
        XCTAssertLessThan(worst, 3e-7, "largest error, relative to max(radius, 1)")
        XCTAssertEqual(boxMuller(0xFFFF_FFFF, 0).0, 0)                    // u1 = 1: radius 0
        XCTAssertEqual(Double(boxMuller(0, 0).0), (48 * log(2.0)).squareRoot(), accuracy: 1e-6)
    }

    func testGaussianNoiseFilledInBlocksEqualsPairByPair() {
        // corrupt() writes the stream's words over its output in whole Philox blocks, then turns
        // them into noise; the result must be the one normalPair() gives pair by pair, for even
        // and odd lengths and after the blind level's first draw has used part of a block.
        for count in [1, 2, 3, 7, 8, 784, 785] {
            for (kind, levelDrawn) in [(NoiseKind.gaussian(factor: 0.3), false), (.gaussianRange(low: 0.1, high: 0.2), true)] {
                var rng = RandomStream(seed: 42, purpose: .noise, 1, 5)
                var factor: Float = 0.3
                if levelDrawn { factor = 0.1 + 0.1 * rng.uniform() }
                var expected = [Float](repeating: 0, count: count)
                var i = 0
                while i < count {
                    let (z0, z1) = rng.normalPair()
                    expected[i] = min(max(0.5 + factor * z0, 0), 1)
                    if i + 1 < count { expected[i + 1] = min(max(0.5 + factor * z1, 0), 1) }
                    i += 2
                }
                XCTAssertEqual(corrupt(kind, value: 0.5, count: count), expected, "\(kind), \(count) values")
            }
        }
    }

    func testGaussianNoiseIsClamped() {
        let y = corrupt(.gaussian(factor: 0.5), value: 1)
        XCTAssertEqual(y.max(), 1)
        XCTAssertGreaterThanOrEqual(y.min()!, 0)
        // about half the draws are positive and clamp to exactly 1
        XCTAssertEqual(Double(y.filter { $0 == 1 }.count) / Double(y.count), 0.5, accuracy: 0.01)
    }

    func testBlindGaussianLevelsStayInTheirRangeAndVaryBySample() {
        // each sample's noise is gaussian with one level drawn in [0.05, 0.15]: measured on a 0.5
        // image (clamping never bites at 0.15 * 3.3 sigma), the level is the noise's deviation
        var levels: [Double] = []
        for index in 0..<40 {
            let z = corrupt(.gaussianRange(low: 0.05, high: 0.15), value: 0.5, count: 20_000, index: index).map { Double($0 - 0.5) }
            let level = (z.map { $0 * $0 }.reduce(0, +) / Double(z.count)).squareRoot()
            XCTAssertGreaterThan(level, 0.05 * 0.97, "sample \(index)")
            XCTAssertLessThan(level, 0.15 * 1.03, "sample \(index)")
            levels.append(level)
        }
        // the levels spread over the range: uniform on [0.05, 0.15] has a standard deviation of 0.029
        let mean = levels.reduce(0, +) / Double(levels.count)
        let spread = (levels.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(levels.count - 1)).squareRoot()
        XCTAssertEqual(mean, 0.10, accuracy: 0.02)
        XCTAssertEqual(spread, 0.029, accuracy: 0.012)
    }

    func testMaskingRate() {
        let y = corrupt(.mask(p: 0.25), value: 0.7)
        let rate = Double(y.filter { $0 == 0 }.count) / Double(y.count)
        XCTAssertEqual(rate, 0.25, accuracy: 5 * (0.25 * 0.75 / Double(y.count)).squareRoot())
        XCTAssertTrue(y.allSatisfy { $0 == 0 || $0 == 0.7 })
    }

    func testSaltAndPepper() {
        let y = corrupt(.saltPepper(p: 0.2), value: 0.5)
        let salt = Double(y.filter { $0 == 1 }.count) / Double(y.count)
        let pepper = Double(y.filter { $0 == 0 }.count) / Double(y.count)
        XCTAssertEqual(salt, 0.1, accuracy: 0.005)
        XCTAssertEqual(pepper, 0.1, accuracy: 0.005)
    }

    func testNoiseIsAFunctionOfSeedEpochAndIndexOnly() {
        for kind in [NoiseKind.gaussian(factor: 0.5), .gaussianRange(low: 0.1, high: 0.4), .mask(p: 0.3), .saltPepper(p: 0.1)] {
            XCTAssertEqual(corrupt(kind, value: 0.5, count: 784), corrupt(kind, value: 0.5, count: 784), "\(kind)")
            XCTAssertNotEqual(corrupt(kind, value: 0.5, count: 784), corrupt(kind, value: 0.5, count: 784, epoch: 2), "\(kind)")
            XCTAssertNotEqual(corrupt(kind, value: 0.5, count: 784), corrupt(kind, value: 0.5, count: 784, index: 6), "\(kind)")
        }
        XCTAssertEqual(corrupt(.none, value: 0.3, count: 10), [Float](repeating: 0.3, count: 10))
    }

    func testNoiseParsing() throws {
        XCTAssertEqual(try NoiseKind(parsing: "gaussian:0.5"), .gaussian(factor: 0.5))
        XCTAssertEqual(try NoiseKind(parsing: "mask:0.25"), .mask(p: 0.25))
        XCTAssertEqual(try NoiseKind(parsing: "saltpepper:0.1"), .saltPepper(p: 0.1))
        XCTAssertEqual(try NoiseKind(parsing: "none"), NoiseKind.none)
        XCTAssertEqual(try NoiseKind(parsing: "gaussian:0.05-0.3"), .gaussianRange(low: 0.05, high: 0.3))
        XCTAssertEqual(try NoiseKind(parsing: NoiseKind.gaussianRange(low: 0.05, high: 0.3).description), .gaussianRange(low: 0.05, high: 0.3))
        for bad in ["speckle:0.1", "mask:1.5", "mask:-0.1", "gaussian:-1", "gaussian:abc", "saltpepper:2", "", "none:1",
                    "gaussian:0.3-0.1", "gaussian:0.1-0.1", "gaussian:0.1-", "gaussian:-0.1-0.2", "gaussian:0.1-0.2-0.3", "gaussian:a-b"] {
            XCTAssertThrowsError(try NoiseKind(parsing: bad), bad) { XCTAssertTrue("\($0)".hasPrefix("--noise:"), "\($0)") }
        }
    }

    func testEpochPermutation() {
        var a: [Int32] = [], b: [Int32] = [], c: [Int32] = []
        epochPermutation(count: 1000, seed: 0, epoch: 1, into: &a)
        epochPermutation(count: 1000, seed: 0, epoch: 1, into: &b)
        epochPermutation(count: 1000, seed: 0, epoch: 2, into: &c)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
        XCTAssertEqual(a.sorted(), (0..<1000).map(Int32.init))
        XCTAssertNotEqual(a, (0..<1000).map(Int32.init))
    }

    func testUniformIntegersAreUnbiased() {
        var rng = RandomStream(seed: 1, purpose: .shuffle, 0)
        var counts = [Int](repeating: 0, count: 3)
        for _ in 0..<30_000 { counts[Int(rng.below(3))] += 1 }
        for c in counts { XCTAssertEqual(Double(c), 10_000, accuracy: 400) }
    }

    func testInitializationBoundsFollowPyTorch() {
        let model = ConvDenoiser(height: 28, width: 28, capacity: 1)
        model.initialize(seed: 0)
        // bound = 1/sqrt(fan_in): conv1 9, conv2 288, deconv1 32*4 (out channels * kernel area), deconv2 1*4
        let expected: [String: Float] = ["encoder.0": 1 / 3, "encoder.3": 1 / Float(288).squareRoot(),
                                         "decoder.0": 1 / Float(128).squareRoot(), "decoder.2": 0.5]
        for slot in model.layout.slots {
            let bound = expected[String(slot.name.split(separator: ".").prefix(2).joined(separator: "."))]!
            let values = Array(UnsafeBufferPointer(start: model.params.pointer + slot.offset, count: slot.count))
            XCTAssertLessThanOrEqual(values.map(abs).max()!, bound, slot.name)
            if slot.count > 100 { XCTAssertGreaterThan(values.map(abs).max()!, 0.9 * bound, slot.name) }
        }
    }
}
