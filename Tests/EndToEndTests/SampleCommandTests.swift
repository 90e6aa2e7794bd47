// `dae-dist sample` when the training and test splits hold images of different sizes: the
// command names both sizes before the quality line's classifier could overflow; and the quality
// line names the classifier's real layer sizes.

import DAE
import Foundation
import XCTest

final class SampleCommandTests: XCTestCase {
    /// Writes `<prefix>-images-idx3-ubyte` and `<prefix>-labels-idx1-ubyte` (uncompressed IDX, as
    /// Dataset.load accepts) with `count` images of height x width pseudo-random pixels.
    static func writeSplit(_ dir: String, prefix: String, count: Int, height: Int, width: Int) {
        var rng = RandomStream(seed: 7, purpose: .initialization, UInt64(height), UInt64(width))
        let pixels = (0..<(count * height * width)).map { _ in UInt8(rng.nextUInt32() & 0xFF) }
        let labels = (0..<count).map { UInt8($0 % 10) }
        _ = FileManager.default.createFile(atPath: dir + "/\(prefix)-images-idx3-ubyte",
                                       contents: Data(IDX.encode(dims: [count, height, width], values: pixels)))
        _ = FileManager.default.createFile(atPath: dir + "/\(prefix)-labels-idx1-ubyte",
                                       contents: Data(IDX.encode(dims: [count], values: labels)))
    }

    /// Trains a small model on 8x8 training images in `dir`, for `sample` to load.
    func trainSmallModel(_ dir: String) throws -> String {
        let r = try DAEDist.run(["train", "--data-dir", dir, "--epochs", "1", "--limit", "40", "--threads", "1", "--eval-every", "0",
                                  "--quiet", "--run-dir", dir + "/run"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return dir + "/run/model.safetensors"
    }

    func sampleArguments(_ checkpoint: String, _ dir: String) -> [String] {
        ["sample", "--checkpoint", checkpoint, "--data-dir", dir, "--chains", "2", "--steps", "2", "--every", "1", "--burn-in", "1",
         "--classifier-epochs", "1", "--no-untrained-baseline", "--threads", "1", "--out", dir + "/samples"]
    }

    /// A model trained on 8x8 images, then `sample` with test images of `testSide` x `testSide`.
    func sampleWithTestImages(side testSide: Int, in dir: String) throws -> DAEDist.Result {
        Self.writeSplit(dir, prefix: "train", count: 40, height: 8, width: 8)
        Self.writeSplit(dir, prefix: "t10k", count: 10, height: testSide, width: testSide)
        return try DAEDist.run(sampleArguments(try trainSmallModel(dir), dir))
    }

    func testSampleRejectsTestImagesOfAnotherSize() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try sampleWithTestImages(side: 12, in: dir)
        XCTAssertNotEqual(r.status, 0, r.stdout)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, r.stderr)
        for fragment in ["12x12", "8x8", dir] { XCTAssertTrue(r.stderr.contains(fragment), "stderr lacks '\(fragment)': \(r.stderr)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/samples/summary.json"))
    }

    func testSampleNamesTheClassifiersRealLayerSizes() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try sampleWithTestImages(side: 8, in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("MLP 64-256-10"), r.stdout)
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/samples/summary.json"))) as? [String: Any]
        XCTAssertEqual((summary?["classifier"] as? [String: Any])?["kind"] as? String, "MLP 64-256-10")
    }
}
