// Checkpoints: a run stopped mid-epoch and resumed ends bitwise where the uninterrupted run ends;
// settings that would change the training problem are refused by name; and a checkpoint file is
// untrusted input: every malformed case is a clear error, never a crash.

import DAE
import Foundation
import XCTest

final class CheckpointTests: XCTestCase {
    static let data: Dataset = try! Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(100)
    var dir = ""
    override func setUp() { dir = temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    var config: TrainConfig {
        var c = TrainConfig()
        c.epochs = 2
        return c
    }

    /// A run stopped after `steps` steps (mid-epoch, as by a signal) in a run directory under
    /// `dir`; returns it and the checkpoint it wrote.
    func checkpointAfter(steps: Int, path: String) throws -> TrainingRun {
        let run = try makeRun(config, data: Self.data, directory: dir + "/run", stopAfter: steps)
        XCTAssertEqual(try run.run(), .stopped)
        let written = dir + "/run/checkpoints/" + Checkpoint.fileName(globalStep: steps)
        try FileManager.default.copyItem(atPath: written, toPath: path)
        return run
    }

    func testResumeMidEpochIsBitwiseExact() throws {
        let straight = try makeRun(config, data: Self.data), straightLog = EventLog()
        straight.observers = [straightLog]
        XCTAssertEqual(try straight.run(), .finished)

        let stopped = try makeRun(config, data: Self.data, directory: dir + "/run", stopAfter: 3)   // epoch 1 has 5 steps
        XCTAssertEqual(try stopped.run(), .stopped)
        XCTAssertEqual(stopped.trainer.position.globalStep, 3)
        XCTAssertEqual(stopped.trainer.position.stepInEpoch, 3)
        XCTAssertEqual(Checkpoint.list(in: dir + "/run/checkpoints").map { ($0 as NSString).lastPathComponent }, ["step-000000003.safetensors"])

        // --resume auto in the same run directory finds it and ends where the straight run ends
        let resumed = try makeRun(config, data: Self.data, directory: dir + "/run", resume: .auto), log = EventLog()
        resumed.observers = [log]
        XCTAssertEqual(try resumed.run(), .finished)
        guard case .resumed(let from, let position, _) = log.events.first else { return XCTFail("no resume event: \(log.events)") }
        XCTAssertEqual(from, dir + "/run/checkpoints/step-000000003.safetensors")
        XCTAssertEqual(position, stopped.trainer.position)
        XCTAssertEqual(resumed.trainer.params.array, straight.trainer.params.array)
        XCTAssertEqual(resumed.trainer.optimizer.m.array, straight.trainer.optimizer.m.array)
        XCTAssertEqual(log.losses, straightLog.losses)              // the epoch-1 mean includes the steps before the stop
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/model.safetensors"))
    }

    /// The cosine schedule is a function of the optimizer's step count, which the checkpoint
    /// holds: cut mid-epoch and resumed, the run ends where the uninterrupted one ends.
    func testResumeWithACosineScheduleIsBitwiseExact() throws {
        var cosine = config
        cosine.lrSchedule = .cosine
        let straight = try makeRun(cosine, data: Self.data)
        XCTAssertEqual(try straight.run(), .finished)
        let stopped = try makeRun(cosine, data: Self.data, directory: dir + "/run", stopAfter: 7)   // in epoch 2 of 2
        XCTAssertEqual(try stopped.run(), .stopped)
        let resumed = try makeRun(cosine, data: Self.data, directory: dir + "/run", resume: .auto)
        XCTAssertEqual(try resumed.run(), .finished)
        XCTAssertEqual(resumed.trainer.params.array, straight.trainer.params.array)
        // and the schedule changed the training: not the constant run's weights
        let constant = try makeRun(config, data: Self.data)
        XCTAssertEqual(try constant.run(), .finished)
        XCTAssertNotEqual(constant.trainer.params.array, straight.trainer.params.array)
    }

    func testCheckpointAtAnEpochEndStartsTheNextEpoch() throws {
        let path = dir + "/end.safetensors"
        _ = try checkpointAfter(steps: 5, path: path)
        let trainer = try Trainer(config: config, data: Self.data)
        try trainer.restore(try Checkpoint.load(path: path, layout: trainer.layout))
        XCTAssertEqual(trainer.position.epoch, 2)
        XCTAssertEqual(trainer.position.stepInEpoch, 0)
        XCTAssertEqual(trainer.position.globalStep, 5)
    }

    func testRestoreRejectsStateOfAnotherSize() throws {
        let path = dir + "/c.safetensors"
        _ = try checkpointAfter(steps: 1, path: path)
        let trainer = try Trainer(config: config, data: Self.data)
        var state = try Checkpoint.load(path: path, layout: trainer.layout)
        state.firstMoment.removeLast()
        XCTAssertThrowsError(try trainer.restore(state, path: path)) { error in
            XCTAssertEqual("\(error)", "\(path): holds \(trainer.params.count - 1) exp_avg values, this model has \(trainer.params.count)")
        }
    }

    func testMismatchedSettingsAreNamed() throws {
        let path = dir + "/c.safetensors"
        _ = try checkpointAfter(steps: 2, path: path)
        let layout = ConvDenoiser.makeLayout()
        let state = try Checkpoint.load(path: path, layout: layout)
        let fingerprint = Checkpoint.fingerprint(Self.data)
        var other = config
        other.batchSize = 10
        XCTAssertThrowsError(try Checkpoint.checkCompatible(state, path: path, config: other, data: Self.data, dataFingerprint: fingerprint, stepsPerEpoch: 10)) {
            XCTAssertTrue("\($0)".hasPrefix("--batch-size: the checkpoint \(path) was trained with batch size 20, this run has 10"), "\($0)")
        }
        other = config; other.noise = .mask(p: 0.5)
        XCTAssertThrowsError(try Checkpoint.checkCompatible(state, path: path, config: other, data: Self.data, dataFingerprint: fingerprint, stepsPerEpoch: 5)) {
            XCTAssertTrue("\($0)".hasPrefix("--noise:"), "\($0)")
        }
        // fewer images: another --limit is named as such, the same --limit on other data as the data
        other = config; other.limit = 60
        XCTAssertThrowsError(try Checkpoint.checkCompatible(state, path: path, config: other, data: Self.data.prefix(60), dataFingerprint: fingerprint, stepsPerEpoch: 3)) {
            XCTAssertTrue("\($0)".hasPrefix("--limit: the checkpoint \(path) was trained with no --limit, this run has --limit 60; resume it with no --limit"), "\($0)")
        }
        XCTAssertThrowsError(try Checkpoint.checkCompatible(state, path: path, config: config, data: Self.data.prefix(60), dataFingerprint: fingerprint, stepsPerEpoch: 3)) {
            XCTAssertTrue("\($0)".contains("--data: \(Self.data.source) is not the training data of the checkpoint \(path): it had 100 image(s) of 28x28, this run has 60 image(s) of 28x28"), "\($0)")
        }
        XCTAssertThrowsError(try Checkpoint.checkCompatible(state, path: path, config: config, data: Self.data, dataFingerprint: fingerprint ^ 1, stepsPerEpoch: 5)) {
            XCTAssertTrue("\($0)".contains("the same 100 image(s) of 28x28, but their pixels differ"), "\($0)")
        }
        other = config; other.lrSchedule = .cosine
        XCTAssertThrowsError(try Checkpoint.checkCompatible(state, path: path, config: other, data: Self.data, dataFingerprint: fingerprint, stepsPerEpoch: 5)) {
            XCTAssertTrue("\($0)".hasPrefix("--lr-schedule: the checkpoint \(path) was trained with lr schedule constant, this run has cosine"), "\($0)")
        }
        // with a cosine schedule the epochs are fixed too: they set the schedule's length
        var cosine = config
        cosine.lrSchedule = .cosine
        let cosinePath = dir + "/cosine.safetensors"
        let cosineRun = try makeRun(cosine, data: Self.data, directory: dir + "/cosine", stopAfter: 2)
        XCTAssertEqual(try cosineRun.run(), .stopped)
        try FileManager.default.copyItem(atPath: dir + "/cosine/checkpoints/" + Checkpoint.fileName(globalStep: 2), toPath: cosinePath)
        let cosineState = try Checkpoint.load(path: cosinePath, layout: layout)
        XCTAssertNoThrow(try Checkpoint.checkCompatible(cosineState, path: cosinePath, config: cosine, data: Self.data, dataFingerprint: fingerprint, stepsPerEpoch: 5))
        other = cosine; other.epochs = 7
        XCTAssertThrowsError(try Checkpoint.checkCompatible(cosineState, path: cosinePath, config: other, data: Self.data, dataFingerprint: fingerprint, stepsPerEpoch: 5)) {
            XCTAssertTrue("\($0)".hasPrefix("--epochs: the checkpoint \(cosinePath) was trained with schedule epochs 2, this run has 7"), "\($0)")
        }
        other = config; other.epochs = 7; other.reduce = .fast          // allowed to change
        XCTAssertNoThrow(try Checkpoint.checkCompatible(state, path: path, config: other, data: Self.data, dataFingerprint: fingerprint, stepsPerEpoch: 5))
    }

    func testListingAndPruning() throws {
        for step in [3, 12, 7] {
            FileManager.default.createFile(atPath: dir + "/" + Checkpoint.fileName(globalStep: step), contents: Data([1]))
        }
        FileManager.default.createFile(atPath: dir + "/.step-000000099.safetensors.tmp-1", contents: Data([1]))
        XCTAssertEqual(Checkpoint.list(in: dir).map { ($0 as NSString).lastPathComponent },
                       ["step-000000012.safetensors", "step-000000007.safetensors", "step-000000003.safetensors"])
        Checkpoint.prune(dir, keep: 2)
        XCTAssertEqual(Checkpoint.list(in: dir).count, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/step-000000003.safetensors"))
    }

    // MARK: untrusted input

    /// A valid checkpoint's bytes, and a helper to expect a one-line checkpoint error.
    func validBytes() throws -> [UInt8] {
        let path = dir + "/good.safetensors"
        _ = try checkpointAfter(steps: 1, path: path)
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    func assertRejected(_ bytes: [UInt8], _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        let path = dir + "/bad.safetensors"
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        XCTAssertThrowsError(try Checkpoint.load(path: path, layout: ConvDenoiser.makeLayout()), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix(path + ":"), "does not name the file: \(text)", file: file, line: line)
            XCTAssertTrue(text.contains(fragment), "'\(text)' lacks '\(fragment)'", file: file, line: line)
            XCTAssertFalse(text.contains("\n"), file: file, line: line)
        }
    }

    /// Rebuilds a file from a JSON header (as text) and a data section.
    func file(header: String, data: [UInt8]) -> [UInt8] {
        var h = Array(header.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        var out: [UInt8] = []
        var n = UInt64(h.count).littleEndian
        withUnsafeBytes(of: &n) { out += $0 }
        return out + h + data
    }

    func header(of bytes: [UInt8]) -> (String, [UInt8]) {
        var n = 0
        for i in 0..<8 { n |= Int(bytes[i]) << (8 * i) }
        return (String(decoding: bytes[8..<(8 + n)], as: UTF8.self), Array(bytes[(8 + n)...]))
    }

    func testRejectsTruncatedFiles() throws {
        let good = try validBytes()
        assertRejected(Array(good.prefix(good.count - 100)), "outside")
        assertRejected(Array(good.prefix(200)), "header length")
        assertRejected(Array(good.prefix(5)), "too short")
        assertRejected([], "too short")
    }

    func testRejectsFlippedDataBytes() throws {
        var bytes = try validBytes()
        bytes[bytes.count - 1000] ^= 0x01
        assertRejected(bytes, "checksum mismatch")
    }

    func testRejectsFlippedHeaderBytes() throws {
        var bytes = try validBytes()
        bytes[9] = 0x00             // the JSON's first key quote becomes a NUL
        assertRejected(bytes, "not valid JSON")
    }

    func testRejectsHeaderLengthLargerThanFile() throws {
        var bytes = try validBytes()
        bytes[5] = 0x7F             // header length ~ 2^47
        assertRejected(bytes, "exceeds")
    }

    func testRejectsOffsetsOutsideOrOverlapping() {
        let data = [UInt8](repeating: 0, count: 16)
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#, data: data), "outside")
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, data: data), "overlaps")
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#, data: data), "gap")
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: data), "outside")
    }

    func testRejectsWrongDtypeAndOverflowingShapes() {
        let data = [UInt8](repeating: 0, count: 16)
        assertRejected(file(header: #"{"a":{"dtype":"F16","shape":[8],"data_offsets":[0,16]}}"#, data: data), "dtype F16")
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}}"#, data: data), "shape")
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}"#, data: data), "non-negative integers")
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,16]}}"#, data: data), "non-negative integers")
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[4]}}"#, data: data), "malformed")
        assertRejected(file(header: #"[1,2,3]"#, data: data), "not a JSON object")
    }

    func testRejectsNonStringMetadataAndMissingTensors() throws {
        let data = [UInt8](repeating: 0, count: 16)
        assertRejected(file(header: #"{"__metadata__":{"epoch":3},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: data), "not a string")
        // a real checkpoint with one tensor's entry renamed: its data checksum still holds, the
        // header checksum (which covers the tensor table) does not; in a file without one (written
        // before it existed) the tensor is missing
        let (h, d) = header(of: try validBytes())
        let renamed = h.replacingOccurrences(of: "\"decoder.2.bias\"", with: "\"decoder.9.bias\"")
        assertRejected(file(header: renamed, data: d), "header checksum mismatch")
        let unchecked = renamed.replacingOccurrences(of: #""header_crc32":"[0-9a-f]{8}","#, with: "", options: .regularExpression)
        XCTAssertNotEqual(unchecked, renamed)
        assertRejected(file(header: unchecked, data: d), "missing tensor 'decoder.2.bias'")
        // the format marker
        let weightsOnly = h.replacingOccurrences(of: "\"dae-dist checkpoint\"", with: "\"dae-dist weights\"")
        assertRejected(file(header: weightsOnly, data: d), "is a weights file")
        let future = h.replacingOccurrences(of: "\"format_version\":\"1\"", with: "\"format_version\":\"9\"")
        assertRejected(file(header: future, data: d), "version 9")
    }

    func testAtomicWriteLeavesNoPartialFile() throws {
        let path = dir + "/a.safetensors"
        try writeFileAtomically([1, 2, 3], to: path)
        try writeFileAtomically([4, 5], to: path)
        XCTAssertEqual([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), [4, 5])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["a.safetensors"])
        XCTAssertThrowsError(try writeFileAtomically([1], to: "/proc/version/x/y")) {
            XCTAssertTrue("\($0)".hasPrefix("cannot write /proc/version/x/y"), "\($0)")
        }
    }
}
