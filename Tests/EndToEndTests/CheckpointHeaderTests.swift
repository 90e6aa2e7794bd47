// A checkpoint whose header was edited, as a user meets it: `--resume FILE` stops with one line
// naming the file; `--resume auto` warns, skips it and takes the checkpoint before it. A file
// written before header_crc32 existed is still read, its position cross-checked.

import DAE
import Foundation
import XCTest

final class CheckpointHeaderTests: XCTestCase {
    let common = ["--limit", "40", "--threads", "1", "--eval-every", "0"]

    /// Rewrites the checkpoint at `path` with its metadata changed by `edit` (tensors unchanged).
    func edit(_ path: String, to out: String, _ change: (inout [String: String]) -> Void) throws {
        let (tensors, stored) = try SafeTensors.read(path: path)
        var metadata = stored
        change(&metadata)
        try writeFileAtomically(SafeTensors.encode(tensors, metadata: metadata), to: out)
    }

    /// The stderr lines that are not empty.
    func lines(_ text: String) -> [Substring] { text.split(separator: "\n").filter { !$0.isEmpty } }

    func testEditedHeaderIsRefusedAndSkippedByAuto() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runDir = dir + "/run"
        // 1 epoch of 2 steps: checkpoints after step 1 and step 2 (the epoch's end)
        let first = try DAEDist.run(["train", "--epochs", "1", "--checkpoint-every", "1", "--run-dir", runDir] + common)
        XCTAssertEqual(first.status, 0, first.stderr)
        let newest = runDir + "/checkpoints/step-000000002.safetensors"
        let older = runDir + "/checkpoints/step-000000001.safetensors"
        XCTAssertEqual(Checkpoint.list(in: runDir + "/checkpoints"), [newest, older])
        XCTAssertEqual(try SafeTensors.read(path: newest).metadata["epoch"], "2")

        // an old-style copy (no header_crc32) with the same edit: the position cross-check refuses it
        let oldStyle = dir + "/old-style.safetensors"
        try edit(newest, to: oldStyle) { $0[SafeTensors.headerChecksumKey] = nil; $0["epoch"] = "3" }
        let refusedOld = try DAEDist.run(["train", "--epochs", "2", "--run-dir", dir + "/other", "--resume", oldStyle] + common)
        XCTAssertNotEqual(refusedOld.status, 0)
        XCTAssertEqual(lines(refusedOld.stderr), ["error: \(oldStyle): epoch 3 is beyond the end of the checkpoint's training, which had 1 epoch(s)"])
        // unedited, the old-style copy resumes
        try edit(newest, to: oldStyle) { $0[SafeTensors.headerChecksumKey] = nil }
        let resumedOld = try DAEDist.run(["train", "--epochs", "2", "--run-dir", dir + "/other", "--resume", oldStyle] + common)
        XCTAssertEqual(resumedOld.status, 0, resumedOld.stderr)
        XCTAssertTrue(resumedOld.stdout.contains("resuming from \(oldStyle): step 2, epoch 2 at step 0/2"), resumedOld.stdout)

        // the newest checkpoint's epoch edited in place
        try edit(newest, to: newest) { $0["epoch"] = "3" }
        let refused = try DAEDist.run(["train", "--epochs", "2", "--run-dir", runDir, "--resume", newest] + common)
        XCTAssertNotEqual(refused.status, 0)
        let errorLines = lines(refused.stderr)
        XCTAssertEqual(errorLines.count, 1, refused.stderr)
        XCTAssertTrue(errorLines.first?.hasPrefix("error: \(newest): header checksum mismatch: the checkpoint's metadata was edited or is corrupt") ?? false, refused.stderr)

        // --resume auto skips it with a warning and resumes from the one before
        let auto = try DAEDist.run(["train", "--epochs", "2", "--run-dir", runDir, "--resume", "auto"] + common)
        XCTAssertEqual(auto.status, 0, auto.stderr)
        XCTAssertTrue(auto.stderr.hasPrefix("warning: skipping \(newest): header checksum mismatch"), auto.stderr)
        XCTAssertTrue(auto.stdout.contains("resuming from \(older): step 1, epoch 1 at step 1/2"), auto.stdout)
    }
}
