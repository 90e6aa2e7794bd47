// What the commands that write files check before writing anything: no output may be a file they
// read (however the path is spelled) or a trained model's file; denoise names every output, a
// multi-page TIFF's pages too, and checks --reference against the input; --tile is bounded by
// memory. Each refusal is one line naming the flag and the file, a non-zero exit, and the files
// involved untouched.

import DAE
import Foundation
import XCTest

final class OutputSafetyTests: XCTestCase {
    /// A small trained run, shared by the tests (training is the slow part).
    static let run: String = {
        let dir = temporaryDirectory() + "/run"
        let r = try? DAEDist.run(["train", "--epochs", "1", "--limit", "20", "--eval-every", "0", "--threads", "1", "--quiet", "--run-dir", dir])
        precondition(r?.status == 0, "training the shared model failed: \(r?.stderr ?? "")")
        return dir
    }()

    override class func tearDown() { try? FileManager.default.removeItem(atPath: (run as NSString).deletingLastPathComponent) }

    var weights: String { Self.run + "/model.safetensors" }

    func fixture(_ name: String) -> String { repositoryRoot + "/Tests/DAETests/Fixtures/images/" + name }

    /// Runs dae-dist and expects exit 1 with one line on stderr containing every fragment.
    func assertRefused(_ arguments: [String], _ fragments: String..., file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try DAEDist.run(arguments)
        XCTAssertEqual(r.status, 1, "\(arguments): \(r.stdout) \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr, file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(r.stderr.contains(fragment), "stderr lacks '\(fragment)': \(r.stderr)", file: file, line: line)
        }
    }

    func testEncodeEvalAndSampleNeverWriteOntoTheirCheckpointOrAModelFile() throws {
        let dir = temporaryDirectory()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let model = dir + "/m.safetensors"
        try FileManager.default.copyItem(atPath: weights, toPath: model)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.safetensors", withDestinationPath: model)
        try FileManager.default.createDirectory(atPath: dir + "/s", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: weights, toPath: dir + "/s/samples.png")
        let checkpoint = Self.run + "/checkpoints/" + (try FileManager.default.contentsOfDirectory(atPath: Self.run + "/checkpoints")).sorted().last!
        // the path relative to the working directory (the repository root): up to / and down
        let relative = repositoryRoot.split(separator: "/").map { _ in "../" }.joined() + model.dropFirst()
        let files = [model, weights, checkpoint, dir + "/s/samples.png"]
        let before = try files.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }
        try assertRefused(["encode", "--checkpoint", model, "--limit", "10", "--out", dir + "/./m.safetensors"],
                          "--out: \(dir)/./m.safetensors is the --checkpoint file \(model) (the same file)")
        try assertRefused(["encode", "--checkpoint", dir + "/link.safetensors", "--limit", "10", "--out", model], "--out: \(model) is the --checkpoint file")
        try assertRefused(["eval", "--checkpoint", model, "--limit", "10", "--grid", relative], "--grid: \(relative) is the --checkpoint file")
        try assertRefused(["eval", "--checkpoint", model, "--limit", "10", "--grid", checkpoint], "--grid: \(checkpoint) is an existing dae-dist checkpoint")
        try assertRefused(["encode", "--checkpoint", model, "--limit", "10", "--out", weights], "--out: \(weights) is an existing dae-dist weights file")
        try assertRefused(["sample", "--checkpoint", dir + "/s/samples.png", "--out", dir + "/s", "--chains", "2", "--steps", "2", "--every", "1",
                           "--burn-in", "1", "--classifier-epochs", "0", "--no-untrained-baseline", "--threads", "1"],
                          "--out: \(dir)/s/samples.png is the --checkpoint file")
        XCTAssertEqual(try files.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }, before, "a refused command changed a file")
        // a features file may be written again
        for _ in 0..<2 {
            let r = try DAEDist.run(["encode", "--checkpoint", model, "--limit", "10", "--threads", "1", "--out", dir + "/f.safetensors"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
    }

    /// A multi-page TIFF's first page is written as NAME-p1.png: an input of that name would be
    /// written to the same file, in either order; refused before anything is written.
    func testDenoiseRefusesAnInputWhoseOutputIsAPageOfAnother() throws {
        let dir = temporaryDirectory()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: fixture("pages.tif"), toPath: dir + "/multi.tif")
        try FileManager.default.copyItem(atPath: fixture("gray.png"), toPath: dir + "/multi-p1.png")
        try assertRefused(["denoise", "--checkpoint", weights, dir + "/multi.tif", dir + "/multi-p1.png", "--out", dir + "/O"],
                          "--out: \(dir)/O/multi-p1.png would be written twice, for \(dir)/multi.tif (page 1) and for \(dir)/multi-p1.png")
        try assertRefused(["denoise", "--checkpoint", weights, dir + "/multi-p1.png", dir + "/multi.tif", "--out", dir + "/O"],
                          "--out: \(dir)/O/multi-p1.png would be written twice, for \(dir)/multi-p1.png and for \(dir)/multi.tif (page 1)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/O"))
    }

    /// A tile larger than memory allows is refused (it would run an image up to its side as one
    /// network), naming the largest that fits; nothing is written.
    func testDenoiseRefusesATileWhoseNetworkDoesNotFitInMemory() throws {
        let dir = temporaryDirectory()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try assertRefused(["denoise", "--checkpoint", weights, fixture("gray.png"), "--out", dir + "/O", "--tile", "100000000"],
                          "--tile: 100000000 needs ", "the largest tile that fits is ", "(the default is 472)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/O"))
    }

    /// Each page of a multi-page TIFF is scored against the reference page of its number; a
    /// reference of another page count or size is refused before anything is written, sizes WxH.
    func testDenoiseChecksTheReferenceAgainstEveryPageBeforeWriting() throws {
        let dir = temporaryDirectory()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try assertRefused(["denoise", "--checkpoint", weights, fixture("pages.tif"), "--out", dir + "/one", "--reference", fixture("gray.png")],
                          "--reference: \(fixture("gray.png")) has 1 image but the input \(fixture("pages.tif")) has 3 images")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/one"))
        try assertRefused(["denoise", "--checkpoint", weights, fixture("gray.png"), "--out", dir + "/size", "--reference", fixture("odd.png")],
                          "--reference: \(fixture("odd.png")) is 45x30 but the input \(fixture("gray.png")) is 28x28")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/size"))
        let paged = try DAEDist.run(["denoise", "--checkpoint", weights, fixture("pages.tif"), "--out", dir + "/paged", "--reference", fixture("pages.tif"),
                                     "--threads", "1"])
        XCTAssertEqual(paged.status, 0, paged.stderr)
        for page in 1...3 {
            XCTAssertTrue(paged.stdout.contains("wrote \(dir)/paged/pages-p\(page).png (28x28)\nagainst \(fixture("pages.tif")) (page \(page)): MSE 0.00000 input"),
                          paged.stdout)
        }
    }
}
