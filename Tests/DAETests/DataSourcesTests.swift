// --data beyond MNIST's IDX files: folders of PNG images (splits by subfolder or by a hash of the
// relative path, labels from class folders) and NumPy .npy arrays; every bad input one error
// naming the file.

import DAE
import Foundation
import XCTest

final class DataSourcesTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// An 8-bit gray PNG whose pixels are all `value` (so each file is recognisable after loading).
    func writePNG(_ relative: String, value: UInt8, height: Int = 8, width: Int = 8) {
        let path = dir + "/" + relative
        try! FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let image = GrayImage(width: width, height: height, pixels: [UInt8](repeating: value, count: height * width))
        FileManager.default.createFile(atPath: path, contents: Data(PNG.encode(image)))
    }

    /// A .npy file: version 1 header for `descr` and `shape`, then `payload`.
    func writeNPY(_ name: String, descr: String, shape: [Int], payload: [UInt8], fortran: Bool = false) -> String {
        let shapeText = "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
        var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shapeText), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)]
        bytes += Array(header.utf8) + payload
        let path = dir + "/" + name
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    func firstPixels(_ data: Dataset) -> [UInt8] { (0..<data.count).map { data.pixels[$0 * data.imageSize] } }

    func testFolderWithoutSplitsIsSplitByAHashOfThePathAndLabelledByClassFolder() throws {
        for i in 0..<30 { writePNG("cats/c\(i).png", value: UInt8(i)) }
        for i in 0..<30 { writePNG("dogs/d\(i).png", value: UInt8(100 + i)) }
        writePNG(".hidden/x.png", value: 255)                       // skipped
        FileManager.default.createFile(atPath: dir + "/cats/notes.txt", contents: Data("not an image".utf8))
        let train = try Dataset.load(path: dir, valFraction: 0.25, split: .train)
        let test = try Dataset.load(path: dir, valFraction: 0.25, split: .test)
        XCTAssertEqual(train.count + test.count, 60)
        XCTAssertGreaterThan(test.count, 5); XCTAssertLessThan(test.count, 25)     // about 15
        XCTAssertTrue(Set(firstPixels(train)).isDisjoint(with: firstPixels(test)))
        XCTAssertFalse(firstPixels(train).contains(255))
        for (i, value) in firstPixels(train).enumerated() { XCTAssertEqual(train.labels[i], value < 100 ? 0 : 1, "cats are class 0, dogs 1") }
        // the split depends on the relative paths only: the same after moving the folder
        let moved = temporaryDirectory() + "/copy"
        defer { try? FileManager.default.removeItem(atPath: (moved as NSString).deletingLastPathComponent) }
        try FileManager.default.copyItem(atPath: dir, toPath: moved)
        XCTAssertEqual(firstPixels(try Dataset.load(path: moved, valFraction: 0.25, split: .test)), firstPixels(test))
    }

    func testTrainAndTestSubfoldersAreTheSplits() throws {
        writePNG("train/a.png", value: 1); writePNG("train/b.png", value: 2); writePNG("test/c.png", value: 3)
        XCTAssertEqual(firstPixels(try Dataset.load(path: dir, split: .train)), [1, 2])
        let test = try Dataset.load(path: dir, split: .test)
        XCTAssertEqual(firstPixels(test), [3])
        XCTAssertEqual(test.labels, [0], "no class folders: label 0")
    }

    func testBadFoldersAreNamed() throws {
        XCTAssertThrowsError(try Dataset.load(path: dir, split: .train)) { XCTAssertTrue("\($0)".contains("no images (.png, .jpg, .jpeg, .tif, .tiff) found"), "\($0)") }
        writePNG("a.png", value: 1)
        writePNG("b.png", value: 2, height: 12, width: 8)
        // two sizes load; a model that needs one size asks requireOneSize
        XCTAssertThrowsError(try Dataset.load(path: dir, valFraction: 0.01, split: .train).requireOneSize(flagHint: "--patch N")) {
            XCTAssertEqual("\($0)", "\(dir): the images differ in size: a.png is 8x8 but b.png is 12x8; pass --patch N to train on crops of that size, or resize the images to one size")
        }
        try FileManager.default.removeItem(atPath: dir + "/b.png")
        FileManager.default.createFile(atPath: dir + "/b.png", contents: Data(PNG.encode(GrayImage(width: 8, height: 8, pixels: [UInt8](repeating: 0, count: 64))).prefix(30)))
        XCTAssertThrowsError(try Dataset.load(path: dir, valFraction: 0.01, split: .train)) { XCTAssertTrue("\($0)".hasPrefix("\(dir)/b.png:"), "\($0)") }
        try FileManager.default.removeItem(atPath: dir + "/b.png")
        writePNG("c.png", value: 3, height: 6, width: 6)
        try FileManager.default.removeItem(atPath: dir + "/a.png")
        XCTAssertEqual(try Dataset.load(path: dir, valFraction: 0.01, split: .train).height, 6)   // the model checks multiples of 4
        XCTAssertThrowsError(try Dataset.load(path: dir, valFraction: 0.01, split: .test)) { XCTAssertTrue("\($0)".contains("the test split is empty"), "\($0)") }
    }

    func testLinksToFoldersAreFollowedAndLoopsAreNot() throws {
        for i in 0..<4 { writePNG("elsewhere/cats/c\(i).png", value: UInt8(i)) }
        for i in 0..<4 { writePNG("data/train/dogs/d\(i).png", value: UInt8(100 + i)) }
        writePNG("data/test/dogs/t.png", value: 200)
        try FileManager.default.createSymbolicLink(atPath: dir + "/data/train/cats", withDestinationPath: dir + "/elsewhere/cats")
        try FileManager.default.createSymbolicLink(atPath: dir + "/data/train/dogs/again", withDestinationPath: "..")   // a loop
        try FileManager.default.createSymbolicLink(atPath: dir + "/link", withDestinationPath: dir + "/data")
        var notes: [String] = []
        let train = try Dataset.load(path: dir + "/link", split: .train, notes: { notes.append($0) })
        XCTAssertEqual(firstPixels(train), [0, 1, 2, 3, 100, 101, 102, 103])
        XCTAssertEqual(train.labels, [0, 0, 0, 0, 1, 1, 1, 1])
        XCTAssertEqual(notes, ["warning: skipped \(dir)/link/train/dogs/again: a link to a folder above it (a loop)"])
        // a link that leads nowhere, named as an image, is named with the reason
        try FileManager.default.createSymbolicLink(atPath: dir + "/data/train/dogs/gone.png", withDestinationPath: dir + "/absent.png")
        XCTAssertThrowsError(try Dataset.load(path: dir + "/data", split: .train)) {
            XCTAssertEqual("\($0)", "\(dir)/data/train/dogs/gone.png: a dangling symbolic link (-> \(dir)/absent.png, which does not exist)")
        }
    }

    func testARunDirectoryInsideTheDataFolderIsSkippedWithANote() throws {
        for i in 0..<20 { writePNG("photos/p\(i).png", value: UInt8(i)) }
        writePNG("runs/r1/samples/epoch-001.png", value: 250)        // a run directory: its lock
        FileManager.default.createFile(atPath: dir + "/runs/r1/.lock", contents: Data())
        writePNG("copied/samples/epoch-002.png", value: 251)          // one copied without its lock
        FileManager.default.createFile(atPath: dir + "/copied/config.json", contents: Data("{}".utf8))
        var notes: [String] = []
        let train = try Dataset.load(path: dir, valFraction: 0.01, split: .train, notes: { notes.append($0) })
        XCTAssertFalse(firstPixels(train).contains { $0 >= 250 })
        XCTAssertEqual(notes, ["warning: skipped \(dir)/copied: a dae-dist run directory, not data (its sample grids would be read as images)",
                               "warning: skipped \(dir)/runs/r1: a dae-dist run directory, not data (its sample grids would be read as images)"])
    }

    func testAnEmptySplitGivesAdviceThatWorks() throws {
        // one 3-page TIFF: every image of a file goes to the same split
        let tiff = Bundle.module.url(forResource: "Fixtures/images/pages.tif", withExtension: nil)!.path
        try FileManager.default.copyItem(atPath: tiff, toPath: dir + "/pages.tif")
        XCTAssertThrowsError(try Dataset.load(path: dir, valFraction: 0.999999, split: .train)) {
            XCTAssertEqual("\($0)", "\(dir): the train split is empty: --val-fraction 0.999999 held out all 1 file (3 images); use a smaller --val-fraction or more files")
        }
        XCTAssertThrowsError(try Dataset.load(path: dir, valFraction: 0.000001, split: .test)) {
            XCTAssertEqual("\($0)", "\(dir): the test split is empty: --val-fraction 1e-06 held out none of the 1 file (3 images); use a larger --val-fraction or more files")
        }
        let npy = writeNPY("one.npy", descr: "|u1", shape: [2, 4, 4], payload: [UInt8](repeating: 0, count: 32))
        XCTAssertThrowsError(try Dataset.load(path: npy, valFraction: 0.999999, split: .train)) {
            XCTAssertEqual("\($0)", "\(npy): the train split is empty: --val-fraction 0.999999 held out all 2 images; use a smaller --val-fraction")
        }
    }

    func testBrokenFilesSayWhatIsWrong() throws {
        // a JPEG cut to 20 bytes: truncated, not an empty image
        let jpeg = Bundle.module.url(forResource: "Fixtures/images/gray.jpg", withExtension: nil)!.path
        FileManager.default.createFile(atPath: dir + "/cut.jpg", contents: try Data(contentsOf: URL(fileURLWithPath: jpeg)).prefix(20))
        XCTAssertThrowsError(try ImageFile.headers(path: dir + "/cut.jpg")) {
            XCTAssertTrue("\($0)".hasPrefix(dir + "/cut.jpg: truncated or corrupt JPEG"), "\($0)")
        }
        XCTAssertThrowsError(try ImageFile.decode(path: dir + "/cut.jpg", channels: 1)) {
            XCTAssertTrue("\($0)".hasPrefix(dir + "/cut.jpg: truncated or corrupt JPEG"), "\($0)")
        }
        // a link that loops, named as an image
        try FileManager.default.createSymbolicLink(atPath: dir + "/loop.png", withDestinationPath: dir + "/loop.png")
        XCTAssertThrowsError(try ImageFile.decode(path: dir + "/loop.png", channels: 1)) {
            XCTAssertEqual("\($0)", "\(dir)/loop.png: a symbolic link that loops (-> \(dir)/loop.png)")
        }
    }

    func testNPYArrays() throws {
        let u8 = writeNPY("u8.npy", descr: "|u1", shape: [3, 4, 4], payload: (0..<48).map { UInt8($0) })
        let all = try NPY.readImages(path: u8)
        XCTAssertEqual(all.dims, [3, 4, 4])
        XCTAssertEqual(all.pixels, (0..<48).map { UInt8($0) })
        // float32 in [0,1], [N,H,W,1]: stored as round(x * 255)
        let floats: [Float] = (0..<32).map { Float($0) / 31 }
        let f32 = writeNPY("f.npy", descr: "<f4", shape: [2, 4, 4, 1], payload: floats.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })
        XCTAssertEqual(try NPY.readImages(path: f32).pixels, floats.map { UInt8(($0 * 255).rounded()) })
        // a folder with train.npy and test.npy
        _ = writeNPY("train.npy", descr: "|u1", shape: [2, 4, 4], payload: [UInt8](repeating: 9, count: 32))
        _ = writeNPY("test.npy", descr: "|u1", shape: [1, 4, 4], payload: [UInt8](repeating: 7, count: 16))
        XCTAssertEqual(try Dataset.load(path: dir, split: .train).count, 2)
        XCTAssertEqual(firstPixels(try Dataset.load(path: dir, split: .test)), [7])
        // one .npy file: split by a hash of the index, the two parts disjoint and complete
        let many = writeNPY("many.npy", descr: "|u1", shape: [200, 4, 4], payload: (0..<200).flatMap { [UInt8](repeating: UInt8($0), count: 16) })
        let train = try Dataset.load(path: many, valFraction: 0.1, split: .train), test = try Dataset.load(path: many, valFraction: 0.1, split: .test)
        XCTAssertEqual(Set(firstPixels(train)).union(firstPixels(test)).count, 200)
        XCTAssertEqual(train.count + test.count, 200)
    }

    func testBadNPYFilesAreNamed() {
        let cases: [(String, String, [Int], [UInt8], Bool, String)] = [
            ("i8.npy", "<i8", [1, 4, 4], [UInt8](repeating: 0, count: 128), false, "dtype '<i8' is not supported"),
            ("fortran.npy", "|u1", [1, 4, 4], [UInt8](repeating: 0, count: 16), true, "Fortran-ordered"),
            ("rgb.npy", "|u1", [1, 4, 4, 3], [UInt8](repeating: 0, count: 48), false, "3 channels"),   // readImages is gray only
            ("two.npy", "|u1", [1, 4, 4, 2], [UInt8](repeating: 0, count: 32), false, "2 channels"),
            ("short.npy", "|u1", [2, 4, 4], [UInt8](repeating: 0, count: 20), false, "holds 20 bytes of data"),
            ("range.npy", "<f4", [1, 4, 4], (0..<16).flatMap { _ in withUnsafeBytes(of: Float(2).bitPattern.littleEndian, Array.init) }, false, "outside [0, 1]"),
        ]
        for (name, descr, shape, payload, fortran, fragment) in cases {
            let path = writeNPY(name, descr: descr, shape: shape, payload: payload, fortran: fortran)
            XCTAssertThrowsError(try NPY.readImages(path: path), name) {
                XCTAssertTrue("\($0)".hasPrefix(path + ":") && "\($0)".contains(fragment), "\(name): \($0)")
            }
        }
        FileManager.default.createFile(atPath: dir + "/plain.npy", contents: Data("not numpy".utf8))
        XCTAssertThrowsError(try NPY.readImages(path: dir + "/plain.npy")) { XCTAssertTrue("\($0)".contains("no \\x93NUMPY magic"), "\($0)") }
    }
}
