// `train --model dncnn` as a user runs it: crops of a folder of images, then denoise of an image
// of another size (tiled), weights a PyTorch DnCNN loads (the metadata names its shape), and the
// flags it refuses.

import DAE
import Foundation
import XCTest

final class DnCNNCommandTests: XCTestCase {
    func testTrainOnCropsThenDenoiseAnImageOfAnySize() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/images", withIntermediateDirectories: true)
        for f in ["gray.png", "odd.png", "rgb.png", "rgb.jpg"] {
            try FileManager.default.copyItem(atPath: repositoryRoot + "/Tests/DAETests/Fixtures/images/" + f, toPath: dir + "/images/" + f)
        }
        let train = try DAEDist.run(["train", "--data", dir + "/images", "--val-fraction", "0.5", "--model", "dncnn", "--depth", "4",
                                     "--widths", "8", "--patch", "15", "--patches-per-epoch", "32", "--epochs", "1", "--batch-size", "8",
                                     "--channels", "1", "--threads", "1", "--run-dir", dir + "/run"])
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertTrue(train.stdout.contains("DnCNN 1->4x8, 1 epochs"), train.stdout)
        XCTAssertTrue(train.stdout.contains("eval: MSE"), train.stdout)
        let header = try SafeTensors.readHeader(path: dir + "/run/model.safetensors")
        XCTAssertEqual(header.metadata["model"], "DnCNN")
        XCTAssertEqual([header.metadata["depth"], header.metadata["widths"], header.metadata["channels"]], ["4", "8", "1"])
        XCTAssertEqual(header.entries.map(\.name).sorted(), (0..<4).flatMap { ["body.\(2 * $0).bias", "body.\(2 * $0).weight"] }.sorted())
        let denoise = try DAEDist.run(["denoise", "--checkpoint", dir + "/run/model.safetensors", dir + "/images/odd.png",
                                       "--out", dir + "/out", "--tile", "12", "--add-noise", "gaussian:0.1"])
        XCTAssertEqual(denoise.status, 0, denoise.stderr)
        XCTAssertTrue(denoise.stdout.contains("tiles of 12"), denoise.stdout)
        // its flags: --depth is DnCNN's alone, BCE needs outputs in [0,1]
        let depth = try DAEDist.run(["train", "--depth", "5"])
        XCTAssertTrue(depth.stderr.contains("--depth: applies to the dncnn model only"), depth.stderr)
        let bce = try DAEDist.run(["train", "--model", "dncnn", "--loss", "bce"])
        XCTAssertTrue(bce.stderr.contains("--loss: bce needs outputs in [0,1]"), bce.stderr)
        let shallow = try DAEDist.run(["train", "--model", "dncnn", "--depth", "2"])
        XCTAssertTrue(shallow.stderr.contains("--depth: 2: DnCNN takes 3 to 64 layers"), shallow.stderr)
    }
}
