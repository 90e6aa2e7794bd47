// Training on patches: each epoch's order visits the images evenly, a crop and its flip are the
// pixels they claim to be, evaluation crops never move, and training on crops of images of mixed
// sizes keeps the guarantees of whole images (threads do not change the bits, resume is exact).

import DAE
import Foundation
import XCTest

final class PatchTests: XCTestCase {
    /// `count` RGB images of mixed sizes (12x16, 20x12, 16x16, ...) with pixels that tell their
    /// image, channel, row and column apart.
    static func mixedImages(count: Int) -> Dataset {
        let sizes = [(12, 16), (20, 12), (16, 16), (24, 20)]
        var pixels: [UInt8] = [], shapes: [(height: Int, width: Int)] = []
        for i in 0..<count {
            let (h, w) = sizes[i % sizes.count]
            shapes.append((h, w))
            for c in 0..<3 { for y in 0..<h { for x in 0..<w { pixels.append(UInt8((i * 37 + c * 71 + y * 11 + x * 3) % 256)) } } }
        }
        return Dataset(channels: 3, sizes: shapes, pixels: pixels, labels: [UInt8](repeating: 0, count: count), source: "mixed",
                       names: (0..<count).map { "image\($0).png" })
    }

    func testEpochOrderVisitsEveryImageEvenly() {
        let data = Self.mixedImages(count: 10)
        let samples = TrainingSamples(data: data, patches: PatchSampling(size: 8, perEpoch: 25), seed: 3)
        var order: [Int32] = []
        samples.epochOrder(epoch: 2, into: &order)
        XCTAssertEqual(order.count, 25)
        var counts = [Int](repeating: 0, count: 10)
        for i in order { counts[Int(i)] += 1 }
        XCTAssertEqual(counts.filter { $0 == 2 }.count, 5)   // two full rounds, then 5 of a third
        XCTAssertEqual(counts.filter { $0 == 3 }.count, 5)
        // the first round is the epoch's plain permutation, as for whole images
        var permutation: [Int32] = []
        epochPermutation(count: 10, seed: 3, epoch: 2, into: &permutation)
        XCTAssertEqual(Array(order[0..<10]), permutation)
        // another epoch, another order
        var next: [Int32] = []
        samples.epochOrder(epoch: 3, into: &next)
        XCTAssertNotEqual(order, next)
        XCTAssertEqual(PatchSampling(size: 8).samplesPerEpoch(images: 10), 10_000)
        XCTAssertEqual(PatchSampling(size: 8).samplesPerEpoch(images: 20_000), 20_000)
    }

    /// The crop of image `image` at (top, left), rows flipped, columns flipped, then transposed,
    /// computed the plain way from the dataset's bytes.
    func expectedCrop(_ data: Dataset, image: Int, top: Int, left: Int, size: Int, symmetry: Int) -> [Float] {
        let shape = data.shape(image), plane = shape.height * shape.width
        var out: [Float] = []
        for c in 0..<data.channels {
            var m: [[Float]] = (0..<size).map { y in
                (0..<size).map { x in Float(data.pixels[shape.offset + c * plane + (top + y) * shape.width + left + x]) / 255 }
            }
            if symmetry & 2 != 0 { m.reverse() }
            if symmetry & 1 != 0 { m = m.map { Array($0.reversed()) } }
            if symmetry & 4 != 0 { m = (0..<size).map { y in (0..<size).map { x in m[x][y] } } }
            out += m.flatMap { $0 }
        }
        return out
    }

    func testCropsAndFlipsAreThePixelsTheyClaim() {
        let data = Self.mixedImages(count: 4)
        let size = 8
        var seen = Set<Int>()
        for flips in [false, true] {
            let samples = TrainingSamples(data: data, patches: PatchSampling(size: size, perEpoch: 100, flips: flips), seed: 5)
            var out = [Float](repeating: -1, count: samples.sampleSize)
            for position in 0..<100 {
                let image = position % 4
                samples.fill(position: position, image: image, epoch: 1, into: &out)
                // the draws the sampler makes, in its order: top, left, then the symmetry
                var stream = RandomStream(seed: 5, purpose: .patch, 1, UInt64(position))
                let shape = data.shape(image)
                let top = Int(stream.below(UInt32(shape.height - size + 1))), left = Int(stream.below(UInt32(shape.width - size + 1)))
                let symmetry = flips ? Int(stream.below(8)) : 0
                if flips { seen.insert(symmetry) }
                XCTAssertEqual(out, expectedCrop(data, image: image, top: top, left: left, size: size, symmetry: symmetry),
                               "position \(position), flips \(flips)")
            }
        }
        XCTAssertEqual(seen.count, 8)     // every symmetry of the square turns up
    }

    func testEvaluationCropsAreFixed() {
        let data = Self.mixedImages(count: 3)
        let a = data.fixedCrops(size: 8, count: 7), b = data.fixedCrops(size: 8, count: 7)
        XCTAssertEqual(a.pixels, b.pixels)
        XCTAssertEqual(a.count, 7)
        XCTAssertEqual(a.channels, 3)
        XCTAssertEqual(a.height, 8)
        XCTAssertEqual(a.width, 8)
        // crop k is of image k % 3, at the corner drawn from the stream of (seed 0, epoch 0, k)
        var image = [Float](repeating: 0, count: 3 * 64)
        a.image(4, into: &image)
        var stream = RandomStream(seed: 0, purpose: .patch, 0, 4)
        let shape = data.shape(1)
        let top = Int(stream.below(UInt32(shape.height - 7))), left = Int(stream.below(UInt32(shape.width - 7)))
        XCTAssertEqual(image, expectedCrop(data, image: 1, top: top, left: left, size: 8, symmetry: 0))
    }

    func testImagesSmallerThanThePatchOrMixedSizesWithoutPatchesAreNamed() {
        let data = Self.mixedImages(count: 4)
        XCTAssertThrowsError(try TrainingSamples(data: data, patches: PatchSampling(size: 16), seed: 0).check()) { error in
            XCTAssertEqual("\(error)", "mixed: image0.png is 12x16, smaller than --patch 16; use a smaller --patch or remove the image")
        }
        XCTAssertThrowsError(try TrainingSamples(data: data, patches: nil, seed: 0).check()) { error in
            XCTAssertTrue("\(error)".contains("image0.png") && "\(error)".contains("image1.png"), "\(error)")
            XCTAssertTrue("\(error)".contains("--patch"), "\(error)")
        }
        XCTAssertThrowsError(try PatchSampling(size: 10).validate(sideMultiple: 4)) { error in
            XCTAssertEqual("\(error)", "--patch: 10 must be a multiple of 4 (the model's pooling) from 4 to 4096")
        }
        XCTAssertThrowsError(try PatchSampling(size: 8, perEpoch: 0).validate(sideMultiple: 4)) { error in
            XCTAssertTrue("\(error)".hasPrefix("--patches-per-epoch: "), "\(error)")
        }
    }

    var patchConfig: TrainConfig {
        var config = TrainConfig(model: .conv(ConvSpec(channels: 3, widths: [4, 8])))
        config.patches = PatchSampling(size: 8, perEpoch: 60, flips: true)
        config.epochs = 2
        config.batchSize = 20
        config.noise = .gaussianRange(low: 0.05, high: 0.3)
        return config
    }

    func testThreadsDoNotChangeTheBitsOnPatches() throws {
        let data = Self.mixedImages(count: 9)
        var results: [[Float]] = []
        for threads in [1, 3] {
            let run = try makeRun(patchConfig, data: data, threads: threads)
            XCTAssertEqual(try run.run(), .finished)
            results.append(run.trainer.params.array)
        }
        XCTAssertEqual(results[0], results[1])
    }

    func testResumeOnPatchesIsBitwiseExact() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = Self.mixedImages(count: 9)
        let straight = try makeRun(patchConfig, data: data)
        XCTAssertEqual(try straight.run(), .finished)
        let stopped = try makeRun(patchConfig, data: data, directory: dir, stopAfter: 4)   // 3 steps an epoch
        XCTAssertEqual(try stopped.run(), .stopped)
        let resumed = try makeRun(patchConfig, data: data, directory: dir, resume: .auto)
        XCTAssertEqual(try resumed.run(), .finished)
        XCTAssertEqual(resumed.trainer.params.array, straight.trainer.params.array)
        // another patch size is another training problem: refused by name
        var other = patchConfig
        other.patches?.size = 4
        XCTAssertThrowsError(try makeRun(other, data: data, directory: dir, resume: .auto).run()) { error in
            XCTAssertTrue("\(error)".hasPrefix("--patch: the checkpoint"), "\(error)")
        }
    }
}
