// Denoising in tiles: the same result as the whole image at once, for any tile side the model
// accepts, across images of different sizes in one batch; bad tile sides refused.

@testable import DAE
import XCTest

final class TilingTests: XCTestCase {
    /// A randomly initialised convolutional model's parameters.
    func convParameters(seed: UInt64 = 1) -> FloatBuffer {
        let params = FloatBuffer(count: ConvDenoiser.makeLayout().count)
        initializeParameters(params, layout: ConvDenoiser.makeLayout(), seed: seed)
        return params
    }

    /// A tile side larger than every test image: the whole padded image is one tile.
    let whole = 256

    func denoise(_ values: [Float], count: Int = 1, height: Int, width: Int, tile: Int, params: FloatBuffer,
                 geometry: TileGeometry = .conv, batch: Int = ImageDenoiser.defaultBatch) throws -> [Float] {
        let denoiser = try ImageDenoiser(model: .reference, params: params, geometry: geometry, tile: tile)
        var out = [Float](repeating: .nan, count: values.count)
        denoiser.denoise(values, count: count, height: height, width: width, into: &out, batch: batch)
        return out
    }

    func worstDifference(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        return zip(a, b).map { abs($0 - $1) }.max()!
    }

    func testTiledEqualsWholeImageForSeveralTileSidesAndOddSizes() throws {
        let params = convParameters()
        // (count, height, width): odd sides padded on the right and bottom; sides between tiles;
        // one side smaller than the tiles; an image smaller than every tile
        for (count, h, w) in [(1, 70, 93), (2, 37, 50), (1, 20, 150), (1, 10, 13)] {
            let images = randomArray(count * h * w, seed: UInt64(h * w)).map { ($0 + 1) / 2 }
            let reference = try denoise(images, count: count, height: h, width: w, tile: whole, params: params)
            XCTAssertFalse(reference.contains { $0.isNaN }, "every pixel written")
            for tile in [12, 16, 24, 32] {
                for batch in [1, 5, 50] {
                    let tiled = try denoise(images, count: count, height: h, width: w, tile: tile, params: params, batch: batch)
                    XCTAssertLessThanOrEqual(worstDifference(tiled, reference), 1e-5, "\(count)x\(h)x\(w), tile \(tile), batch \(batch)")
                }
            }
        }
    }

    /// The U-Net too, with tile batches that do not fill the network (its skips are read where a
    /// batch smaller than the network's capacity puts them).
    func testTiledUNetEqualsWholeImage() throws {
        let model = ModelSpec.unet(UNetSpec(channels: 1, widths: [2, 3]))
        let layout = model.makeLayout(), params = FloatBuffer(count: layout.count)
        initializeParameters(params, layout: layout, seed: 2)
        let (h, w) = (30, 41)
        let images = randomArray(h * w, seed: 8).map { ($0 + 1) / 2 }
        func run(tile: Int, batch: Int) throws -> [Float] {
            let denoiser = try ImageDenoiser(model: model, params: params, geometry: TileGeometry(model: model), tile: tile)
            var out = [Float](repeating: .nan, count: images.count)
            denoiser.denoise(images, count: 1, height: h, width: w, into: &out, batch: batch)
            return out
        }
        let reference = try run(tile: whole, batch: 1)
        for tile in [20, 24] {
            for batch in [3, 5] {
                XCTAssertLessThanOrEqual(worstDifference(try run(tile: tile, batch: batch), reference), 1e-5, "tile \(tile), batch \(batch)")
            }
        }
    }

    /// The margin matters: without the halo the tiled result differs from the whole image's.
    func testTooSmallAHaloGivesAnotherResult() throws {
        let params = convParameters()
        let (h, w) = (70, 93)
        let images = randomArray(h * w, seed: 3).map { ($0 + 1) / 2 }
        let reference = try denoise(images, height: h, width: w, tile: whole, params: params)
        let conv = TileGeometry.conv
        let noHalo = TileGeometry(channels: 1, sideMultiple: 4, halo: 0, arenaBytesPerPixel: conv.arenaBytesPerPixel)
        XCTAssertGreaterThan(worstDifference(try denoise(images, height: h, width: w, tile: 16, params: params, geometry: noHalo), reference), 1e-3)
    }

    /// The halo of TileGeometry.conv: a change to one input pixel reaches only the 4x4 output
    /// blocks within 3 pixels of it, and pixels up to 6 away.
    func testOneInputPixelReachesTheBlocksWithinTheHalo() throws {
        let params = convParameters()
        let (h, w) = (32, 32)
        var images = randomArray(h * w, seed: 4).map { ($0 + 1) / 2 }
        let before = try denoise(images, height: h, width: w, tile: whole, params: params)
        images[13 * w + 13] += 5
        let after = try denoise(images, height: h, width: w, tile: whole, params: params)
        // blocks 4q ... 4q+3 read pixels 4q-3 ... 4q+6: pixel 13 is read by blocks 2, 3, 4, rows 8 ... 19
        var changed: [(y: Int, x: Int)] = []
        for y in 0..<h { for x in 0..<w where before[y * w + x] != after[y * w + x] { changed.append((y, x)) } }
        XCTAssertFalse(changed.isEmpty)
        XCTAssertTrue(changed.allSatisfy { (8...19).contains($0.y) && (8...19).contains($0.x) }, "\(changed)")
        XCTAssertTrue(changed.contains { $0.y == 19 || $0.x == 19 }, "a pixel 6 away changes")
    }

    func testBadTileSidesAreRefusedInOneLine() {
        for tile in [10, 8, 4, 0, -4, 30] {
            XCTAssertThrowsError(try ImageDenoiser(model: .reference, params: convParameters(), geometry: .conv, tile: tile), "\(tile)") { error in
                XCTAssertEqual("\(error)", "--tile: \(tile) must be a multiple of 4 larger than 8 (the model needs 4 pixels of context on each side of a tile)")
            }
        }
        XCTAssertEqual(try ImageDenoiser(model: .reference, params: convParameters(), geometry: .conv, tile: 12).tile, 12)
        XCTAssertEqual(ImageDenoiser(model: .reference, params: convParameters()).tile, 472, "the largest tile within 256 MiB at 1188 bytes a pixel")
        // per pixel of the image: input 1, col1 9, a1 32, p1 8, conv2's Winograd workspace
        // 4 * (2 * 32 + 64) / 4 = 128, a2 16, code 4, col3 8, a3 8, col4 1, y 1, dY 1, dA3 8, dCode 4,
        // dA2 16, dP1 8, dA1 32 floats; 8 + 4 pool indices
        XCTAssertEqual(TileGeometry.conv.arenaBytesPerPixel, 285 * 4 + 12 * 4)
    }

    /// Images of different sizes share forwards (batches of 7 tiles straddle them) and each
    /// comes out as it does alone.
    func testTilesOfImagesOfDifferentSizesInOneBatch() throws {
        let params = convParameters()
        let sizes = [(1, 70, 93), (2, 45, 61), (1, 10, 13)]
        let images = sizes.enumerated().map { k, s in
            ImagePlanes(count: s.0, height: s.1, width: s.2, values: randomArray(s.0 * s.1 * s.2, seed: UInt64(10 + k)).map { ($0 + 1) / 2 })
        }
        let denoiser = try ImageDenoiser(model: .reference, params: params, geometry: .conv, tile: 24)
        let outputs = denoiser.denoise(images, batch: 7)
        XCTAssertEqual(outputs.map { [$0.count, $0.height, $0.width] }, sizes.map { [$0.0, $0.1, $0.2] })
        for (image, output) in zip(images, outputs) {
            let alone = try denoise(image.values, count: image.count, height: image.height, width: image.width, tile: whole, params: params)
            XCTAssertLessThanOrEqual(worstDifference(output.values, alone), 1e-5, "\(image.height)x\(image.width)")
        }
        XCTAssertEqual(denoiser.denoise([ImagePlanes]()), [ImagePlanes]())
    }

    /// The stacked model still takes whole images of its size, in batches.
    func testStackedModelDenoisesWholeImages() {
        let spec = StackedSpec(inputSize: 28 * 28, hidden: [16, 8])
        let params = FloatBuffer(count: StackedDenoiser.makeLayout(spec).count)
        initializeParameters(params, layout: StackedDenoiser.makeLayout(spec), seed: 5)
        let images = randomArray(3 * 784, seed: 6).map { ($0 + 1) / 2 }
        let denoiser = ImageDenoiser(model: .stacked(spec), params: params)
        XCTAssertNil(denoiser.tile)
        var out = [Float](repeating: .nan, count: images.count)
        denoiser.denoise(images, count: 3, height: 28, width: 28, into: &out, batch: 2)
        let network = ModelSpec.stacked(spec).makeImageAutoencoder(height: 28, width: 28, capacity: 3, parameters: params)
        network.input.update(from: images, count: images.count)
        network.forward(n: 3)
        XCTAssertEqual(out, Array(UnsafeBufferPointer(start: network.output, count: images.count)))
    }

    func testMemoryEstimateIsBoundedByTheTileBatch() throws {
        let denoiser = ImageDenoiser(model: .reference, params: convParameters())
        let planes = 2 * 4000 * 3000 * 4, grads = ConvDenoiser.makeLayout().count * 4
        // one 472 x 472 tile per forward: its arena, within the budget
        XCTAssertEqual(denoiser.memoryEstimate(height: 3000, width: 4000), planes + grads + 472 * 472 * 1188)
        XCTAssertLessThanOrEqual(denoiser.memoryEstimate(height: 3000, width: 4000) - planes, ImageDenoiser.memoryBudget + grads)
        // a 28 x 28 image is one tile of its own size
        XCTAssertEqual(denoiser.memoryEstimate(height: 28, width: 28), 2 * 784 * 4 + grads + 784 * 1188)
        // small tiles: as many per forward as the batch allows
        let small = try ImageDenoiser(model: .reference, params: convParameters(), geometry: .conv, tile: 32)
        XCTAssertEqual(small.memoryEstimate(height: 3000, width: 4000), planes + grads + 50 * 32 * 32 * 1188)
    }

    /// A tile whose network would not fit in the memory it may use is refused with the largest
    /// that fits, before anything is allocated; a side of 10^8, whose bytes overflow Int, too.
    func testTileBeyondTheMemoryLimitIsRefusedWithTheLargestThatFits() throws {
        let limit = 1 << 30, bytes = TileGeometry.conv.arenaBytesPerPixel
        let largest = ImageDenoiser.largestTile(.conv, memory: limit)
        XCTAssertEqual(largest % 4, 0)
        XCTAssertLessThanOrEqual(largest * largest * bytes, limit)
        XCTAssertGreaterThan((largest + 4) * (largest + 4) * bytes, limit)
        XCTAssertEqual(try ImageDenoiser(model: .reference, params: convParameters(), geometry: .conv, tile: largest, memoryLimit: limit).tile, largest)
        for tile in [largest + 4, 100_000_000] {
            XCTAssertThrowsError(try ImageDenoiser(model: .reference, params: convParameters(), geometry: .conv, tile: tile, memoryLimit: limit)) { error in
                XCTAssertTrue("\(error)".hasPrefix("--tile: \(tile) needs "), "\(error)")
                XCTAssertTrue("\(error)".contains("the largest tile that fits is \(largest) (the default is 472)"), "\(error)")
            }
        }
        // the default side is the largest within the default budget
        XCTAssertEqual(ImageDenoiser.defaultTile(.conv), ImageDenoiser.largestTile(.conv, memory: ImageDenoiser.memoryBudget))
    }
}
