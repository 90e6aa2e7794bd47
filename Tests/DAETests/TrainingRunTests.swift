// TrainingRun's own decisions, driven through the library: a stop requested before the first step,
// keep-K pruning next to checkpoints of another timeline, and what observers are told.

import DAE
import Foundation
import XCTest

final class TrainingRunTests: XCTestCase {
    static let data: Dataset = try! Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(100)
    var dir = ""
    override func setUp() { dir = temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testAStopBeforeTheFirstStepWritesNothing() throws {
        var config = TrainConfig()
        config.epochs = 1
        let run = try makeRun(config, data: Self.data, directory: dir + "/run")
        run.stopRequested = { true }
        let log = EventLog()
        run.observers = [log]
        XCTAssertEqual(try run.run(), .stopped)
        XCTAssertEqual(run.trainer.position.globalStep, 0)
        guard case .stopped(_, _, let checkpoint) = log.events.last else { return XCTFail("\(log.events)") }
        XCTAssertNil(checkpoint)
        XCTAssertEqual(Checkpoint.list(in: dir + "/run/checkpoints"), [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/model.safetensors"))
    }

    func testPruningKeepsTheCheckpointJustWrittenAndNeverALaterOne() throws {
        var config = TrainConfig()
        config.epochs = 2                                   // 5 steps per epoch
        let first = try makeRun(config, data: Self.data, directory: dir + "/a", stopAfter: 3)
        XCTAssertEqual(try first.run(), .stopped)
        let mine = dir + "/a/checkpoints/step-000000003.safetensors"
        // the folder also holds later checkpoints of another timeline (say, copied in by hand)
        for step in [97, 98, 99] {
            try FileManager.default.copyItem(atPath: mine, toPath: dir + "/a/checkpoints/" + Checkpoint.fileName(globalStep: step))
        }
        var settings = RunSettings(directory: dir + "/a")
        settings.evalEvery = 0
        settings.keep = 2
        settings.resume = .path(mine)
        let resumed = try TrainingRun(config: config, settings: settings, data: Self.data, test: nil)
        let log = EventLog()
        resumed.observers = [log]
        XCTAssertEqual(try resumed.run(), .finished)
        let written = log.events.compactMap { event -> String? in
            if case .checkpointWritten(let path, _) = event { return (path as NSString).lastPathComponent } else { return nil }
        }
        XCTAssertEqual(written, ["step-000000005.safetensors", "step-000000010.safetensors"])
        // keep 2 of this timeline: the one just written and the newest earlier one; the later
        // checkpoints are not this run's to delete (a newer dae-dist's, or skipped as damaged)
        XCTAssertEqual(Checkpoint.list(in: dir + "/a/checkpoints").map { ($0 as NSString).lastPathComponent },
                       ["step-000000099.safetensors", "step-000000098.safetensors", "step-000000097.safetensors",
                        "step-000000010.safetensors", "step-000000005.safetensors"])
    }
}
