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
