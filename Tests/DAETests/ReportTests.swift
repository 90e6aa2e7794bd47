// Rank 0's outputs: image metrics on hand-computed cases, the PNG and grid layout (decoded back
// with libpng), TensorBoard's record framing, the metrics log across a resume, and evaluation
// that does not depend on the thread count.

import DAE
import Foundation
import XCTest

final class ReportTests: XCTestCase {
    func testMetricsOnHandComputedCases() {
        let n = 28 * 28
        let a = [Float](repeating: 0.5, count: n), b = [Float](repeating: 0.25, count: n)
        let scratch = UnsafeMutablePointer<Double>.allocate(capacity: 5 * n)
        defer { scratch.deallocate() }
        // identical images
        XCTAssertEqual(ImageMetrics.mse(a, a, count: n), 0)
        XCTAssertEqual(ImageMetrics.psnr(mse: 0), 100)
        XCTAssertEqual(ImageMetrics.ssim(a, a, height: 28, width: 28, scratch: scratch), 1, accuracy: 1e-12)
        // constant 0.5 vs constant 0.25: MSE 0.0625, PSNR 10 log10(16) = 12.0412 dB, and with no
        // variance SSIM = (2 * 0.5 * 0.25 + C1) / (0.25 + 0.0625 + C1)
        XCTAssertEqual(ImageMetrics.mse(a, b, count: n), 0.0625, accuracy: 1e-15)
        XCTAssertEqual(ImageMetrics.psnr(mse: 0.0625), 12.041199826559248, accuracy: 1e-12)
        let c1 = 0.0001
        XCTAssertEqual(ImageMetrics.ssim(a, b, height: 28, width: 28, scratch: scratch), (0.25 + c1) / (0.3125 + c1), accuracy: 1e-9)
        // an image against its negative has negative structure correlation
        let ramp = (0..<n).map { Float($0 % 28) / 27 }, inverse = ramp.map { 1 - $0 }
        XCTAssertLessThan(ImageMetrics.ssim(ramp, inverse, height: 28, width: 28, scratch: scratch), 0)
    }

    /// Checks the PNG signature, then decodes with libpng (`PNG.decode`).
    func decodePNG(_ bytes: [UInt8]) throws -> GrayImage {
        XCTAssertEqual(Array(bytes.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        return try PNG.decode(bytes, path: "test.png")
    }

    func testPNGRoundTrip() throws {
        let image = GrayImage(width: 5, height: 3, pixels: (0..<15).map { UInt8($0 * 17) })
        let png = PNG.encode(image)
        XCTAssertEqual(try decodePNG(png), image)
        // real deflate, not stored blocks: a flat image compresses far below its size
        XCTAssertLessThan(PNG.encode(GrayImage(width: 300, height: 300, pixels: [UInt8](repeating: 7, count: 90_000))).count, 1_000)
    }

    func testGridGeometryAndRoundingFollowTorchvision() throws {
        for (count, columns, width, height) in [(30, 10, 302, 92), (7, 10, 212, 32), (1, 10, 32, 32), (11, 4, 122, 92)] {
            let images = (0..<count).map { k in [Float](repeating: Float(k + 1) / Float(count), count: 28 * 28) }
            let grid = Grid.make(images, height: 28, width: 28, columns: columns)
            XCTAssertEqual([grid.width, grid.height], [width, height], "\(count) images in \(columns) columns")
            XCTAssertEqual(try decodePNG(PNG.encode(grid)).pixels, grid.pixels)
            // image k's top-left pixel sits at (2 + row * 30, 2 + column * 30); padding is 0
            let xmaps = min(columns, count)
            for k in 0..<count {
                let top = 2 + (k / xmaps) * 30, left = 2 + (k % xmaps) * 30
                XCTAssertEqual(grid.pixels[top * grid.width + left], UInt8(min(max(Float(k + 1) / Float(count) * 255 + 0.5, 0), 255)))
                XCTAssertEqual(grid.pixels[(top - 1) * grid.width + left], 0)
            }
        }
        // save_image's rounding: x*255 + 0.5, clamped, truncated
        let grid = Grid.make([[0, 0.5, 1, 1.5, -0.2, 0.002, 0.998, 0.5]], height: 2, width: 4, columns: 1)
        let row0 = Array(grid.pixels[(2 * grid.width + 2)..<(2 * grid.width + 6)])
        let row1 = Array(grid.pixels[(3 * grid.width + 2)..<(3 * grid.width + 6)])
        XCTAssertEqual(row0, [0, 128, 255, 255])
        XCTAssertEqual(row1, [0, 1, 254, 128])
    }

    func testCRC32CKnownAnswer() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([]), 0)
    }

    func testTensorBoardRecordsAreFramedAndChecksummed() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let writer = try TensorBoardWriter(directory: dir)
        try writer.scalar("train/loss", 0.25, step: 3)
        try writer.sessionStart(step: 4)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: writer.path)))
        var i = 0, records = 0
        func le32(_ k: Int) -> UInt32 { UInt32(bytes[k]) | UInt32(bytes[k + 1]) << 8 | UInt32(bytes[k + 2]) << 16 | UInt32(bytes[k + 3]) << 24 }
        while i < bytes.count {
            var length = 0
            for k in 0..<8 { length |= Int(bytes[i + k]) << (8 * k) }
            XCTAssertEqual(le32(i + 8), CRC32C.masked(Array(bytes[i..<(i + 8)])))
            let data = Array(bytes[(i + 12)..<(i + 12 + length)])
            XCTAssertEqual(le32(i + 12 + length), CRC32C.masked(data))
            if records == 0 { XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("brain.Event:2")) }
            if records == 1 {
                XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("train/loss"))
                XCTAssertTrue(data.contains(0x10) && data.contains(3))                  // step = 3 (field 2, varint)
                let value = Float(0.25).bitPattern
                XCTAssertEqual(Array(data.suffix(4)), [UInt8(value & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value >> 16 & 0xFF), UInt8(value >> 24)])
            }
            records += 1
            i += 16 + length
        }
        XCTAssertEqual(records, 3)
        XCTAssertEqual(i, bytes.count)
    }

    func testMetricsLogDropsLinesAfterTheResumeStep() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/metrics.jsonl"
        let first = try MetricsLog(path: path, keepThrough: nil)
        for step in 1...10 { try first.append(MetricsRecord(kind: .train, epoch: 1, step: step, trainLoss: Double(step))) }
        // the run died after step 10, its last checkpoint was at step 6
        let resumed = try MetricsLog(path: path, keepThrough: 6)
        XCTAssertEqual(resumed.records.map(\.step), Array(1...6))
        for step in 7...12 { try resumed.append(MetricsRecord(kind: .train, epoch: 1, step: step, trainLoss: Double(step))) }
        let lines = String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self).split(separator: "\n")
        let steps = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["step"] as? Int }
        XCTAssertEqual(steps, Array(1...12))
        // a fresh run replaces the old file
        _ = try MetricsLog(path: path, keepThrough: nil)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)).count, 0)
    }

    func testRecordsAreTypedJSON() throws {
        // numbers as JSON numbers, snake_case keys, absent optionals left out
        let eval = EvalMetrics(images: 2, mse: 0.5, psnr: 3, ssim: 0.25, noisyMSE: 1, noisyPSNR: 0, noisySSIM: 0.125)
        let record = MetricsRecord(kind: .epoch, epoch: 2, step: 40, trainLoss: 0.5, eval: eval, samplesPerSecond: 100)
        XCTAssertEqual(jsonLine(record), #"{"epoch":2,"eval":{"images":2,"mse":0.5,"noisy_mse":1,"noisy_psnr":0,"noisy_ssim":0.125,"psnr":3,"ssim":0.25},"kind":"epoch","samples_per_s":100,"step":40,"train_loss":0.5}"#)
        XCTAssertEqual(try JSONDecoder().decode(MetricsRecord.self, from: Data(jsonLine(record).utf8)), record)
    }

    func testEvaluationDoesNotDependOnThreads() throws {
        let test = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .test).prefix(120)
        let params = FloatBuffer(count: ConvDenoiser.makeLayout().count)
        initializeParameters(params, layout: ConvDenoiser.makeLayout(), seed: 4)
        let one = Evaluator(data: test, noise: .gaussian(factor: 0.5), seed: 0, parameters: params, threads: 1, batch: 50).evaluate()
        let three = Evaluator(data: test, noise: .gaussian(factor: 0.5), seed: 0, parameters: params, threads: 3, batch: 50).evaluate()
        XCTAssertEqual(one, three)
        XCTAssertEqual(one.images, 120)
        // the baseline: noisy input vs clean, the same whatever the model
        let none = Evaluator(data: test, noise: .none, seed: 0, parameters: params).evaluate()
        XCTAssertEqual(none.noisyMSE, 0)
        XCTAssertEqual(none.noisySSIM, 1, accuracy: 1e-12)
        XCTAssertGreaterThan(one.noisyMSE, 0.05)
    }
}
