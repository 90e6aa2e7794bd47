// A run directory cannot be misused: a second job on it stops naming the holder; a fresh start
// in a used one is refused (unless --overwrite); resuming a finished run says so, one with fewer
// --epochs than its checkpoint is refused; a diverged state is never written; `--resume auto`
// alone continues a run with its own settings.

import DAE
import Foundation
import XCTest

final class RunDirectoryTests: XCTestCase {
    let short = ["train", "--epochs", "1", "--limit", "40", "--threads", "1", "--eval-every", "0", "--quiet"]
    var dir = ""
    override func setUp() { dir = temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func errorLines(_ r: DAEDist.Result) -> [Substring] {
        r.stderr.split(separator: "\n").filter { !$0.hasPrefix("Usage:") && !$0.hasPrefix("  See") }
    }

    func testASecondJobOnTheRunDirectoryStopsNamingTheHolder() throws {
        let run = dir + "/run"
        do {
            let held = try RunDirectoryLock(directory: run)       // as a running job holds it
            let r = try DAEDist.run(short + ["--run-dir", run])
            XCTAssertEqual(r.status, 1)
            XCTAssertEqual(errorLines(r).count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("\(run) is in use by another dae-dist run (pid \(getpid()) on "), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/config.json"), "the second job wrote into the run")
            withExtendedLifetime(held) {}
        }
        // released (as the kernel does when a job dies): the run goes ahead
        let r = try DAEDist.run(short + ["--run-dir", run])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func testAFreshStartInAUsedRunDirectoryIsRefusedUnlessOverwrite() throws {
        let run = dir + "/run"
        XCTAssertEqual(try DAEDist.run(short + ["--run-dir", run]).status, 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors"))
        let again = try DAEDist.run(short + ["--run-dir", run, "--seed", "3"])
        XCTAssertEqual(again.status, 1)
        XCTAssertEqual(errorLines(again).count, 1, again.stderr)
        for fragment in ["--run-dir", "holds an earlier run", "--resume auto", "--overwrite"] {
            XCTAssertTrue(again.stderr.contains(fragment), again.stderr)
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors")), before, "nothing saved may be lost")
        let overwritten = try DAEDist.run(short + ["--run-dir", run, "--seed", "3", "--overwrite"])
        XCTAssertEqual(overwritten.status, 0, overwritten.stderr)
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors")), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints"), ["step-000000002.safetensors"])
        let both = try DAEDist.run(short + ["--run-dir", run, "--overwrite", "--resume", "auto"])
        XCTAssertEqual(both.status, 64)
        XCTAssertTrue(both.stderr.contains("--overwrite"), both.stderr)
    }

    func testResumingAFinishedRunSaysSoAndFewerEpochsAreRefused() throws {
        let run = dir + "/run"
        XCTAssertEqual(try DAEDist.run(short + ["--run-dir", run, "--epochs", "2"]).status, 0)
        let weights = try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors"))
        let finished = try DAEDist.run(["train", "--run-dir", run, "--resume", "auto"])
        XCTAssertEqual(finished.status, 0, finished.stderr)
        XCTAssertTrue(finished.stdout.contains("already trained to the end of the 2 epochs asked for (step 4); nothing to do"), finished.stdout)
        XCTAssertFalse(finished.stdout.contains("resuming from"), "a false position line: \(finished.stdout)")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors")), weights)
        let fewer = try DAEDist.run(["train", "--run-dir", run, "--resume", "auto", "--epochs", "1"])
        XCTAssertEqual(fewer.status, 1)
        XCTAssertEqual(errorLines(fewer).count, 1, fewer.stderr)
        XCTAssertTrue(fewer.stderr.contains("--epochs: the checkpoint \(run)/checkpoints/step-000000004.safetensors has trained to the end of epoch 2, past the 1 epochs asked for; pass --epochs 2 or more"), fewer.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors")), weights, "mislabelled weights written")
    }

    func testResumeAutoAloneContinuesWithTheRunsOwnSettings() throws {
        let flags = ["--limit", "60", "--batch-size", "12", "--lr", "0.002", "--seed", "9", "--noise", "mask:0.3", "--loss", "bce",
                     "--threads", "1", "--eval-every", "0", "--quiet"]
        XCTAssertEqual(try DAEDist.run(["train", "--epochs", "2", "--run-dir", dir + "/straight"] + flags).status, 0)
        XCTAssertEqual(try DAEDist.run(["train", "--epochs", "1", "--run-dir", dir + "/split"] + flags).status, 0)
        let resumed = try DAEDist.run(["train", "--run-dir", dir + "/split", "--resume", "auto", "--epochs", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("batch 12, Adam lr 0.002, noise mask:0.3, loss bce, seed 9"), resumed.stdout)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/split/model.safetensors")),
                       try Data(contentsOf: URL(fileURLWithPath: dir + "/straight/model.safetensors")))
        // a flag given explicitly must still agree with the checkpoint
        let disagree = try DAEDist.run(["train", "--run-dir", dir + "/split", "--resume", "auto", "--epochs", "3", "--seed", "1"])
        XCTAssertEqual(disagree.status, 1)
        XCTAssertTrue(disagree.stderr.contains("--seed:"), disagree.stderr)
    }

    func testADivergedStateIsNeverWritten() throws {
        let run = dir + "/run"
        let r = try DAEDist.run(short + ["--run-dir", run, "--lr", "3e38", "--checkpoint-every", "1"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("training diverged") && r.stderr.contains("--lr"), r.stderr)
        let written = (try? FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints")) ?? []
        XCTAssertEqual(written, [], "a checkpoint of a diverged state was written")
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/model.safetensors"))
    }

    func testDefaultRunDirectories() {
        let now = Date(timeIntervalSince1970: 0)
        XCTAssertEqual(RunSettings.defaultDirectory(now: now, environment: [:]), "runs/19700101-000000-\(getpid())")
        XCTAssertEqual(RunSettings.defaultDirectory(now: now, environment: ["SLURM_JOB_ID": "4711"]), "runs/slurm-4711")
    }
}
