// denoise and encode through the binary, on the PNG fixtures of the library tests.

import DAE
import Foundation
import XCTest

final class DenoiseEncodeCommandTests: XCTestCase {
    func fixture(_ name: String) -> (bytes: [UInt8], path: String) {
        let path = repositoryRoot + "/Tests/DAETests/Fixtures/images/" + name
        return ([UInt8](try! Data(contentsOf: URL(fileURLWithPath: path))), path)
    }

    /// denoise and encode through the binary: a briefly trained model makes a noisy PNG cleaner
    /// and keeps its size; encode writes features and labels of the right shapes.
    func testDenoiseAndEncodeCommands() throws {
        let dir = temporaryDirectory()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let train = try DAEDist.run(["train", "--epochs", "2", "--limit", "1000", "--eval-every", "0", "--quiet", "--run-dir", dir + "/run"])
        XCTAssertEqual(train.status, 0, train.stderr)
        let weights = dir + "/run/model.safetensors"
        let d = try DAEDist.run(["denoise", "--checkpoint", weights, fixture("odd.png").path, fixture("gray.png").path,
                             "--out", dir + "/out", "--add-noise", "gaussian:0.5"])
        XCTAssertEqual(d.status, 0, d.stderr)
        for name in ["odd", "gray"] {
            let clean = try PNG.decode(fixture(name + ".png").bytes, path: name)
            let noisy = try PNG.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: "\(dir)/out/\(name).noisy.png"))), path: name)
            let denoised = try PNG.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: "\(dir)/out/\(name).png"))), path: name)
            XCTAssertEqual([denoised.width, denoised.height], [clean.width, clean.height])
            func mse(_ a: GrayImage) -> Double { zip(a.pixels, clean.pixels).map { pow(Double($0) - Double($1), 2) }.reduce(0, +) / Double(a.pixels.count) }
            XCTAssertLessThan(mse(denoised), 0.8 * mse(noisy), "\(name): the denoised image should be closer to the original than the noisy one")
        }
        let bad = try DAEDist.run(["denoise", "--checkpoint", weights, fixture("truncated.png").path, "--out", dir + "/out"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("truncated.png"), bad.stderr)

        let e = try DAEDist.run(["encode", "--checkpoint", weights, "--split", "test", "--limit", "120", "--out", dir + "/features.safetensors"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let (tensors, metadata) = try SafeTensors.read(path: dir + "/features.safetensors")
        XCTAssertEqual(tensors.first { $0.name == "features" }?.shape, [120, 64, 7, 7])
        let labels = tensors.first { $0.name == "labels" }
        XCTAssertEqual(labels?.shape, [120]); XCTAssertEqual(labels?.dtype, .u8)
        XCTAssertEqual(Array(labels!.values.prefix(5)), [7, 2, 1, 0, 4])
        XCTAssertEqual(metadata["split"], "test")
        let badSplit = try DAEDist.run(["encode", "--checkpoint", weights, "--split", "validation", "--out", dir + "/x.safetensors"])
        XCTAssertTrue(badSplit.status != 0 && badSplit.stderr.contains("--split"), badSplit.stderr)
    }

    /// denoise takes JPEG and TIFF files and folders of images; a multi-page TIFF gives one output
    /// a page; --reference scores the result against a clean image.
    func testDenoiseReadsImageKindsFoldersAndScoresAgainstAReference() throws {
        let dir = temporaryDirectory()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let train = try DAEDist.run(["train", "--epochs", "1", "--limit", "200", "--eval-every", "0", "--quiet", "--threads", "1", "--run-dir", dir + "/run"])
        XCTAssertEqual(train.status, 0, train.stderr)
        let weights = dir + "/run/model.safetensors"
        try FileManager.default.createDirectory(atPath: dir + "/in", withIntermediateDirectories: true)
        for name in ["gray.jpg", "pages.tif", "rgb.png"] { try FileManager.default.copyItem(atPath: fixture(name).path, toPath: dir + "/in/" + name) }
        let r = try DAEDist.run(["denoise", "--checkpoint", weights, dir + "/in", "--out", dir + "/out"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let written = try FileManager.default.contentsOfDirectory(atPath: dir + "/out").sorted()
        XCTAssertEqual(written, ["gray.png", "pages-p1.png", "pages-p2.png", "pages-p3.png", "rgb.png"], "\(written)")
        // two inputs whose outputs would share a name are refused before anything is written
        try FileManager.default.copyItem(atPath: fixture("gray.png").path, toPath: dir + "/in/gray.png")
        let clash = try DAEDist.run(["denoise", "--checkpoint", weights, dir + "/in", "--out", dir + "/clash"])
        XCTAssertNotEqual(clash.status, 0)
        XCTAssertTrue(clash.stderr.contains("would be written twice, for \(dir)/in/gray.jpg and for \(dir)/in/gray.png"), clash.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/clash"))
        let scored = try DAEDist.run(["denoise", "--checkpoint", weights, fixture("gray.jpg").path, "--out", dir + "/scored",
                                      "--add-noise", "gaussian:0.3", "--reference", fixture("gray.png").path])
        XCTAssertEqual(scored.status, 0, scored.stderr)
        XCTAssertTrue(scored.stdout.contains("against \(fixture("gray.png").path): MSE"), scored.stdout)
        let two = try DAEDist.run(["denoise", "--checkpoint", weights, fixture("gray.jpg").path, fixture("gray.tif").path,
                                   "--out", dir + "/two", "--reference", fixture("gray.png").path])
        XCTAssertNotEqual(two.status, 0)
        XCTAssertTrue(two.stderr.contains("--reference: scores one image; 2 inputs"), two.stderr)
    }
}
