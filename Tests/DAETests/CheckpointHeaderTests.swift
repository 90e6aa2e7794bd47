// A checkpoint's header is checked too: header_crc32 covers every metadata entry and the tensor
// table, so an edited value, an added or removed key, or a moved tensor is refused; and the
// position is cross-checked against the steps and samples that lead to it, for checkpoints written
// before header_crc32 existed as well (they still load and resume exactly).

import DAE
import Foundation
import XCTest

final class CheckpointHeaderTests: XCTestCase {
    static var data: Dataset { CheckpointTests.data }     // 100 training images
    var dir = ""
    override func setUp() { dir = temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 2 epochs of 5 steps of 20 samples (batch 30: 4 steps, the last one of 10 samples).
    func config(batchSize: Int = 20) -> TrainConfig {
        var c = TrainConfig()
        c.epochs = 2
        c.batchSize = batchSize
        return c
    }

    /// A one-hidden-layer stacked model: phase 0 pre-trains it for 1 epoch, phase 1 fine-tunes for 1.
    var stacked: TrainConfig {
        var c = TrainConfig(model: .stacked(StackedSpec(inputSize: 784, hidden: [16])))
        c.pretrainEpochs = 1
        c.epochs = 1
        c.batchSize = 20
        c.microBatch = 5
        return c
    }

    /// The checkpoint a run stopped after `steps` steps wrote (a real one, as a signal leaves it).
    func checkpoint(after steps: Int, _ config: TrainConfig) throws -> String {
        let runDirectory = dir + "/run-\(steps)-\(UUID().uuidString)"
        let run = try makeRun(config, data: Self.data, directory: runDirectory, stopAfter: steps)
        XCTAssertEqual(try run.run(), .stopped)
        return runDirectory + "/checkpoints/" + Checkpoint.fileName(globalStep: steps)
    }

    /// Rewrites `path` as `name` in the scratch directory with its metadata changed by `edit`; the
    /// tensors and their data stay as they are (so data_crc32 still holds).
    func rewrite(_ path: String, as name: String, _ edit: (inout [String: String]) -> Void) throws -> String {
        let (tensors, stored) = try SafeTensors.read(path: path)
        var metadata = stored
        edit(&metadata)
        let out = dir + "/" + name + ".safetensors"
        try writeFileAtomically(SafeTensors.encode(tensors, metadata: metadata), to: out)
        return out
    }

    /// The same file without header_crc32, as written before it existed.
    func oldStyle(_ path: String, as name: String = "old", _ edit: (inout [String: String]) -> Void = { _ in }) throws -> String {
        try rewrite(path, as: name) { metadata in
            metadata[SafeTensors.headerChecksumKey] = nil
            edit(&metadata)
        }
    }

    /// What a resume checks, in TrainingRun's order: load (settings first), then the position.
    @discardableResult
    func resumeChecks(_ path: String, _ config: TrainConfig) throws -> CheckpointState {
        let layout = config.model.makeLayout(), fingerprint = Checkpoint.fingerprint(Self.data)
        let state = try Checkpoint.load(path: path, layout: layout) { metadata throws(DAEError) in
            try Checkpoint.checkSettings(metadata, path: path, config: config, data: Self.data, dataFingerprint: fingerprint)
        }
        let stepsPerEpoch = (Self.data.count + config.batchSize - 1) / config.batchSize
        try Checkpoint.checkCompatible(state, path: path, config: config, data: Self.data,
                                       dataFingerprint: fingerprint, stepsPerEpoch: stepsPerEpoch)
        return state
    }

    /// Expects the resume checks to refuse `path` with one line naming it and holding `fragment`.
    func assertRefused(_ path: String, _ config: TrainConfig, _ fragment: String,
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try resumeChecks(path, config), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix(path + ": "), "does not name the file: \(text)", file: file, line: line)
            XCTAssertTrue(text.contains(fragment), "'\(text)' lacks '\(fragment)'", file: file, line: line)
            XCTAssertFalse(text.contains("\n"), file: file, line: line)
        }
    }

    func testEveryHeaderEditIsRefused() throws {
        let good = try checkpoint(after: 7, config())               // epoch 2, step 2 of 5
        let state = try resumeChecks(good, config())
        XCTAssertNotNil(state.metadata[SafeTensors.headerChecksumKey])
        let edits: [(String, (inout [String: String]) -> Void)] = [
            ("epoch", { $0["epoch"] = "3" }),
            ("step_in_epoch", { $0["step_in_epoch"] = "3" }),
            ("global_step", { $0["global_step"] = "8" }),
            ("samples_seen", { $0["samples_seen"] = "160" }),
            ("epoch_loss_sum_bits", { $0["epoch_loss_sum_bits"] = String(UInt64($0["epoch_loss_sum_bits"]!, radix: 16)! ^ 1, radix: 16) }),
            ("optimizer.step", { $0["optimizer.step"] = "8" }),
            ("lr", { $0["lr"] = "0.002" }),
            ("seed", { $0["seed"] = "1" }),
            ("noise", { $0["noise"] = "mask:0.5" }),
            ("data_crc32", { $0["data_crc32"] = "00000000" }),
            ("added key", { $0["note"] = "hello" }),
            ("removed key", { $0["world_size"] = nil }),
        ]
        for (name, edit) in edits {
            let edited = try rewrite(good, as: name, edit)
            XCTAssertThrowsError(try resumeChecks(edited, config()), name) { error in
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix(edited + ": header checksum mismatch: the checkpoint's metadata was edited or is corrupt (stored "), "\(name): \(text)")
                XCTAssertTrue(text.hasSuffix("); resume from an older checkpoint"), "\(name): \(text)")
                XCTAssertFalse(text.contains("\n"))
            }
        }
    }

    func testTensorTableIsCoveredAndJSONLayoutIsNot() throws {
        let good = try checkpoint(after: 3, config())
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        var n = 0
        for i in 0..<8 { n |= Int(bytes[i]) << (8 * i) }
        var header = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as! [String: Any]
        func write(_ header: [String: Any], as name: String, options: JSONSerialization.WritingOptions) throws -> String {
            var h = [UInt8](try JSONSerialization.data(withJSONObject: header, options: options))
            while h.count % 8 != 0 { h.append(0x20) }
            var out: [UInt8] = []
            var length = UInt64(h.count).littleEndian
            withUnsafeBytes(of: &length) { out += $0 }
            let path = dir + "/" + name + ".safetensors"
            _ = FileManager.default.createFile(atPath: path, contents: Data(out + h + bytes[(8 + n)...]))
            return path
        }
        // other whitespace, key order and escapes ("\/"): the same header, it loads
        XCTAssertNoThrow(try resumeChecks(try write(header, as: "pretty", options: [.prettyPrinted]), config()))
        XCTAssertNoThrow(try resumeChecks(try write(header, as: "sorted", options: [.sortedKeys]), config()))
        // two tensors of one shape swap places in the data section: data_crc32 still holds, the model would differ
        let a = "encoder.0.bias", b = "optimizer.exp_avg.encoder.0.bias"
        var entryA = header[a] as! [String: Any], entryB = header[b] as! [String: Any]
        let offsetsA = entryA["data_offsets"]
        entryA["data_offsets"] = entryB["data_offsets"]
        entryB["data_offsets"] = offsetsA
        header[a] = entryA; header[b] = entryB
        let swapped = try write(header, as: "swapped", options: [])
        assertRefused(swapped, config(), "header checksum mismatch")
    }

    func testOldStyleCheckpointLoadsAndResumesExactly() throws {
        let straight = try makeRun(config(), data: Self.data)
        XCTAssertEqual(try straight.run(), .finished)
        let old = try oldStyle(try checkpoint(after: 7, config()))
        XCTAssertNil(try resumeChecks(old, config()).metadata[SafeTensors.headerChecksumKey])
        let resumed = try makeRun(config(), data: Self.data, directory: dir + "/resumed", resume: .path(old))
        XCTAssertEqual(try resumed.run(), .finished)
        XCTAssertEqual(resumed.trainer.position.globalStep, 10)
        XCTAssertEqual(resumed.trainer.params.array, straight.trainer.params.array)
        // what the resumed run writes has the header checksum again
        let written = try XCTUnwrap(Checkpoint.list(in: dir + "/resumed/checkpoints").first)
        XCTAssertNotNil(try resumeChecks(written, config()).metadata[SafeTensors.headerChecksumKey])
    }

    func testOldStyleInconsistentPositionIsRefused() throws {
        let good = try checkpoint(after: 7, config())   // epoch 2, step 2: global 7, samples 140, Adam step 7
        let at = "(epoch 2, step_in_epoch 2, 5 steps per epoch"
        assertRefused(try oldStyle(good, as: "epoch") { $0["epoch"] = "1" },
                      config(), "global_step 7 disagrees with the position (epoch 1, step_in_epoch 2, 5 steps per epoch): expected 2")
        assertRefused(try oldStyle(good, as: "step") { $0["step_in_epoch"] = "3" },
                      config(), "global_step 7 disagrees with the position (epoch 2, step_in_epoch 3, 5 steps per epoch): expected 8")
        assertRefused(try oldStyle(good, as: "global") { $0["global_step"] = "8" }, config(), "optimizer.step 7 disagrees with global_step 8")
        assertRefused(try oldStyle(good, as: "samples") { $0["samples_seen"] = "160" },
                      config(), "samples_seen 160 disagrees with the position \(at), batch size 20, 100 samples): expected 140")
        assertRefused(try oldStyle(good, as: "adam") { $0["optimizer.step"] = "6" }, config(), "optimizer.step 6 disagrees with global_step 7")
        assertRefused(try oldStyle(good, as: "loss") { $0["epoch_loss_sum_bits"] = String(UInt64($0["epoch_loss_sum_bits"]!, radix: 16)! ^ 1, radix: 16) },
                      config(), "disagrees with epoch_loss_sum_bits")
        assertRefused(try oldStyle(good, as: "step0") { $0["step_in_epoch"] = "0"; $0["global_step"] = "5"; $0["samples_seen"] = "100"; $0["optimizer.step"] = "5" },
                      config(), "is not 0 at step_in_epoch 0")
        assertRefused(try oldStyle(good, as: "beyond") { $0["epoch"] = "4"; $0["step_in_epoch"] = "0"; $0["global_step"] = "15"; $0["samples_seen"] = "300"
                          $0["optimizer.step"] = "15"; $0["epoch_loss_sum"] = "0.0"; $0["epoch_loss_sum_bits"] = "0" },
                      config(), "epoch 4 is beyond the end of the checkpoint's training, which had 2 epoch(s)")
        assertRefused(try oldStyle(good, as: "past") { $0["step_in_epoch"] = "6" }, config(), "position step 6 is beyond the 5 steps of an epoch")
        // a setting edited in an old-style file is a settings mismatch, named by its flag
        XCTAssertThrowsError(try resumeChecks(try oldStyle(good, as: "lr") { $0["lr"] = "0.5" }, config())) {
            XCTAssertTrue("\($0)".hasPrefix("--lr: the checkpoint"), "\($0)")
        }
        // --epochs may change on resume: the completed part counts the checkpoint's own epochs
        var fewer = config(); fewer.epochs = 1
        XCTAssertNoThrow(try resumeChecks(try oldStyle(good), fewer))
        var more = config(); more.epochs = 9
        XCTAssertNoThrow(try resumeChecks(good, more))
    }

    func testShortLastBatchCountsItsSamples() throws {
        // batch 30 over 100 samples: 30, 30, 30, 10
        let endOfEpoch = try checkpoint(after: 4, config(batchSize: 30))
        XCTAssertEqual(try resumeChecks(endOfEpoch, config(batchSize: 30)).position.samplesSeen, 100)
        let mid = try checkpoint(after: 6, config(batchSize: 30))
        XCTAssertEqual(try resumeChecks(mid, config(batchSize: 30)).position.samplesSeen, 160)
        assertRefused(try oldStyle(mid) { $0["samples_seen"] = "180" }, config(batchSize: 30),
                      "samples_seen 180 disagrees with the position (epoch 2, step_in_epoch 2, 4 steps per epoch, batch size 30, 100 samples): expected 160")
    }

    func testStackedModelCountsAdamStepsPerPhase() throws {
        // after 7 steps: layer 1 pre-trained (5 steps), fine-tuning at step 2 with a fresh Adam
        let mid = try checkpoint(after: 7, stacked)
        let state = try resumeChecks(mid, stacked)
        XCTAssertEqual(state.position.phase, 1)
        XCTAssertEqual(state.optimizerStep, 2)
        var longer = stacked; longer.epochs = 4
        XCTAssertNoThrow(try resumeChecks(mid, longer))
        // the end of pre-training: phase 0 at epoch 2, step 0, Adam step 5
        XCTAssertEqual(try resumeChecks(try checkpoint(after: 5, stacked), stacked).optimizerStep, 5)
        assertRefused(try oldStyle(mid, as: "adam") { $0["optimizer.step"] = "7" }, stacked,
                      "optimizer.step 7 disagrees with the position (fine-tune epoch 1, step_in_epoch 2, 5 steps per epoch): expected 2")
        assertRefused(try oldStyle(mid, as: "global") { $0["global_step"] = "2"; $0["samples_seen"] = "40" }, stacked,
                      "global_step 2 disagrees with the position (fine-tune epoch 1, step_in_epoch 2, 5 steps per epoch): expected 7")
    }
}
