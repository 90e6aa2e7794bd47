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

/// What train says about a data folder beyond its images: run directories inside it skipped,
/// 16-bit images reduced, a folder it cannot list.
final class DataFolderWarningTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func writeDigits(_ folder: String, count: Int) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for i in 0..<count {
            let pixels = (0..<784).map { UInt8(($0 * 7 + i * 13) % 256) }
            FileManager.default.createFile(atPath: folder + "/\(i).png", contents: Data(PNG.encode(GrayImage(width: 28, height: 28, pixels: pixels))))
        }
    }

    func testARunDirectoryInsideTheDataIsSkippedAnd16BitImagesAreNoted() throws {
        try writeDigits(dir + "/data", count: 20)
        let quick = ["--epochs", "1", "--eval-every", "1", "--eval-limit", "2", "--threads", "1", "--quiet"]
        let first = try DAEDist.run(["train", "--data", dir + "/data", "--run-dir", dir + "/data/run"] + quick)
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/data/run/.lock"))
        try FileManager.default.copyItem(atPath: repositoryRoot + "/Tests/DAETests/Fixtures/images/sixteen.png", toPath: dir + "/data/sixteen.png")
        let second = try DAEDist.run(["train", "--data", dir + "/data", "--run-dir", dir + "/run2"] + quick)
        XCTAssertEqual(second.status, 0, second.stderr)
        let lines = second.stderr.split(separator: "\n")
        XCTAssertEqual(lines.filter { $0 == "warning: skipped \(dir)/data/run: a dae-dist run directory, not data (its sample grids would be read as images)" }.count, 1, second.stderr)
        XCTAssertEqual(lines.filter { $0.hasPrefix("warning: 1 file of ") && $0.contains("hold") && $0.contains("16-bit images (e.g. \(dir)/data/sixteen.png") }.count, 1, second.stderr)
        // denoise says the same of a 16-bit input
        let denoised = try DAEDist.run(["denoise", "--checkpoint", dir + "/run2/model.safetensors", dir + "/data/sixteen.png", "--out", dir + "/out"])
        XCTAssertEqual(denoised.status, 0, denoised.stderr)
        XCTAssertTrue(denoised.stderr.contains("warning: 1 file of 1 in the inputs holds 16-bit images (e.g. \(dir)/data/sixteen.png"), denoised.stderr)
    }

    func testAFolderThatCannotBeListedIsAnError() throws {
        try writeDigits(dir + "/data/train/a", count: 4)
        try writeDigits(dir + "/data/train/b", count: 4)
        try writeDigits(dir + "/data/test/a", count: 2)
        try FileManager.default.createDirectory(atPath: dir + "/runs", withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: dir + "/runs")
        try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: dir + "/data/train/b")
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir + "/data/train/b") }
        // root reads any folder: run as nobody then
        let train = ["train", "--data", dir + "/data", "--run-dir", dir + "/runs/r", "--epochs", "1", "--eval-every", "0", "--threads", "1", "--quiet"]
        let asUser = geteuid() == 0 ? ["--setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", DAEDist.binary] : []
        let r = geteuid() == 0 ? try runSetpriv(asUser + train) : try DAEDist.run(train)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stderr, "error: \(dir)/data/train/b: a folder of the data that cannot be listed: cannot be read: permission denied (check its mode and owner); fix it, or move it out of the data folder\n")
    }

    /// dae-dist run through setpriv(1) as another user (arguments after "--setpriv").
    func runSetpriv(_ arguments: [String]) throws -> DAEDist.Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = Array(arguments.dropFirst())
        process.currentDirectoryURL = URL(fileURLWithPath: NSTemporaryDirectory())
        let out = Pipe(), err = Pipe()
        process.standardOutput = out; process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile(), errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return DAEDist.Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }
}
