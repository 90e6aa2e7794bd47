// train, eval and probe on a folder of PNG images in class folders (here MNIST test digits written
// out as files), with a hashed validation split: the same commands as on IDX data.

import DAE
import Foundation
import XCTest

final class ImageFolderTests: XCTestCase {
    func testTrainEvalAndProbeOnAFolderOfImages() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let digits = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .test).prefix(300)
        for i in 0..<digits.count {
            let folder = dir + "/images/digit-\(digits.labels[i])"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let pixels = Array(digits.pixels[(i * digits.imageSize)..<((i + 1) * digits.imageSize)])
            FileManager.default.createFile(atPath: folder + "/\(i).png", contents: Data(PNG.encode(GrayImage(width: 28, height: 28, pixels: pixels))))
        }
        let data = ["--data", dir + "/images", "--val-fraction", "0.2", "--threads", "1"]
        let train = try DAEDist.run(["train", "--epochs", "2", "--eval-limit", "40", "--run-dir", dir + "/run"] + data)
        XCTAssertEqual(train.status, 0, train.stderr)
        let count = train.stdout.split(separator: "\n").first.map(String.init) ?? ""
        XCTAssertTrue(count.hasPrefix("dae-dist train: ") && count.contains("(28x28, gray; 0.2 MB in memory per rank) from \(dir)/images"), count)
        XCTAssertTrue(train.stdout.contains("eval: MSE"), train.stdout)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/config.json"))) as? [String: Any]
        XCTAssertEqual(config?["val_fraction"] as? Double, 0.2)
        let eval = try DAEDist.run(["eval", "--checkpoint", dir + "/run/model.safetensors", "--json"] + data)
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let metrics = try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any]
        let trainImages = Int(count.split(separator: " ")[2])!
        XCTAssertEqual((metrics?["images"] as? Int).map { $0 + trainImages }, 300, "the two splits cover the folder")
        // class folders are labels: the probe learns digits from them
        let probe = try DAEDist.run(["probe", "--checkpoint", dir + "/run/model.safetensors", "--iterations", "30", "--no-baselines", "--json"] + data)
        XCTAssertEqual(probe.status, 0, probe.stderr)
        let accuracy = (try JSONSerialization.jsonObject(with: Data(probe.stdout.utf8)) as? [String: Any])?["train_accuracy"] as? Double
        XCTAssertGreaterThan(accuracy ?? 0, 0.5, probe.stdout)
        // --resume takes the folder and its split from config.json
        let resumed = try DAEDist.run(["train", "--run-dir", dir + "/run", "--resume", "auto", "--epochs", "3", "--threads", "1", "--quiet"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
    }
}
