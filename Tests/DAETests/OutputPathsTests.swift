// OutputPaths: an output is refused when it is a file the command reads, however spelled, another
// output, or a trained model's file; outputs that only share a folder are not.

@testable import DAE
import Foundation
import XCTest

final class OutputPathsTests: XCTestCase {
    func testAnOutputThatIsAnInputUnderAnotherSpellingIsRefused() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = FileManager.default.createFile(atPath: dir + "/input.bin", contents: Data([1, 2, 3]))
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.bin", withDestinationPath: dir + "/input.bin")
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        // relative to the working directory: up to / and down again
        let relative = FileManager.default.currentDirectoryPath.split(separator: "/").map { _ in "../" }.joined() + dir.dropFirst()
        for spelling in [dir + "/./input.bin", dir + "/sub/../input.bin", dir + "/link.bin", relative + "/input.bin"] {
            XCTAssertThrowsError(try OutputPaths.check(spelling, flag: "--out", reading: [("the --checkpoint file", dir + "/input.bin")]), spelling) { error in
                XCTAssertEqual(error as? DAEError, .badFlag("--out", "\(spelling) is the --checkpoint file \(dir)/input.bin (the same file), which this command reads; writing it would destroy it: choose another output path"))
            }
        }
        XCTAssertNoThrow(try OutputPaths.check(dir + "/other.bin", flag: "--out", reading: [("the input", dir + "/input.bin")]))
    }

    func testTwoOutputsOfOneFileAreRefusedNamingBothOwners() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var outputs = OutputPaths(reading: [])
        // neither exists yet: told apart by their canonical paths
        try outputs.claim(dir + "/out/a-p1.png", flag: "--out", for: "a.tif (page 1)")
        try outputs.claim(dir + "/out/a-p2.png", flag: "--out", for: "a.tif (page 2)")
        XCTAssertThrowsError(try outputs.claim(dir + "/./out/a-p1.png", flag: "--out", for: "a-p1.png")) { error in
            XCTAssertTrue("\(error)".contains("would be written twice, for a.tif (page 1) and for a-p1.png"), "\(error)")
        }
    }

    func testACheckpointOrWeightsFileIsNeverAnOutputButAFeaturesFileIs() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tensor = SafeTensor(name: "w", shape: [1], values: [0])
        for (format, refused) in [(Checkpoint.format, "dae-dist checkpoint"), ("dae-dist weights", "dae-dist weights file"), ("dae-dist features", nil)] {
            let path = dir + "/\(format.replacingOccurrences(of: " ", with: "-")).safetensors"
            try writeFileAtomically(SafeTensors.encode([tensor], metadata: ["format": format]), to: path)
            if let refused {
                XCTAssertThrowsError(try OutputPaths.check(path, flag: "--grid", reading: [])) { error in
                    XCTAssertEqual("\(error)", "--grid: \(path) is an existing \(refused); writing it would destroy it: choose another output path")
                }
            } else {
                XCTAssertNoThrow(try OutputPaths.check(path, flag: "--out", reading: []))
            }
        }
    }
}
