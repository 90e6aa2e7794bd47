// Paths of the wrong kind: a folder where a file belongs (an input image, --checkpoint,
// --resume) and a file where a folder belongs (--data). Each command must answer with one line
// naming the path and what to pass instead, and a non-zero exit; never a trap and backtrace.

import DAE
import Foundation
import XCTest

final class BadPathTests: XCTestCase {
    var dir = ""
    var weights = ""       // a real weights file, for the commands' other inputs
    let data = repositoryRoot + "/data/mnist"

    override func setUpWithError() throws {
        dir = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir + "/adir", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir + "/afile", contents: Data([1, 2, 3]))
        let train = try DAEDist.run(["train", "--epochs", "1", "--limit", "20", "--eval-every", "0", "--threads", "1", "--quiet", "--run-dir", dir + "/run"])
        XCTAssertEqual(train.status, 0, train.stderr)
        weights = dir + "/run/model.safetensors"
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// One error line (swift-argument-parser's usage lines aside) containing every fragment, a
    /// non-zero exit, and no crash (a trap exits with 132 or 133, a signal with more).
    func assertFails(_ arguments: [String], _ fragments: String..., file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try DAEDist.run(arguments)
        XCTAssertTrue(r.status == 1 || r.status == 64, "\(arguments): exit \(r.status): \(r.stderr)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty && !$0.hasPrefix("Usage:") && !$0.hasPrefix("Help:") && !$0.hasPrefix("  See") }
        XCTAssertEqual(lines.count, 1, "expected one error line, got: \(r.stderr)", file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(r.stderr.contains(fragment), "stderr lacks '\(fragment)': \(r.stderr)", file: file, line: line)
        }
    }

    func testDenoiseOfAFolderWithoutImages() throws {
        // a folder stands for its images (DenoiseEncodeCommandTests); one with none is named
        try assertFails(["denoise", "--checkpoint", weights, dir + "/adir", "--out", dir + "/o"], dir + "/adir: is a folder with no images")
    }

    func testCheckpointThatIsAFolder() throws {
        let folder = dir + "/adir"
        try assertFails(["denoise", "--checkpoint", folder, dir + "/afile", "--out", dir + "/o"], folder + ": is a folder")
        try assertFails(["eval", "--checkpoint", folder, "--data", data], folder + ": is a folder")
        try assertFails(["encode", "--checkpoint", folder, "--data", data, "--out", dir + "/f.safetensors"], folder + ": is a folder")
        try assertFails(["probe", "--checkpoint", folder, "--data", data], folder + ": is a folder")
        try assertFails(["sample", "--checkpoint", folder, "--data", data, "--out", dir + "/s"], folder + ": is a folder")
        // a run directory: the message names the weights file in it
        try assertFails(["eval", "--checkpoint", dir + "/run", "--data", data], dir + "/run: is a folder", dir + "/run/model.safetensors")
    }

    /// A missing or dangling input, --reference or --checkpoint says why it cannot be read, not
    /// "(permissions?)"; a missing --checkpoint also says what to pass.
    func testMissingAndDanglingPathsSayWhy() throws {
        try FileManager.default.createSymbolicLink(atPath: dir + "/dangling.png", withDestinationPath: dir + "/gone.png")
        let image = repositoryRoot + "/Tests/DAETests/Fixtures/images/gray.png"
        let denoise = ["denoise", "--checkpoint", weights, "--out", dir + "/o"]
        try assertFails(denoise + [dir + "/none.png"], dir + "/none.png: no such file")
        try assertFails(denoise + [dir + "/dangling.png"], dir + "/dangling.png: a dangling symbolic link (-> \(dir)/gone.png")
        try assertFails(denoise + [image, "--reference", dir + "/none.png"], "--reference: \(dir)/none.png: no such file")
        try assertFails(denoise + [image, "--reference", dir + "/dangling.png"], "--reference: \(dir)/dangling.png: a dangling symbolic link")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/o"))
        // in a run directory: its newest checkpoint is named (a run still training has no model.safetensors)
        let newest = Checkpoint.list(in: dir + "/run/checkpoints").first!
        try assertFails(["eval", "--checkpoint", dir + "/run/none.safetensors", "--data", data],
                        "--checkpoint: \(dir)/run/none.safetensors: no such file; the newest checkpoint of that run is \(newest)")
        for command in [["eval", "--data", data], ["encode", "--data", data, "--out", dir + "/f.safetensors"], ["sample", "--data", data, "--out", dir + "/s"],
                        ["probe", "--data", data], ["denoise", image, "--out", dir + "/o"]] {
            try assertFails(command + ["--checkpoint", "/nonexistent/model.safetensors"],
                            "--checkpoint: /nonexistent/model.safetensors: no such file; pass a checkpoint (<run-dir>/checkpoints/step-N.safetensors) or a run's weights file (<run-dir>/model.safetensors")
        }
    }

    /// eval, encode and sample have no --patch: their advice for images of several sizes is
    /// what they can do (one size, or denoise for any size).
    func testDataOfSeveralSizesGetsAdviceThatAppliesToTheCommand() throws {
        let images = repositoryRoot + "/Tests/DAETests/Fixtures/images/"
        for split in ["train", "test"] {
            try FileManager.default.createDirectory(atPath: dir + "/mixed/" + split, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: images + "gray.png", toPath: dir + "/mixed/\(split)/a.png")
            try FileManager.default.copyItem(atPath: images + "odd.png", toPath: dir + "/mixed/\(split)/b.png")
        }
        for (command, what) in [(["eval"], "eval scores whole images of one size"),
                                (["encode", "--out", dir + "/f.safetensors"], "encode writes one feature array for images of one size"),
                                (["sample", "--out", dir + "/s"], "sample runs its chains on images of one size")] {
            let r = try DAEDist.run(command + ["--checkpoint", weights, "--data", dir + "/mixed", "--threads", "1"])
            XCTAssertEqual(r.status, 1, r.stderr)
            for fragment in ["test/a.png is 28x28 but test/b.png is 45x30", what, "use dae-dist denoise for images of other sizes"] {
                XCTAssertTrue(r.stderr.contains(fragment), "\(command[0]): stderr lacks '\(fragment)': \(r.stderr)")
            }
            XCTAssertFalse(r.stderr.contains("--patch"), r.stderr)
        }
    }

    func testResumeFromAFolder() throws {
        // train --resume PATH goes through the library's checkpoint reader (Checkpoint.load)
        try assertFails(["train", "--epochs", "1", "--limit", "20", "--eval-every", "0", "--threads", "1", "--quiet",
                         "--run-dir", dir + "/r2", "--resume", dir + "/adir"], dir + "/adir: is a folder")
    }

    func testDataThatIsAFile() throws {
        for command in [["train", "--epochs", "1", "--run-dir", dir + "/r3"], ["eval", "--checkpoint", weights],
                        ["encode", "--checkpoint", weights, "--out", dir + "/f.safetensors"], ["probe", "--checkpoint", weights],
                        ["sample", "--checkpoint", weights, "--out", dir + "/s"]] {
            try assertFails(command + ["--data", dir + "/afile"], "--data: \(dir)/afile is a file, not a folder")
        }
    }
}

/// --threads above the CPUs this process may run on: capped, with one warning line.
final class ThreadCapTests: XCTestCase {
    func testThreadsAboveTheCPUsAreCappedWithAWarning() throws {
        let dir = temporaryDirectory()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let train = try DAEDist.run(["train", "--epochs", "1", "--limit", "20", "--eval-every", "0", "--threads", "1000", "--quiet", "--run-dir", dir + "/run"])
        XCTAssertEqual(train.status, 0, train.stderr)
        let cpus = allowedCPUCount()
        XCTAssertTrue(train.stderr.contains("warning: --threads 1000 is more than the \(cpus) CPU\(cpus == 1 ? "" : "s") this rank may run on; using \(cpus)"), train.stderr)
        let eval = try DAEDist.run(["eval", "--checkpoint", dir + "/run/model.safetensors", "--limit", "10", "--threads", "1"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        XCTAssertFalse(eval.stderr.contains("warning"), eval.stderr)
    }
}
