// `dae-dist --version` and `dae-dist info`: the versions a run records in config.json, its
// checkpoints and its weights file, and what `info` shows of a file from its header alone. Bad
// input gets one line naming the file and exit 1. A checkpoint written before the version keys
// existed still resumes.

import DAE
import Foundation
import XCTest

final class InfoTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// A tiny run (1 epoch of 40 images in batches of 20: two steps); its run directory.
    func train() throws -> String {
        let runDir = dir + "/run"
        let r = try DAEDist.run(["train", "--epochs", "1", "--limit", "40", "--threads", "1", "--eval-every", "0", "--quiet", "--run-dir", runDir])
        XCTAssertEqual(r.status, 0, r.stderr)
        return runDir
    }

    func json(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
    }

    func testVersion() throws {
        let r = try DAEDist.run(["--version"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(lines.first, "dae-dist \(BuildInfo.daeDistVersion)")
        for prefix in ["Swift ", "OpenBLAS ", "MPI ", "OS "] {
            XCTAssertTrue(lines.contains { $0.hasPrefix(prefix) }, "no \(prefix)line in \(r.stdout)")
        }
        XCTAssertTrue(r.stdout.contains("core: "), r.stdout)
    }

    /// The build facts of the dae-dist binary: this test process's, except the OpenBLAS kernels,
    /// which the binary may have upgraded from OpenBLAS's generic fallback when it started
    /// (BLASCore), as this process cannot. Read from its --version line "OpenBLAS  <config> (core: X)".
    func binaryBuild() throws -> BuildInfo {
        let r = try DAEDist.run(["--version"])
        let line = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("OpenBLAS  ") }, r.stdout)
        let parts = line.dropFirst("OpenBLAS  ".count).components(separatedBy: " (core: ")
        XCTAssertEqual(parts.count, 2, String(line))
        var build = BuildInfo.current
        build.openblas = "OpenBLAS " + parts[0]
        build.openblasCore = String(parts[1].dropLast())
        return build
    }

    func testInfoOnCheckpointAndWeights() throws {
        let runDir = try train()
        let build = try binaryBuild()
        let checkpoint = runDir + "/checkpoints/" + Checkpoint.fileName(globalStep: 2)
        let weights = runDir + "/model.safetensors"

        // config.json records the build
        let config = try XCTUnwrap(RunConfiguration.read(directory: runDir))
        XCTAssertEqual(config.build, build)

        let text = try DAEDist.run(["info", checkpoint])
        XCTAssertEqual(text.status, 0, text.stderr)
        for fragment in ["\(checkpoint): dae-dist checkpoint, format version 1", "ConvDenoiser", "global step       2",
                         "samples seen      40", "dae_dist_version  \(BuildInfo.daeDistVersion)", "openblas_core",
                         "27,169 parameters", "encoder.0.weight", "[32, 1, 3, 3]", "matches the header"] {
            XCTAssertTrue(text.stdout.contains(fragment), "info lacks '\(fragment)': \(text.stdout)")
        }

        let c = try json(try DAEDist.run(["info", "--json", checkpoint]).stdout)
        XCTAssertEqual(c["kind"] as? String, "checkpoint")
        XCTAssertEqual(c["model"] as? String, "ConvDenoiser 1->32,64")
        XCTAssertEqual(c["parameters"] as? Int, 27169)
        XCTAssertEqual(c["values"] as? Int, 3 * 27169)
        XCTAssertEqual(c["header_checksum"] as? String, "ok")
        XCTAssertEqual(c["truncated"] as? Bool, false)
        XCTAssertEqual((c["tensors"] as? [Any])?.count, 24)
        let position = try XCTUnwrap(c["position"] as? [String: Int])
        XCTAssertEqual(position, ["phase": 0, "epoch": 2, "step_in_epoch": 0, "global_step": 2, "samples_seen": 40, "optimizer_step": 2])
        let configuration = try XCTUnwrap(c["configuration"] as? [String: String])
        XCTAssertEqual(configuration["epochs"], "1")
        XCTAssertEqual(configuration["train_samples"], "40")
        XCTAssertEqual(configuration["loss"], "mse")
        let versions = try XCTUnwrap(c["versions"] as? [String: String])
        XCTAssertEqual(versions, build.metadata())

        let w = try json(try DAEDist.run(["info", "--json", weights]).stdout)
        XCTAssertEqual(w["kind"] as? String, "weights")
        XCTAssertNil(w["position"])
        XCTAssertEqual(w["parameters"] as? Int, 27169)
        XCTAssertEqual((w["tensors"] as? [Any])?.count, 8)
        // the weights file leaves out the MPI library (see BuildInfo.metadata)
        XCTAssertEqual(w["versions"] as? [String: String], build.metadata(withMPI: false))
        let weightsText = try DAEDist.run(["info", weights])
        XCTAssertEqual(weightsText.status, 0, weightsText.stderr)
        XCTAssertTrue(weightsText.stdout.contains("dae-dist weights file"), weightsText.stdout)
        XCTAssertFalse(weightsText.stdout.contains("position"), weightsText.stdout)

        // the data cut short: info still shows the header and says so
        let bytes = try Data(contentsOf: URL(fileURLWithPath: weights))
        let cut = dir + "/cut.safetensors"
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: cut))
        let truncated = try DAEDist.run(["info", cut])
        XCTAssertEqual(truncated.status, 0, truncated.stderr)
        XCTAssertTrue(truncated.stdout.contains("TRUNCATED"), truncated.stdout)

        // bad input: one line naming the file, exit 1
        let shortHeader = dir + "/short-header.safetensors"
        try bytes.prefix(100).write(to: URL(fileURLWithPath: shortHeader))
        for (path, fragment) in [(dir + "/none.safetensors", "no such file"), (runDir, "is a folder"),
                                 (runDir + "/config.json", "not a safetensors file"), (shortHeader, "truncated")] {
            let r = try DAEDist.run(["info", path])
            XCTAssertEqual(r.status, 1, "\(path): \(r.stdout) \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(path) && r.stderr.contains(fragment), r.stderr)
        }
    }

    /// A checkpoint without the version keys (as written before they existed) still resumes.
    func testCheckpointWithoutVersionsResumes() throws {
        let runDir = try train()
        let checkpoint = runDir + "/checkpoints/" + Checkpoint.fileName(globalStep: 2)
        let (tensors, stored) = try SafeTensors.read(path: checkpoint)
        var metadata = stored
        for key in BuildInfo.metadataKeys { metadata[key] = nil }
        metadata[SafeTensors.headerChecksumKey] = String(format: "%08x", SafeTensors.headerChecksum(tensors: tensors, metadata: metadata))
        let old = dir + "/old.safetensors"
        try writeFileAtomically(SafeTensors.encode(tensors, metadata: metadata), to: old)
        let info = try DAEDist.run(["info", old])
        XCTAssertTrue(info.stdout.contains("written before dae-dist recorded its versions"), info.stdout)
        XCTAssertTrue(info.stdout.contains("matches the header"), info.stdout)
        let r = try DAEDist.run(["train", "--epochs", "2", "--limit", "40", "--threads", "1", "--eval-every", "0", "--quiet",
                                 "--run-dir", dir + "/resumed", "--resume", old])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/resumed/model.safetensors"))
    }
}
