// The command line as a user meets it: every bad flag or bad data gets one line on stderr that
// names the flag or file, and a non-zero exit (64 for a flag swift-argument-parser rejects before
// the command runs, 1 otherwise); a good short run writes weights PyTorch can load.

import DAE
import Foundation
import XCTest

final class CLITests: XCTestCase {
    func run(_ arguments: [String], environment: [String: String] = [:]) throws -> DAEDist.Result {
        try DAEDist.run(arguments, environment: environment)
    }

    /// Runs dae-dist with `arguments` and expects a one-line error containing every fragment (the
    /// usage and help lines swift-argument-parser adds to a flag error aside), and `status` if given.
    func assertFails(_ arguments: [String], _ fragments: [String], status: Int32? = nil,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try run(arguments)
        XCTAssertNotEqual(r.status, 0, "\(arguments) succeeded", file: file, line: line)
        if let status { XCTAssertEqual(r.status, status, "\(arguments): \(r.stderr)", file: file, line: line) }
        let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty && !$0.hasPrefix("Usage:") && !$0.hasPrefix("Help:") && !$0.hasPrefix("  See") }
        XCTAssertEqual(lines.count, 1, "expected one error line, got: \(r.stderr)", file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(r.stderr.contains(fragment), "stderr lacks '\(fragment)': \(r.stderr)", file: file, line: line)
        }
    }

    /// Runs `train` with `arguments` and expects a one-line error containing the fragments.
    func assertTrainFails(_ arguments: [String], _ fragments: String..., file: StaticString = #filePath, line: UInt = #line) throws {
        try assertFails(["train", "--threads", "1", "--eval-every", "0"] + arguments, fragments, file: file, line: line)
    }

    func testBadFlagsAreRejected() throws {
        try assertTrainFails(["--batch-size", "0"], "--batch-size")
        try assertTrainFails(["--lr=-0.1"], "--lr")
        try assertTrainFails(["--noise", "speckle"], "--noise", "'speckle'")
        try assertTrainFails(["--noise", "mask:1.5"], "--noise")
        try assertTrainFails(["--loss", "l1"], "--loss")
        // the stacked model's flags
        try assertTrainFails(["--model", "rbm"], "--model")
        try assertTrainFails(["--hidden", "100"], "add --model stacked")
        try assertTrainFails(["--tied-weights"], "--tied-weights")
        try assertTrainFails(["--model", "stacked", "--hidden", "100,0"], "--hidden")
        try assertTrainFails(["--model", "stacked", "--hidden", "16384,16384"], "--hidden")
        try assertTrainFails(["--model", "stacked", "--activation", "tanh"], "--activation")
        try assertTrainFails(["--model", "stacked", "--activation", "relu", "--hidden", "50,20", "--noise", "gaussian:0.3"], "--noise")
        try assertTrainFails(["--model", "stacked", "--pretrain-epochs", "0", "--epochs", "0"], "--pretrain-epochs")
        try assertTrainFails(["--epochs", "0"], "--epochs")
        try assertTrainFails(["--epochs", "many"], "--epochs")
        try assertTrainFails(["--threads", "0"], "--threads")
        try assertTrainFails(["--limit", "0"], "--limit")
    }

    func testBadCheckpointFlagsAndFilesAreRejected() throws {
        try assertTrainFails(["--resume", "auto"], "--resume: 'auto' looks in <run-dir>/checkpoints")
        try assertTrainFails(["--keep", "0"], "--keep")
        try assertTrainFails(["--checkpoint-every=-1"], "--checkpoint-every")
        try assertTrainFails(["--limit", "40", "--resume", "/nonexistent/step.safetensors"], "/nonexistent/step.safetensors: no such file")
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        FileManager.default.createFile(atPath: dir + "/junk.safetensors", contents: Data("not a checkpoint at all".utf8))
        try assertTrainFails(["--limit", "40", "--resume", dir + "/junk.safetensors"], dir + "/junk.safetensors:")
        // a weights file is not a checkpoint
        let r = try run(["train", "--epochs", "1", "--limit", "40", "--threads", "1", "--eval-every", "0", "--run-dir", dir + "/run"])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertTrainFails(["--limit", "40", "--resume", dir + "/run/model.safetensors"], "is a weights file")
        // settings that differ from the checkpoint's are named
        try assertTrainFails(["--limit", "40", "--batch-size", "10", "--run-dir", dir + "/run", "--resume", "auto"],
                             "--batch-size: the checkpoint")
        // an output that cannot be written stops the run (here: a run dir under a regular file)
        try assertTrainFails(["--epochs", "1", "--limit", "40", "--run-dir", dir + "/junk.safetensors/run"], "cannot write")
        // --resume auto with an empty checkpoint folder starts afresh
        let fresh = try run(["train", "--epochs", "1", "--limit", "40", "--threads", "1", "--eval-every", "0", "--run-dir", dir + "/fresh", "--resume", "auto"])
        XCTAssertEqual(fresh.status, 0, fresh.stderr)
        XCTAssertTrue(fresh.stdout.contains("starting afresh"), fresh.stdout)
    }

    func testMissingAndCorruptDataAreRejected() throws {
        try assertTrainFails(["--data-dir", "/nonexistent/mnist"], "/nonexistent/mnist: no such file or folder")
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try assertTrainFails(["--data-dir", dir], "\(dir): no images (.png, .jpg, .jpeg, .tif, .tiff) found")
        let images = try Data(contentsOf: URL(fileURLWithPath: repositoryRoot + "/data/mnist/train-images-idx3-ubyte.gz"))
        FileManager.default.createFile(atPath: dir + "/train-images-idx3-ubyte.gz", contents: images.prefix(50_000))
        FileManager.default.createFile(atPath: dir + "/train-labels-idx1-ubyte.gz",
                                       contents: try Data(contentsOf: URL(fileURLWithPath: repositoryRoot + "/data/mnist/train-labels-idx1-ubyte.gz")))
        try assertTrainFails(["--data-dir", dir], "train-images-idx3-ubyte.gz: truncated gzip file")
    }

    func testRunDirectoryHoldsEveryOutput() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try run(["train", "--epochs", "2", "--limit", "40", "--threads", "1", "--eval-limit", "30", "--log-every", "1", "--run-dir", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("eval: MSE"), r.stdout)
        XCTAssertFalse(r.stdout.contains("\r"), "progress line written to a pipe")
        for file in ["config.json", "metrics.jsonl", "samples/epoch-001.png", "samples/epoch-002.png", "report.html", "model.safetensors",
                     "checkpoints/step-000000004.safetensors"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + file), file)
        }
        let events = try FileManager.default.contentsOfDirectory(atPath: dir + "/tensorboard")
        XCTAssertEqual(events.filter { $0.hasPrefix("events.out.tfevents.") }.count, 1)
        let lines = String(decoding: try Data(contentsOf: URL(fileURLWithPath: dir + "/metrics.jsonl")), as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(lines.count, 6)            // 4 steps + 2 epochs
        // typed records: numbers are JSON numbers
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as? [String: Any]
        XCTAssertEqual(config?["batch_size"] as? Int, 20)
        XCTAssertEqual(config?["epochs"] as? Int, 2)
        XCTAssertEqual(config?["train_samples"] as? Int, 40)
        XCTAssertEqual(config?["noise"] as? String, "gaussian:0.5")
        XCTAssertNil(config?["pretrain_epochs"], "a stacked-model setting in a conv run")
        let epoch = try JSONSerialization.jsonObject(with: Data(lines.last!.utf8)) as? [String: Any]
        XCTAssertEqual(epoch?["step"] as? Int, 4)
        XCTAssertNotNil((epoch?["eval"] as? [String: Any])?["noisy_psnr"] as? Double)
        let report = String(decoding: try Data(contentsOf: URL(fileURLWithPath: dir + "/report.html")), as: UTF8.self)
        XCTAssertTrue(report.contains("data:image/png;base64,") && report.contains("<svg"))
        let quiet = try run(["train", "--epochs", "1", "--limit", "40", "--threads", "1", "--eval-every", "0", "--quiet", "--run-dir", dir + "/q"])
        XCTAssertEqual(quiet.status, 0, quiet.stderr)
        XCTAssertFalse(quiet.stdout.contains("epoch   1/1"), quiet.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/q/model.safetensors"))
    }

    func testEvalCommand() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertEqual(try run(["train", "--epochs", "1", "--limit", "40", "--threads", "1", "--eval-every", "0", "--run-dir", dir]).status, 0)
        let r = try run(["eval", "--checkpoint", dir + "/model.safetensors", "--limit", "60", "--threads", "2", "--json", "--grid", dir + "/g.png"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(object?["images"] as? Int, 60)
        XCTAssertEqual(object?["noise"] as? String, "gaussian:0.5")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/g.png"))
        let clean = try run(["eval", "--checkpoint", dir + "/model.safetensors", "--limit", "60", "--noise", "none"])
        XCTAssertTrue(clean.stdout.contains("noisy input: MSE 0.000000"), clean.stdout)
        for (arguments, fragment) in [(["--checkpoint", dir + "/none.safetensors"], "none.safetensors: no such file"),
                                      (["--checkpoint", dir + "/model.safetensors", "--noise", "blur"], "--noise"),
                                      (["--checkpoint", dir + "/model.safetensors", "--limit", "0"], "--limit")] {
            let bad = try run(["eval"] + arguments)
            XCTAssertNotEqual(bad.status, 0)
            XCTAssertTrue(bad.stderr.contains(fragment), bad.stderr)
        }
    }

    func testSampleCommandWritesItsFiles() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertEqual(try run(["train", "--epochs", "1", "--limit", "40", "--threads", "1", "--eval-every", "0", "--run-dir", dir]).status, 0)
        let r = try run(["sample", "--checkpoint", dir + "/model.safetensors", "--chains", "5", "--steps", "6", "--every", "3",
                         "--burn-in", "3", "--classifier-epochs", "0", "--out", dir + "/s"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let idx = try IDX.read(path: dir + "/s/samples.idx", expectedMagic: IDX.imagesMagic)
        XCTAssertEqual(idx.dims, [5, 28, 28])
        for file in ["samples.png", "chains.png", "summary.json"] { XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/s/" + file), file) }
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/s/summary.json"))) as? [String: Any]
        XCTAssertEqual(summary?["chains"] as? Int, 5)
        for (arguments, fragment) in [(["--chains", "0"], "--chains"), (["--start", "middle"], "--start"), (["--every", "0"], "--every"),
                                      (["--burn-in", "999"], "--burn-in"), (["--noise", "fog"], "--noise")] {
            let bad = try run(["sample", "--checkpoint", dir + "/model.safetensors", "--out", dir + "/bad"] + arguments)
            XCTAssertNotEqual(bad.status, 0, "\(arguments)")
            XCTAssertTrue(bad.stderr.contains(fragment), bad.stderr)
        }
    }

    func testShortRunWritesWeights() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try run(["train", "--epochs", "2", "--limit", "100", "--threads", "1", "--eval-every", "0", "--run-dir", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("epoch   2/2  loss"), r.stdout)
        let (tensors, metadata) = try SafeTensors.read(path: dir + "/model.safetensors")
        XCTAssertEqual(tensors.map(\.name), ConvDenoiser.makeLayout().slots.map(\.name))
        XCTAssertEqual(metadata["noise"], "gaussian:0.5")
    }

    func testDataFlagAndItsOldName() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertEqual(try run(["train", "--epochs", "1", "--limit", "40", "--threads", "1", "--eval-every", "0", "--run-dir", dir]).status, 0)
        var outputs: [String] = []
        for flag in ["--data", "--data-dir"] {
            let r = try run(["eval", "--checkpoint", dir + "/model.safetensors", flag, "data/mnist", "--limit", "30", "--threads", "1", "--json"])
            XCTAssertEqual(r.status, 0, "\(flag): \(r.stderr)")
            let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            XCTAssertEqual(object?["images"] as? Int, 30)
            outputs.append(r.stdout.replacingOccurrences(of: #""seconds":[0-9.e-]+"#, with: "", options: .regularExpression))
        }
        XCTAssertEqual(outputs[0], outputs[1])
        for flag in ["--data", "--data-dir"] {
            try assertFails(["encode", "--checkpoint", dir + "/model.safetensors", "--out", dir + "/f.safetensors", flag, "/nonexistent/mnist"],
                            ["/nonexistent/mnist: no such file or folder"])
        }
    }

    func testBadEnumValuesNameTheFlagAndTheChoices() throws {
        // swift-argument-parser rejects these before run(): no checkpoint is read
        try assertFails(["eval", "--checkpoint", "unused", "--noise", "bogus:1"], ["--noise", "'bogus:1'", "'gaussian:F'", "'none'"], status: 64)
        try assertFails(["eval", "--checkpoint", "unused", "--noise", "mask:1.5"], ["--noise", "P in [0,1]"], status: 64)
        try assertFails(["denoise", "--checkpoint", "unused", "--out", "unused", "in.png", "--add-noise", "fog"], ["--add-noise", "'mask:P'"], status: 64)
        try assertFails(["encode", "--checkpoint", "unused", "--out", "unused", "--split", "validation"], ["--split", "'train' and 'test'"], status: 64)
        try assertFails(["sample", "--checkpoint", "unused", "--out", "unused", "--start", "middle"], ["--start", "'noise' and 'test'"], status: 64)
        // the library's names are matched without regard to case, as before
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertEqual(try run(["train", "--epochs", "1", "--limit", "40", "--threads", "1", "--eval-every", "0", "--run-dir", dir]).status, 0)
        let r = try run(["encode", "--checkpoint", dir + "/model.safetensors", "--split", "TEST", "--limit", "5", "--threads", "1", "--out", dir + "/f.safetensors"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func testBenchRejectsBadFlags() throws {
        try assertFails(["bench", "--micro-batch", "0"], ["--micro-batch", "at least 1"], status: 64)   // used to trap
        try assertFails(["bench", "--what", "everything"], ["--what"], status: 64)
    }

    func testRangesAreCheckedBeforeRunning() throws {
        // every command with --threads rejects 0; none of them reads the (missing) checkpoint first
        let commands: [[String]] = [["eval"], ["denoise", "in.png", "--out", "unused"], ["encode", "--out", "unused"], ["probe"],
                                    ["sample", "--out", "unused"]]
        for command in commands {
            try assertFails(command + ["--checkpoint", "unused", "--threads", "0"], ["--threads: must be at least 1, got 0"], status: 64)
        }
        for (arguments, message) in [(["eval", "--limit", "0"], "--limit: must be at least 1, got 0"),
                                     (["eval", "--grid-columns", "1001"], "--grid-columns: must be between 1 and 1000, got 1001"),
                                     (["encode", "--out", "unused", "--limit", "0"], "--limit: must be at least 1, got 0"),
                                     (["probe", "--iterations", "0"], "--iterations: must be at least 1, got 0"),
                                     (["probe", "--lr", "0"], "--lr: must be a positive number"),
                                     (["probe", "--weight-decay=-1"], "--weight-decay: must be 0 or more"),
                                     (["probe", "--test-limit", "0"], "--test-limit: must be at least 1, got 0"),
                                     (["sample", "--out", "unused", "--chains", "0"], "--chains: must be between 1 and 100000, got 0"),
                                     (["sample", "--out", "unused", "--classifier-epochs=-1"], "--classifier-epochs: must be 0 or more, got -1")] {
            try assertFails(arguments + ["--checkpoint", "unused"], [message], status: 64)
        }
    }

    /// A negative number is the option's value, not a flag: it reaches the option's range check
    /// (swift-argument-parser would otherwise say "Missing value"), in every command.
    func testNegativeNumbersReachTheRangeChecks() throws {
        for (arguments, message) in [(["train", "--epochs", "-1"], "--epochs: must be at least 1, got -1"),
                                     (["train", "--lr", "-0.1"], "--lr: must be a positive number, got -0.1"),
                                     (["train", "--keep", "-1"], "--keep: must be at least 1, got -1"),
                                     (["train", "--eval-every", "-1"], "--eval-every: must be 0 or more, got -1"),
                                     (["train", "--val-fraction", "-0.1"], "--val-fraction: must be at least 0 and below 1, got -0.1"),
                                     (["eval", "--checkpoint", "unused", "--val-fraction", "-0.1"], "--val-fraction: must be at least 0 and below 1, got -0.1"),
                                     (["eval", "--checkpoint", "unused", "--limit", "-5"], "--limit: must be at least 1, got -5"),
                                     (["encode", "--checkpoint", "unused", "--out", "unused", "--limit", "-5"], "--limit: must be at least 1, got -5"),
                                     (["denoise", "--checkpoint", "unused", "in.png", "--out", "unused", "--tile", "-4"], "--tile: must be at least 1, got -4"),
                                     (["denoise", "--checkpoint", "unused", "in.png", "--out", "unused", "--threads", "-2"], "--threads: must be at least 1, got -2"),
                                     (["sample", "--checkpoint", "unused", "--out", "unused", "--chains", "-1"], "--chains: must be between 1 and 100000, got -1"),
                                     (["probe", "--checkpoint", "unused", "--lr", "-1"], "--lr: must be a positive number"),
                                     (["bench", "--steps", "-3"], "--steps: must be at least 1, got -3")] {
            try assertFails(arguments, [message], status: 64)
        }
    }
}
