// The IDX reader on the real files and on every kind of bad file it promises to reject, and the
// dataset loader's cross-file checks. Each error must name the file.

import DAE
import Foundation
import XCTest

final class DataTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    let mnist = repositoryRoot + "/data/mnist"

    func idx(magic: UInt32, dims: [UInt32], payload: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        for v in [magic] + dims { bytes += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        return bytes + (0..<payload).map { UInt8($0 % 256) }
    }

    func write(_ bytes: [UInt8], _ name: String) -> String {
        let path = dir + "/" + name
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    /// Asserts that reading fails with a data error naming `path` and containing `fragment`.
    func assertRejects(_ path: String, magic: UInt32 = IDX.imagesMagic, _ fragment: String,
                       file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try IDX.read(path: path, expectedMagic: magic)
            XCTFail("\(path) was accepted", file: file, line: line)
        } catch {
            XCTAssertTrue(error.description.hasPrefix(path), "error does not name the file: \(error)", file: file, line: line)
            XCTAssertTrue(error.description.contains(fragment), "'\(error)' lacks '\(fragment)'", file: file, line: line)
            XCTAssertFalse(error.description.contains("\n"), "not one line: \(error)", file: file, line: line)
        }
    }

    func testReadsTheRealMNISTTestSplit() throws {
        let test = try Dataset.load(directory: mnist, split: .test)
        XCTAssertEqual([test.count, test.height, test.width], [10_000, 28, 28])
        XCTAssertEqual(test.labels.prefix(10).map { Int($0) }, [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
        let image = UnsafeMutablePointer<Float>.allocate(capacity: 784)
        defer { image.deallocate() }
        test.image(0, into: image)
        let values = Array(UnsafeBufferPointer(start: image, count: 784))
        XCTAssertEqual(values.min(), 0)
        XCTAssertEqual(values.max(), 1)          // 255/255
        XCTAssertTrue(values.allSatisfy { ($0 * 255).rounded() == $0 * 255 || abs(($0 * 255).rounded() - $0 * 255) < 1e-4 })
    }

    func testRawAndGzipGiveTheSameValues() throws {
        let raw = idx(magic: IDX.labelsMagic, dims: [5], payload: 5)
        let rawPath = write(raw, "labels-idx1-ubyte")
        let gzPath = dir + "/labels-idx1-ubyte.gz"
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gzip.arguments = ["-k", rawPath]
        try gzip.run(); gzip.waitUntilExit()
        let a = try IDX.read(path: rawPath, expectedMagic: IDX.labelsMagic)
        let b = try IDX.read(path: gzPath, expectedMagic: IDX.labelsMagic)
        XCTAssertEqual(a.values, [0, 1, 2, 3, 4])
        XCTAssertEqual(a.values, b.values)
        XCTAssertEqual(b.dims, [5])
    }

    func testRejectsMissingFile() {
        assertRejects(dir + "/nothing-here", "no such file")
    }

    func testRejectsEmptyFile() {
        assertRejects(write([], "empty"), "empty")
    }

    func testRejectsBadMagic() {
        assertRejects(write(idx(magic: 1234, dims: [1, 4, 4], payload: 16), "magic"), "bad magic number 1234")
        // a labels file where images are expected
        assertRejects(write(idx(magic: IDX.labelsMagic, dims: [3], payload: 3), "swapped"), "expected 2051")
    }

    func testRejectsTruncatedData() {
        assertRejects(write(idx(magic: IDX.imagesMagic, dims: [2, 4, 4], payload: 31), "short"), "truncated")
        assertRejects(write(Array(idx(magic: IDX.imagesMagic, dims: [2, 4, 4], payload: 0).prefix(9)), "header"), "truncated")
    }

    func testRejectsTrailingBytes() {
        assertRejects(write(idx(magic: IDX.imagesMagic, dims: [1, 4, 4], payload: 20), "long"), "4 unexpected bytes")
    }

    func testRejectsZeroDimension() {
        assertRejects(write(idx(magic: IDX.imagesMagic, dims: [0, 28, 28], payload: 0), "zero"), "dimension 0 is 0")
    }

    func testRejectsTruncatedGzip() throws {
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: mnist + "/t10k-labels-idx1-ubyte.gz")))
        let path = write(Array(original.prefix(original.count / 2)), "cut.gz")
        assertRejects(path, magic: IDX.labelsMagic, "truncated gzip")
    }

    func testRejectsCorruptGzip() throws {
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: mnist + "/t10k-labels-idx1-ubyte.gz")))
        for i in 100..<200 { bytes[i] ^= 0x5A }
        assertRejects(write(bytes, "corrupt.gz"), magic: IDX.labelsMagic, "gzip")
    }

    func testRejectsGzNameWithoutGzipData() {
        assertRejects(write(idx(magic: IDX.labelsMagic, dims: [2], payload: 2), "plain.gz"), magic: IDX.labelsMagic, "not a gzip file")
    }

    func testDatasetRejectsWrongDimsAndMismatchedCounts() throws {
        // magic 2051 fixes 3 dimensions, so a file with a 2-dimension header reads as truncated
        _ = write(idx(magic: IDX.imagesMagic, dims: [2, 16], payload: 32), "train-images-idx3-ubyte")
        _ = write(idx(magic: IDX.labelsMagic, dims: [2], payload: 2), "train-labels-idx1-ubyte")
        XCTAssertThrowsError(try Dataset.load(directory: dir, split: .train)) {
            XCTAssertTrue("\($0)".contains("truncated"), "\($0)")
        }
        // sides that are not multiples of 4 load (the model checks what it needs)
        _ = write(idx(magic: IDX.imagesMagic, dims: [2, 5, 5], payload: 50), "train-images-idx3-ubyte")
        XCTAssertEqual(try Dataset.load(directory: dir, split: .train).height, 5)
        // 3 images, 2 labels
        _ = write(idx(magic: IDX.imagesMagic, dims: [3, 4, 4], payload: 48), "train-images-idx3-ubyte")
        XCTAssertThrowsError(try Dataset.load(directory: dir, split: .train)) {
            XCTAssertTrue("\($0)".contains("2 labels but"), "\($0)")
        }
        // and a good one
        _ = write(idx(magic: IDX.labelsMagic, dims: [3], payload: 3), "train-labels-idx1-ubyte")
        let data = try Dataset.load(directory: dir, split: .train)
        XCTAssertEqual([data.count, data.channels, data.height, data.width], [3, 1, 4, 4])
        // the same through load(path:), its header read first by the plan; asked for 3 channels
        // each plane repeats the gray one
        let plan = try Dataset.plan(path: dir, split: .train)
        XCTAssertEqual([plan.images, plan.channels, plan.bytes], [3, 1, 48])
        let rgb = try Dataset.load(path: dir, split: .train, channels: 3)
        XCTAssertEqual(Array(rgb.pixels[0..<48]), Array(data.pixels[0..<16] + data.pixels[0..<16] + data.pixels[0..<16]))
    }

    func testDatasetNamesMissingDirectoryAndFiles() {
        XCTAssertThrowsError(try Dataset.load(directory: dir + "/absent", split: .train)) {
            XCTAssertTrue("\($0)".contains("data directory not found"), "\($0)")
        }
        XCTAssertThrowsError(try Dataset.load(directory: dir, split: .test)) {
            XCTAssertTrue("\($0)".contains("t10k-images-idx3-ubyte.gz: no such file"), "\($0)")
        }
    }

    // MARK: - gzip in bounded memory

    /// `bytes` gzip-compressed by /bin/gzip (one member).
    func gzipped(_ bytes: [UInt8], _ name: String) throws -> [UInt8] {
        let path = write(bytes, name)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gzip.arguments = ["-f", path]
        try gzip.run(); gzip.waitUntilExit()
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path + ".gz")))
    }

    /// The process's peak resident memory so far, in bytes (ru_maxrss is in KiB on Linux).
    func peakRSS() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024
    }

    func testConcatenatedGzipMembersAreOneFileAndTrailingGarbageIsRefused() throws {
        // `cat a.gz b.gz` (and pigz) make one file of several members, as gzip -d reads it; the
        // first member ends inside the IDX header, which the plan's header read must go on into
        let whole = idx(magic: IDX.imagesMagic, dims: [3, 4, 4], payload: 48)
        try FileManager.default.createDirectory(atPath: dir + "/members", withIntermediateDirectories: true)
        let path = write(try gzipped(Array(whole.prefix(6)), "part1") + gzipped(Array(whole.dropFirst(6)), "part2"),
                         "members/train-images-idx3-ubyte.gz")
        XCTAssertEqual(try IDX.read(path: path, expectedMagic: IDX.imagesMagic).values, Array(whole.dropFirst(16)))
        _ = write(try gzipped(idx(magic: IDX.labelsMagic, dims: [3], payload: 3), "labels"), "members/train-labels-idx1-ubyte.gz")
        XCTAssertEqual(try Dataset.load(path: dir + "/members", split: .train).count, 3)
        // anything else after the last member is refused in one line
        let member = try gzipped(idx(magic: IDX.labelsMagic, dims: [5], payload: 5), "member")
        assertRejects(write(member + [UInt8](repeating: 0xAB, count: 16), "trailing.gz"), magic: IDX.labelsMagic,
                      "16 bytes of trailing garbage after the end of the gzip data")
        // a second whole file in a second member is more data than the header declares
        assertRejects(write(member + member, "twice.gz"), magic: IDX.labelsMagic, "more than the 5 bytes of data its IDX header declares")
    }

    func testHeadersDeclaringMoreThanTheFileHoldsAreRefusedBeforeAnythingIsSized() throws {
        // 2^30 images of 8x8 (64 GiB) declared by files of a few KB: refused from the files' real
        // sizes, before any array is sized by the count
        let huge: [UInt32] = [1 << 30, 8, 8]
        for (folder, gzip) in [("raw", false), ("gz", true)] {
            try FileManager.default.createDirectory(atPath: dir + "/" + folder, withIntermediateDirectories: true)
            let images = idx(magic: IDX.imagesMagic, dims: huge, payload: 3000)
            let name = folder + "/train-images-idx3-ubyte" + (gzip ? ".gz" : "")
            let path = write(gzip ? try gzipped(images, "huge") : images, name)
            _ = write(idx(magic: IDX.labelsMagic, dims: [1 << 30], payload: 10), folder + "/train-labels-idx1-ubyte")
            XCTAssertThrowsError(try Dataset.load(path: dir + "/" + folder, split: .train)) {
                XCTAssertTrue("\($0)".hasPrefix(path + ": "), "\($0)")
                XCTAssertTrue("\($0)".contains(gzip ? "declare 68719476736 bytes of data, more than a gzip file of" : "truncated: dimensions [1073741824, 8, 8] declare 68719476736 bytes of data, the file has 3000"), "\($0)")
            }
        }
        // a .npy file declaring shape (1073741824, 8, 8) with 40,000 bytes of data
        var header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1073741824, 8, 8), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let npy = write([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count), 0] + Array(header.utf8) + [UInt8](repeating: 1, count: 40_000), "huge.npy")
        XCTAssertThrowsError(try Dataset.load(path: npy, split: .train)) {
            XCTAssertEqual("\($0)", npy + ": holds 40000 bytes of data, its shape [1073741824, 8, 8] of |u1 needs 68719476736")
        }
    }

    func testTheMemoryCheckComesBeforeAnythingSizedByTheImageCount() throws {
        // 2^22 images of 1x1, really in the file: refused by the memory check before the plan's
        // per-image arrays (about 100 MB) are made
        try FileManager.default.createDirectory(atPath: dir + "/many", withIntermediateDirectories: true)
        _ = write(idx(magic: IDX.imagesMagic, dims: [1 << 22, 1, 1], payload: 1 << 22), "many/train-images-idx3-ubyte")
        _ = write(idx(magic: IDX.labelsMagic, dims: [1 << 22], payload: 1 << 22), "many/train-labels-idx1-ubyte")
        let before = peakRSS()
        XCTAssertThrowsError(try Dataset.load(path: dir + "/many", split: .train, limit: 10, memoryAvailable: 1 << 20)) {
            // an IDX file is read whole: --limit would not help, and the advice does not offer it
            XCTAssertTrue("\($0)".hasPrefix(dir + "/many/train-images-idx3-ubyte: the train split's images need 4.2 MB"), "\($0)")
            XCTAssertTrue("\($0)".contains("--limit does not help; use a smaller file"), "\($0)")
        }
        XCTAssertLessThan(peakRSS() - before, 50 << 20, "peak memory grew by \(peakRSS() - before) bytes")
    }

    func testUnreadableFilesSayWhy() throws {
        let link = dir + "/dangling-train-images-idx3-ubyte"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: dir + "/absent")
        assertRejects(link, "a dangling symbolic link")
        let loop = dir + "/loop.npy"
        try FileManager.default.createSymbolicLink(atPath: loop, withDestinationPath: loop)
        XCTAssertThrowsError(try NPY.read(path: loop)) { XCTAssertTrue("\($0)".contains("a symbolic link that loops"), "\($0)") }
        XCTAssertThrowsError(try Dataset.load(path: loop, split: .train)) { XCTAssertTrue("\($0)".contains("a symbolic link that loops"), "\($0)") }
    }

    func testStopsInflatingAtTheSizeTheHeaderDeclares() throws {
        // a header declaring 2 images of 4x4 (32 bytes) followed by 8 MB of zeros: the reader must
        // stop as soon as the data runs past the header's size, not inflate it all first
        let big = idx(magic: IDX.imagesMagic, dims: [2, 4, 4], payload: 0) + [UInt8](repeating: 0, count: 8 << 20)
        let path = write(try gzipped(big, "big"), "big.gz")
        assertRejects(path, "more than the 32 bytes of data its IDX header declares")
    }

    func testTruncatedGzipWithAHugeSizeTrailerStaysSmall() throws {
        // half of the training images with the gzip trailer's size field (ISIZE) set to 4 GiB - 1:
        // an untrusted number that must not size any allocation
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: mnist + "/train-images-idx3-ubyte.gz")))
        var half = Array(original.prefix(original.count / 2))
        for i in half.count - 4 ..< half.count { half[i] = 0xFF }
        let path = write(half, "half-isize.gz")
        let before = peakRSS()
        assertRejects(path, "truncated gzip")
        // the whole file inflates to 47 MB; anything near the claimed 4 GiB is a bug
        XCTAssertLessThan(peakRSS() - before, 200 << 20, "peak memory grew by \(peakRSS() - before) bytes")
    }

    func testTruncatedGzipNamesHowMuchTheHeaderDeclared() throws {
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: mnist + "/train-images-idx3-ubyte.gz")))
        assertRejects(write(Array(original.prefix(original.count / 2)), "half.gz"), "of the 47040016 bytes its IDX header declares")
    }
}
