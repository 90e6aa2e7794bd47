// The own-images path through the binary: a U-Net trained on crops of a folder of colour images
// of mixed sizes, scored by eval on fixed crops, denoising an RGB image to RGB; and the flag
// mistakes of that path, each one line naming the flag.

import DAE
import Foundation
import XCTest

final class OwnImagesTests: XCTestCase {
    /// A folder of RGB images of three sizes, smooth colour ramps plus a little texture.
    func makeFolder(_ dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (i, (h, w)) in [(40, 48), (36, 36), (48, 40), (44, 52), (40, 40), (52, 44)].enumerated() {
            var planes = [UInt8](repeating: 0, count: 3 * h * w)
            for c in 0..<3 { for y in 0..<h { for x in 0..<w {
                planes[(c * h + y) * w + x] = UInt8((x * (3 + c) + y * (5 - c) + i * 17 + (x * y % 7) * 4) % 256)
            } } }
            FileManager.default.createFile(atPath: dir + "/img\(i).png", contents: Data(PNG.encode(planes: planes, channels: 3, width: w, height: h)))
        }
    }

    func testUNetOnCropsOfColourImagesTrainsEvaluatesAndDenoisesInRGB() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try makeFolder(dir + "/images")
        let train = try DAEDist.run(["train", "--data", dir + "/images", "--model", "unet", "--widths", "8,16", "--patch", "16",
                                     "--patches-per-epoch", "48", "--augment", "flips", "--noise", "gaussian:0.05-0.3", "--epochs", "2",
                                     "--batch-size", "8", "--micro-batch", "4", "--val-fraction", "0.3", "--threads", "1", "--run-dir", dir + "/run"])
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertTrue(train.stdout.contains("RGB;"), train.stdout)
        XCTAssertTrue(train.stdout.contains("48 random 16x16 crops per epoch, flipped and rotated"), train.stdout)
        XCTAssertTrue(train.stdout.contains("UNet 3->8,16"), train.stdout)
        XCTAssertTrue(train.stdout.contains("eval: MSE"), train.stdout)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/config.json"))) as? [String: Any]
        XCTAssertEqual(config?["model_kind"] as? String, "unet")
        XCTAssertEqual(config?["channels"] as? Int, 3)
        XCTAssertEqual((config?["model_spec"] as? [String: Any])?["widths"] as? [Int], [8, 16])
        XCTAssertEqual(config?["patch"] as? Int, 16)
        // the grid is in colour
        let grids = try FileManager.default.contentsOfDirectory(atPath: dir + "/run/samples").filter { $0.hasSuffix(".png") }
        XCTAssertFalse(grids.isEmpty)
        let grid = try PNG.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/run/samples/" + grids[0]))), path: "grid", channels: 3)
        XCTAssertEqual(grid.channels, 3)

        // eval scores the same fixed crops training's evaluation scored
        let eval = try DAEDist.run(["eval", "--checkpoint", dir + "/run/model.safetensors", "--data", dir + "/images", "--val-fraction", "0.3",
                                    "--json", "--threads", "1"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let images = (try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any])?["images"] as? Int
        XCTAssertEqual(images, TrainingRun.evalPatches)

        // denoise: an RGB image of an odd size in, an RGB image of that size out
        let denoise = try DAEDist.run(["denoise", "--checkpoint", dir + "/run/model.safetensors", dir + "/images/img0.png",
                                       "--out", dir + "/out", "--add-noise", "gaussian:0.1", "--tile", "20", "--threads", "1"])
        XCTAssertEqual(denoise.status, 0, denoise.stderr)
        XCTAssertTrue(denoise.stdout.contains("(48x40 RGB, tiles of 20"), denoise.stdout)
        let out = try PNG.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/out/img0.png"))), path: "out", channels: 3)
        XCTAssertEqual([out.width, out.height], [48, 40])
        // a tile too small for the U-Net's context is refused by name
        let small = try DAEDist.run(["denoise", "--checkpoint", dir + "/run/model.safetensors", dir + "/images/img0.png", "--out", dir + "/out2", "--tile", "8"])
        XCTAssertNotEqual(small.status, 0)
        XCTAssertTrue(small.stderr.contains("--tile: 8 must be a multiple of 2"), small.stderr)
        // sample runs gray models only, and says so
        let sample = try DAEDist.run(["sample", "--checkpoint", dir + "/run/model.safetensors", "--out", dir + "/samples", "--data", dir + "/images"])
        XCTAssertNotEqual(sample.status, 0)
        XCTAssertTrue(sample.stderr.contains("takes 3 channels"), sample.stderr)
    }

    func testFlagMistakesOfTheOwnImagesPathAreNamed() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try makeFolder(dir + "/images")
        let cases: [([String], String)] = [
            (["--augment", "flips"], "--augment: applies to training on crops; add --patch N"),
            (["--patches-per-epoch", "10"], "--patches-per-epoch: applies to training on crops; add --patch N"),
            (["--channels", "2"], "--channels: must be 1 (gray) or 3 (RGB), got 2"),
            (["--model", "unet", "--hidden", "8,16"], "--hidden: applies to the stacked model only"),
            (["--model", "unet", "--widths", "8"], "--widths: '8': give 2 to 5 layer widths"),
            (["--patch", "10"], "--patch: 10 must be a multiple of 4"),
            ([], "image"),    // mixed sizes without --patch: the two files are named
        ]
        for (flags, message) in cases {
            let result = try DAEDist.run(["train", "--data", dir + "/images", "--val-fraction", "0.3", "--epochs", "1",
                                          "--run-dir", dir + "/run-\(UUID().uuidString)"] + flags)
            XCTAssertNotEqual(result.status, 0, "\(flags)")
            XCTAssertTrue(result.stderr.contains(message), "\(flags): \(result.stderr)")
        }
        let mixed = try DAEDist.run(["train", "--data", dir + "/images", "--val-fraction", "0.3", "--epochs", "1", "--run-dir", dir + "/run-mixed"])
        XCTAssertTrue(mixed.stderr.contains("--patch"), mixed.stderr)
    }
}
