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

    func contents(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }
    func listing(_ path: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }

    func testResumingAnotherRunsCheckpointIntoAUsedRunDirectoryIsRefused() throws {
        let x = dir + "/x", y = dir + "/y"
        XCTAssertEqual(try DAEDist.run(short + ["--run-dir", x]).status, 0)
        XCTAssertEqual(try DAEDist.run(short + ["--run-dir", y, "--seed", "1", "--checkpoint-every", "1"]).status, 0)
        let before = (listing(x + "/checkpoints"), contents(x + "/config.json"), contents(x + "/model.safetensors"))
        let other = y + "/checkpoints/step-000000001.safetensors"
        let r = try DAEDist.run(["train", "--run-dir", x, "--resume", other, "--seed", "1"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(errorLines(r).count, 1, r.stderr)
        for fragment in ["--resume: \(other) is not a checkpoint of \(x)", "pass --run-dir \(y)", "new --run-dir"] {
            XCTAssertTrue(r.stderr.contains(fragment), r.stderr)
        }
        XCTAssertEqual(listing(x + "/checkpoints"), before.0, "the other run's checkpoints were pruned")
        XCTAssertEqual(contents(x + "/config.json"), before.1)
        XCTAssertEqual(contents(x + "/model.safetensors"), before.2)
        // into a new directory it branches, with the checkpoint's own run's settings (seed 1)
        let branched = try DAEDist.run(["train", "--run-dir", dir + "/z", "--resume", other])
        XCTAssertEqual(branched.status, 0, branched.stderr)
        XCTAssertEqual(contents(dir + "/z/model.safetensors"), contents(y + "/model.safetensors"))
        // and its own checkpoint, given by path, still resumes in place
        let own = try DAEDist.run(["train", "--run-dir", y, "--resume", y + "/checkpoints/step-000000001.safetensors"])
        XCTAssertEqual(own.status, 0, own.stderr)
    }

    func testResumeAutoNeverTrainsOverARunItCannotContinue() throws {
        // a finished run without epoch checkpoints: only its final weights
        let finished = dir + "/finished"
        XCTAssertEqual(try DAEDist.run(short + ["--run-dir", finished, "--no-epoch-checkpoints"]).status, 0)
        let weights = contents(finished + "/model.safetensors")
        let r = try DAEDist.run(["train", "--run-dir", finished, "--resume", "auto"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(errorLines(r).count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("--resume: \(finished) holds a run but no checkpoint to continue from"), r.stderr)
        XCTAssertTrue(r.stderr.contains("--overwrite"), r.stderr)
        XCTAssertEqual(contents(finished + "/model.safetensors"), weights)

        // checkpoints that are all damaged: each skipped with a warning, then refused, none deleted
        let damaged = dir + "/damaged"
        XCTAssertEqual(try DAEDist.run(short + ["--run-dir", damaged, "--checkpoint-every", "1"]).status, 0)
        for name in listing(damaged + "/checkpoints") {
            FileManager.default.createFile(atPath: damaged + "/checkpoints/" + name, contents: Data("torn".utf8))
        }
        let files = listing(damaged + "/checkpoints")
        let d = try DAEDist.run(["train", "--run-dir", damaged, "--resume", "auto", "--keep", "1"])
        XCTAssertEqual(d.status, 1)
        XCTAssertTrue(d.stderr.contains("no checkpoint that can be resumed (2 skipped"), d.stderr)
        XCTAssertEqual(listing(damaged + "/checkpoints"), files)

        // a checkpoint of a newer format: not skipped as damaged, refused naming the version
        let newer = dir + "/newer"
        XCTAssertEqual(try DAEDist.run(short + ["--run-dir", newer]).status, 0)
        let path = newer + "/checkpoints/step-000000002.safetensors"
        let (tensors, metadata) = try SafeTensors.decode([UInt8](XCTUnwrap(contents(path))), path: path)
        var future = metadata
        future["format_version"] = "2"
        future[SafeTensors.headerChecksumKey] = nil
        try Data(SafeTensors.encode(tensors, metadata: future)).write(to: URL(fileURLWithPath: path))
        let n = try DAEDist.run(["train", "--run-dir", newer, "--resume", "auto", "--epochs", "2"])
        XCTAssertEqual(n.status, 1)
        XCTAssertTrue(n.stderr.contains("checkpoint format version 2 (this one reads 1)"), n.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))

        // a new or empty directory still starts afresh (a Slurm job's first start)
        let fresh = try DAEDist.run(short + ["--run-dir", dir + "/new", "--resume", "auto"])
        XCTAssertEqual(fresh.status, 0, fresh.stderr)
    }

    func testOverwriteRemovesOnlyWhatARunWrote() throws {
        let run = dir + "/run"
        XCTAssertEqual(try DAEDist.run(short + ["--run-dir", run, "--eval-every", "1", "--eval-limit", "20"]).status, 0)
        XCTAssertEqual(listing(run + "/samples"), ["epoch-001.png"])
        let mine = [run + "/samples/notes.txt", run + "/checkpoints/README", run + "/tensorboard/my.txt", run + "/mine.txt"]
        for path in mine { FileManager.default.createFile(atPath: path, contents: Data("mine".utf8)) }
        FileManager.default.createFile(atPath: run + "/checkpoints/.step-000000009.safetensors.tmp-99999", contents: Data())
        let r = try DAEDist.run(short + ["--run-dir", run, "--overwrite", "--seed", "5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for path in mine { XCTAssertEqual(contents(path), Data("mine".utf8), path) }
        XCTAssertEqual(listing(run + "/samples"), ["notes.txt"])
        XCTAssertEqual(listing(run + "/checkpoints"), ["README", "step-000000002.safetensors"])
        // a user's own config.json in an otherwise empty directory is not replaced without asking
        let own = dir + "/own"
        try FileManager.default.createDirectory(atPath: own, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: own + "/config.json", contents: Data("{\"mine\": 1}".utf8))
        let refused = try DAEDist.run(short + ["--run-dir", own])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("holds an earlier run (\(own)/config.json)"), refused.stderr)
        XCTAssertEqual(contents(own + "/config.json"), Data("{\"mine\": 1}".utf8))
    }

    func testResumeWithoutAUsableConfigurationSaysSo() throws {
        // a run directory with no config.json: a new run, said on the first line
        let typo = try DAEDist.run(short.filter { $0 != "--quiet" } + ["--run-dir", dir + "/typo", "--resume", "auto"])
        XCTAssertEqual(typo.status, 0, typo.stderr)
        XCTAssertTrue(typo.stdout.hasPrefix("note: \(dir)/typo has no config.json"), typo.stdout)
        // a bogus config.json is named, not ignored
        let run = dir + "/run"
        XCTAssertEqual(try DAEDist.run(short + ["--run-dir", run, "--limit", "60"]).status, 0)
        let config = try XCTUnwrap(contents(run + "/config.json"))
        try config.prefix(40).write(to: URL(fileURLWithPath: run + "/config.json"))
        let torn = try DAEDist.run(["train", "--run-dir", run, "--resume", "auto"])
        XCTAssertEqual(torn.status, 1)
        XCTAssertEqual(errorLines(torn).count, 1, torn.stderr)
        XCTAssertTrue(torn.stderr.contains("\(run)/config.json: is not valid JSON"), torn.stderr)
        // a deleted one: the mismatch that follows says why the flag differs
        try FileManager.default.removeItem(atPath: run + "/config.json")
        let gone = try DAEDist.run(["train", "--run-dir", run, "--resume", "auto"])
        XCTAssertEqual(gone.status, 1)
        XCTAssertTrue(gone.stderr.contains("--limit: the checkpoint"), gone.stderr)
        XCTAssertTrue(gone.stderr.contains("has no config.json, so flags not given took their defaults"), gone.stderr)
    }

    func testChangedDataIsNamedAsSuch() throws {
        let folder = dir + "/images", run = dir + "/run"
        try writeGrayImages(folder, count: 24, size: 16)
        let flags = ["train", "--data", folder, "--epochs", "1", "--batch-size", "10", "--threads", "1", "--eval-every", "0", "--quiet", "--run-dir", run]
        XCTAssertEqual(try DAEDist.run(flags).status, 0)
        // the same count of files, one replaced by another name
        try FileManager.default.moveItem(atPath: folder + "/img-00.png", toPath: folder + "/renamed.png")
        let renamed = try DAEDist.run(flags + ["--resume", "auto"])
        XCTAssertEqual(renamed.status, 1)
        XCTAssertTrue(renamed.stderr.contains("--data: \(folder) is not the training data of the checkpoint"), renamed.stderr)
        XCTAssertFalse(renamed.stderr.contains("--limit"), renamed.stderr)
        try FileManager.default.moveItem(atPath: folder + "/renamed.png", toPath: folder + "/img-00.png")
        // a file added: the counts, and what changes them
        try FileManager.default.copyItem(atPath: folder + "/img-01.png", toPath: folder + "/extra-1.png")
        try FileManager.default.copyItem(atPath: folder + "/img-01.png", toPath: folder + "/extra-2.png")
        let added = try DAEDist.run(flags + ["--resume", "auto"])
        XCTAssertEqual(added.status, 1)
        XCTAssertTrue(added.stderr.contains("files added or removed, or another --val-fraction"), added.stderr)
        XCTAssertFalse(added.stderr.contains("--limit"), added.stderr)
        // another --limit is named as --limit
        let limited = try DAEDist.run(flags + ["--resume", "auto", "--limit", "10"])
        XCTAssertTrue(limited.stderr.contains("--limit: the checkpoint"), limited.stderr)
        XCTAssertTrue(limited.stderr.contains("trained with no --limit, this run has --limit 10"), limited.stderr)
    }

    func testDivergingWeightsAreWarnedAbout() throws {
        let r = try DAEDist.run(["train", "--epochs", "1", "--limit", "100", "--threads", "1", "--eval-every", "0", "--lr", "1e10", "--run-dir", dir + "/run"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("warning: the weights are diverging") && r.stderr.contains("--lr"), r.stderr)
        let fine = try DAEDist.run(["train", "--epochs", "1", "--limit", "100", "--threads", "1", "--eval-every", "0", "--run-dir", dir + "/fine"])
        XCTAssertFalse(fine.stderr.contains("diverging"), fine.stderr)
    }

    func testTemporaryFilesOfAKilledWriteAreRemovedOnTheNextStart() throws {
        let run = dir + "/run"
        XCTAssertEqual(try DAEDist.run(short + ["--run-dir", run]).status, 0)
        // what a SIGKILL inside writeFileAtomically leaves
        let stale = [run + "/checkpoints/.step-000000003.safetensors.tmp-4242", run + "/.model.safetensors.tmp-4242"]
        for path in stale { FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: 100)) }
        let r = try DAEDist.run(["train", "--run-dir", run, "--resume", "auto", "--epochs", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for path in stale { XCTAssertFalse(FileManager.default.fileExists(atPath: path), path) }
        XCTAssertEqual(listing(run + "/checkpoints"), ["step-000000002.safetensors", "step-000000004.safetensors"])
    }

    func testValFractionZeroTrainsOnEveryImageWithoutEvaluation() throws {
        let folder = dir + "/images"
        try writeGrayImages(folder, count: 20, size: 16)
        let flags = ["train", "--data", folder, "--val-fraction", "0", "--epochs", "1", "--batch-size", "10", "--threads", "1", "--quiet"]
        let r = try DAEDist.run(flags + ["--eval-every", "0", "--run-dir", dir + "/run"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let config = try XCTUnwrap(RunConfiguration.read(directory: dir + "/run"))
        XCTAssertEqual(config.trainSamples, 20)
        // with evaluation there is no test split to score: said so
        let evaluated = try DAEDist.run(flags + ["--run-dir", dir + "/run2"])
        XCTAssertEqual(evaluated.status, 1)
        XCTAssertTrue(evaluated.stderr.contains("the test split is empty") && evaluated.stderr.contains("larger --val-fraction"), evaluated.stderr)
    }

    func testAMissingResumeFileIsNamedBeforeTheDataIsLoaded() throws {
        // the data does not exist either: the --resume file is what is named
        let r = try DAEDist.run(["train", "--resume", dir + "/missing.safetensors", "--data", dir + "/no-data", "--run-dir", dir + "/run"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(errorLines(r), ["error: --resume: \(dir)/missing.safetensors: no such file; pass a checkpoint file (<run-dir>/checkpoints/step-N.safetensors), or --resume auto with the run's --run-dir"])
    }

    func testClippingAndWeightDecayAreTheRunsOwnOnResume() throws {
        let run = dir + "/run"
        let flags = ["--limit", "60", "--clip-grad-norm", "0.1", "--weight-decay", "0.01", "--threads", "1", "--eval-every", "0"]
        XCTAssertEqual(try DAEDist.run(["train", "--epochs", "1", "--run-dir", run, "--quiet"] + flags).status, 0)
        let resumed = try DAEDist.run(["train", "--run-dir", run, "--resume", "auto", "--epochs", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("AdamW lr 0.001, weight decay 0.01, gradient norm clipped to 0.1"), resumed.stdout)
        let other = try DAEDist.run(["train", "--run-dir", run, "--resume", "auto", "--epochs", "3", "--weight-decay", "0.02"])
        XCTAssertEqual(other.status, 1)
        XCTAssertTrue(other.stderr.contains("--weight-decay: the checkpoint"), other.stderr)
        for bad in [["--clip-grad-norm", "0"], ["--weight-decay", "-1"]] {
            let r = try DAEDist.run(short + ["--run-dir", dir + "/bad"] + bad)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains(bad[0] + ": must be"), r.stderr)
        }
        // fast mode on one rank: the workers' gradients summed before the norm
        XCTAssertEqual(try DAEDist.run(short + ["--run-dir", dir + "/fast", "--reduce", "fast", "--clip-grad-norm", "0.1", "--threads", "2"]).status, 0)
    }

    func testEmptyRunDirIsRefused() throws {
        let r = try DAEDist.run(short + ["--run-dir", ""])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--run-dir: is empty"), r.stderr)
    }

    func testDefaultRunDirectories() {
        let now = Date(timeIntervalSince1970: 0)
        XCTAssertEqual(RunSettings.defaultDirectory(now: now, environment: [:]), "runs/19700101-000000-\(getpid())")
        XCTAssertEqual(RunSettings.defaultDirectory(now: now, environment: ["SLURM_JOB_ID": "4711"]), "runs/slurm-4711")
    }

    /// `count` gray PNGs of size x size with pixels of their own, img-00.png, img-01.png, ...
    func writeGrayImages(_ folder: String, count: Int, size: Int) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for i in 0..<count {
            let pixels = (0..<(size * size)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i &* 17) }
            let name = String(format: "%@/img-%02d.png", folder, i)
            FileManager.default.createFile(atPath: name, contents: Data(PNG.encode(GrayImage(width: size, height: size, pixels: pixels))))
        }
    }
}
