// Colour, mixed sizes, the header pass and the memory check, and decoding split over ranks and
// threads: fixtures with hand-known pixels (Fixtures/images/colour*, made by
// Tests/reference/make_image_fixtures.py with Pillow), hand-computed conversions, every bad input
// refused with one line naming its file.

@testable import DAE
import Foundation
import XCTest
import Synchronization

final class DataChannelsTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func fixture(_ name: String) -> String { Bundle.module.url(forResource: "Fixtures/images/" + name, withExtension: nil)!.path }

    /// The 2x3 image of the colour fixtures as planes R, G, B.
    let colourPlanes: [UInt8] = [255, 0, 0, 10, 200, 0,   0, 255, 0, 20, 100, 0,   0, 0, 255, 30, 50, 0]

    func copy(_ name: String, to relative: String) {
        let path = dir + "/" + relative
        try! FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try! FileManager.default.copyItem(atPath: fixture(name), toPath: path)
    }

    func writePNG(_ relative: String, height: Int, width: Int, pixels: [UInt8]? = nil) {
        let path = dir + "/" + relative
        try! FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let values = pixels ?? (0..<(height * width)).map { UInt8($0 % 256) }
        _ = FileManager.default.createFile(atPath: path, contents: Data(PNG.encode(planes: values, channels: 1, width: width, height: height)))
    }

    func testColourFilesDecodeToTheirPlanes() throws {
        for name in ["colour.png", "colour.tif", "colour-palette.png"] {
            let image = try XCTUnwrap(ImageFile.decode(path: fixture(name), channels: 3).first)
            XCTAssertEqual([image.channels, image.height, image.width], [3, 2, 3], name)
            XCTAssertEqual(image.pixels, colourPlanes, name)
        }
        let jpeg = try ImageFile.decode(path: fixture("colour.jpg"), channels: 3)[0]
        XCTAssertEqual([jpeg.height, jpeg.width], [16, 16])
        for (c, value) in [200, 100, 50].enumerated() {
            let plane = jpeg.pixels[(c * 256)..<((c + 1) * 256)]
            XCTAssertLessThanOrEqual(plane.map { abs(Int($0) - value) }.max()!, 2, "plane \(c)")
        }
        // alpha composited onto black: the opaque row as it is, the half-transparent one darker
        let alpha = try ImageFile.decode(path: fixture("colour-alpha.png"), channels: 3)[0]
        for c in 0..<3 {
            XCTAssertEqual(Array(alpha.pixels[(c * 6)..<(c * 6 + 3)]), Array(colourPlanes[(c * 6)..<(c * 6 + 3)]))
            for x in 3..<5 { XCTAssertLessThan(alpha.pixels[c * 6 + x], colourPlanes[c * 6 + x]) }
        }
    }

    func testPNGWritesRGBPlanes() throws {
        let png = PNG.encode(planes: colourPlanes, channels: 3, width: 3, height: 2)
        XCTAssertEqual(try PNG.decode(png, path: "x.png", channels: 3).pixels, colourPlanes)
        XCTAssertEqual(try ImageFile.headers(path: fixture("colour.png")), [ImageHeader(width: 3, height: 2, colour: true)])
        // floats round as save_image: x * 255 + 0.5, clamped
        let floats = PNG.encode(planes: [0, 0.5, 1, -1, 2, 0.2].map { Float($0) }, channels: 1, width: 3, height: 2)
        XCTAssertEqual(try PNG.decode(floats, path: "y.png").pixels, [0, 128, 255, 0, 255, 51])
        XCTAssertEqual(PNG.encode(GrayImage(width: 1, height: 1, pixels: [7])), PNG.encode(planes: [UInt8](repeating: 7, count: 1), channels: 1, width: 1, height: 1))
    }

    func testHeadersTellSizeAndColourWithoutDecoding() throws {
        for (name, colour, pages) in [("colour.png", true, 1), ("colour-palette.png", true, 1), ("colour.jpg", true, 1), ("colour.tif", true, 1),
                                      ("gray.png", false, 1), ("gray.jpg", false, 1), ("sixteen.tif", false, 1), ("pages.tif", false, 3),
                                      ("sixteen.png", false, 1), ("alpha.png", false, 1)] {
            let headers = try ImageFile.headers(path: fixture(name))
            XCTAssertEqual(headers.count, pages, name)
            XCTAssertEqual(headers.map(\.colour), [Bool](repeating: colour, count: pages), name)
            let decoded = try ImageFile.decode(path: fixture(name), channels: 1)
            XCTAssertEqual(headers.map { [$0.height, $0.width] }, decoded.map { [$0.height, $0.width] }, name)
        }
    }

    func testColourToGrayIsTheLumaAndGrayToColourRepeatsThePlane() throws {
        // TIFF: round(0.299 R + 0.587 G + 0.114 B) by hand: 76.245, 149.685, 29.07; 18.15, 124.2, 0
        XCTAssertEqual(try ImageFile.decode(path: fixture("colour.tif"), channels: 1)[0].pixels, [76, 150, 29, 18, 124, 0])
        XCTAssertEqual(PlanarImage(channels: 3, width: 3, height: 2, pixels: colourPlanes).converted(to: 1).pixels, [76, 150, 29, 18, 124, 0])
        // PNG (libpng's luminance): white and black exact, green brightest, blue darkest
        let png = try ImageFile.decode(path: fixture("colour.png"), channels: 1)[0].pixels
        XCTAssertEqual(png[5], 0)
        XCTAssertGreaterThan(png[1], png[0]); XCTAssertGreaterThan(png[0], png[2])
        for name in ["gray.png", "gray.jpg", "gray.tif", "sixteen.png"] {
            let gray = try ImageFile.decode(path: fixture(name), channels: 1)[0].pixels
            XCTAssertEqual(try ImageFile.decode(path: fixture(name), channels: 3)[0].pixels, gray + gray + gray, name)
        }
    }

    func testFolderChannelsFollowTheImagesUnlessAsked() throws {
        copy("gray.png", to: "train/a.png"); copy("gray.jpg", to: "train/b.jpg"); copy("colour.png", to: "test/c.png")
        // one colour image in the test split makes both splits RGB
        let train = try Dataset.load(path: dir, split: .train)
        XCTAssertEqual([train.channels, train.imageSize], [3, 3 * 784])
        let gray = try Dataset.load(path: dir, split: .train, channels: 1)
        XCTAssertEqual(gray.channels, 1)
        XCTAssertEqual(Array(train.pixels[0..<784]), Array(gray.pixels[0..<784]))
        XCTAssertEqual(Array(train.pixels[784..<1568]), Array(gray.pixels[0..<784]))
        let test = try Dataset.load(path: dir, split: .test)
        XCTAssertEqual(test.pixels, colourPlanes)
        XCTAssertEqual(test.names, ["test/c.png"])
        var floats = [Float](repeating: -1, count: 18)
        test.image(0, into: &floats)
        XCTAssertEqual(floats, colourPlanes.map { Float($0) / 255 })
        XCTAssertThrowsError(try Dataset.load(path: dir, split: .train, channels: 2)) { XCTAssertTrue("\($0)".hasPrefix("--channels:"), "\($0)") }
        // gray only: 1 channel
        try FileManager.default.removeItem(atPath: dir + "/test/c.png")
        copy("gray.tif", to: "test/c.tif")
        XCTAssertEqual(try Dataset.load(path: dir, split: .train).channels, 1)
    }

    /// A .npy file: version 1 header for `descr` and `shape`, then `payload`.
    func writeNPY(_ name: String, descr: String, shape: [Int], payload: [UInt8]) -> String {
        let shapeText = "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)] + Array(header.utf8) + payload
        let path = dir + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    func testNPYColourIsStoredAsPlanes() throws {
        // 2 images of 2x2 pixels x 3 channels, values 0 ..< 24 in HWC order
        let path = writeNPY("rgb.npy", descr: "|u1", shape: [2, 2, 2, 3], payload: (0..<24).map { UInt8($0) })
        let images = try NPY.read(path: path)
        XCTAssertEqual([images.count, images.channels, images.height, images.width], [2, 3, 2, 2])
        XCTAssertEqual(images.pixels, [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11, 12, 15, 18, 21, 13, 16, 19, 22, 14, 17, 20, 23])
        XCTAssertThrowsError(try NPY.readImages(path: path)) { XCTAssertTrue("\($0)".contains("3 channels"), "\($0)") }
        _ = writeNPY("train.npy", descr: "|u1", shape: [2, 2, 2, 3], payload: (0..<24).map { UInt8($0) })
        _ = writeNPY("test.npy", descr: "|u1", shape: [1, 2, 2, 3], payload: [UInt8](repeating: 9, count: 12))
        let train = try Dataset.load(path: dir, split: .train)
        XCTAssertEqual(train.channels, 3)
        XCTAssertEqual(train.pixels, images.pixels)
        // to gray by hand: pixel 0 of image 0 is (0, 1, 2): 0.587 + 0.228 = 0.815 -> 1
        XCTAssertEqual(try Dataset.load(path: dir, split: .train, channels: 1).pixels[0], 1)
        let plan = try Dataset.plan(path: dir, split: .train)
        XCTAssertEqual([plan.images, plan.channels, plan.bytes], [2, 3, 24])
        XCTAssertThrowsError(try NPY.read(path: writeNPY("four.npy", descr: "|u1", shape: [1, 2, 2, 4], payload: [UInt8](repeating: 0, count: 16)))) {
            XCTAssertTrue("\($0)".contains("4 channels"), "\($0)")
        }
    }

    func testMixedSizesAreKeptAndCropped() throws {
        writePNG("a.png", height: 8, width: 8)
        writePNG("b.png", height: 5, width: 10)         // not multiples of 4: the model checks that
        let data = try Dataset.load(path: dir, valFraction: 0, split: .train)
        XCTAssertEqual([data.count, data.height, data.width], [2, 5, 8])
        XCTAssertEqual(data.shapes, [ImageShape(height: 8, width: 8, offset: 0), ImageShape(height: 5, width: 10, offset: 64)])
        XCTAssertEqual(data.shape(1), ImageShape(height: 5, width: 10, offset: 64))
        XCTAssertEqual(data.names, ["a.png", "b.png"])
        XCTAssertEqual(data.pixels.count, 114)
        XCTAssertThrowsError(try data.requireOneSize(flagHint: "--patch N")) {
            XCTAssertEqual("\($0)", "\(dir): the images differ in size: a.png is 8x8 but b.png is 5x10; pass --patch N to train on crops of that size, or resize the images to one size")
        }
        // b's pixel (y, x) is (10 y + x) % 256: the 2x3 window at (1, 4)
        var out = [Float](repeating: -1, count: 6)
        data.crop(1, top: 1, left: 4, height: 2, width: 3, into: &out)
        XCTAssertEqual(out, [14, 15, 16, 24, 25, 26].map { Float($0) / 255 })
        data.crop(0, top: 6, left: 7, height: 2, width: 1, into: &out)
        XCTAssertEqual(Array(out[0..<2]), [55, 63].map { Float($0) / 255 })
        // prefix keeps working: one image is one size
        let first = data.prefix(1)
        XCTAssertNil(first.shapes)
        XCTAssertEqual([first.count, first.height, first.width, first.pixels.count], [1, 8, 8, 64])
        XCTAssertNoThrow(try first.requireOneSize(flagHint: "--patch N"))
        XCTAssertEqual(data.prefix(2).shapes, data.shapes)
    }

    func testColourCropsEveryPlane() throws {
        let data = Dataset(count: 1, channels: 3, height: 2, width: 3, pixels: colourPlanes, labels: [0], source: "x")
        var out = [Float](repeating: -1, count: 3)
        data.crop(0, top: 1, left: 1, height: 1, width: 1, into: &out)
        XCTAssertEqual(out, [200, 100, 50].map { Float($0) / 255 })
    }

    func testThePlanCountsBytesAndTheMemoryCheckRefuses() throws {
        writePNG("x/a.png", height: 8, width: 8); copy("pages.tif", to: "x/b.tif"); copy("colour.png", to: "y/c.png")
        let plan = try Dataset.plan(path: dir, split: .train, valFraction: 0)
        XCTAssertEqual(plan.files.count, 3)
        XCTAssertEqual(plan.images, 5)
        XCTAssertEqual(plan.channels, 3)
        XCTAssertEqual(plan.bytes, 3 * (64 + 3 * 784 + 6))
        XCTAssertEqual(plan.names, ["x/a.png", "x/b.tif#page 1", "x/b.tif#page 2", "x/b.tif#page 3", "y/c.png"])
        XCTAssertEqual(plan.labels, [0, 0, 0, 0, 1])
        XCTAssertNoThrow(try Dataset.load(path: dir, valFraction: 0, split: .train, memoryAvailable: 1 << 20))
        XCTAssertThrowsError(try Dataset.load(path: dir, valFraction: 0, split: .train, memoryAvailable: 4000)) {
            XCTAssertEqual("\($0)", "\(dir): the train split's 5 images need 7266 bytes but 4000 bytes of memory are available (3500 bytes usable); use fewer images or --limit 2")
        }
        // the limit it names is applied before the check: following the advice loads
        let two = try Dataset.load(path: dir, valFraction: 0, split: .train, limit: 2, memoryAvailable: 4000)
        XCTAssertEqual(two.names, ["x/a.png", "x/b.tif#page 1"])
        XCTAssertEqual(two.pixels.count, 3 * (64 + 784))
        // a limit inside a multi-page file keeps its first pages only
        let three = try Dataset.load(path: dir, valFraction: 0, split: .train, limit: 3)
        XCTAssertEqual(three.names, ["x/a.png", "x/b.tif#page 1", "x/b.tif#page 2"])
        XCTAssertEqual(three.pixels, Array(try Dataset.load(path: dir, valFraction: 0, split: .train).pixels.prefix(3 * (64 + 2 * 784))))
    }

    func testSixteenBitImagesAreNoted() throws {
        copy("gray.png", to: "a.png"); copy("sixteen.png", to: "b.png"); copy("sixteen.tif", to: "c.tif")
        var notes: [String] = []
        let data = try Dataset.load(path: dir, valFraction: 0, split: .train, notes: { notes.append($0) })
        XCTAssertEqual(data.count, 3)
        XCTAssertEqual(notes.count, 1, "\(notes)")
        let digit = try ImageFile.decodeGray(path: fixture("gray.png"))[0].pixels
        let range = "values \(257 * Int(digit.min()!))-\(257 * Int(digit.max()!)) of 0-65535"
        XCTAssertEqual(notes.first, "warning: 2 files of 3 in the train split hold 16-bit images (e.g. \(dir)/b.png, \(range)); they are reduced to 8 bits (v/257), so values in a small part of the 16-bit range load dark: scale them to 8 bits first to keep their contrast")
        // the same for files read one by one (denoise's inputs), here a TIFF's range
        let inputs = [fixture("gray.png"), fixture("sixteen.tif")]
        XCTAssertTrue(ImageFile.sixteenBitNote(inputs: inputs, what: "the input")?.hasPrefix("warning: 1 file of 2 in the input holds 16-bit images (e.g. \(fixture("sixteen.tif")), \(range)); ") ?? false)
        XCTAssertNil(ImageFile.sixteenBitNote(inputs: [fixture("gray.png"), fixture("gray.jpg")], what: "the input"))
    }

    func testBrokenFilesAreOneLineNamingTheFile() throws {
        copy("gray.png", to: "a.png")
        copy("truncated.png", to: "b.png")       // its header is fine: refused when decoding
        FileManager.default.createFile(atPath: dir + "/c.png", contents: Data("not an image at all".utf8))
        // a PNG whose header claims 100000 x 100000
        var huge = PNG.encode(planes: [UInt8](repeating: 0, count: 1), channels: 1, width: 1, height: 1)
        huge[16..<24] = [0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0]
        FileManager.default.createFile(atPath: dir + "/d.png", contents: Data(huge))
        for (name, fragment) in [("b.png", "cannot decode the image data"), ("c.png", "not a PNG, JPEG or TIFF image"),
                                 ("d.png", "100000x100000, more than the")] {
            let only = temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: only) }
            try FileManager.default.copyItem(atPath: dir + "/" + name, toPath: only + "/" + name)
            try FileManager.default.copyItem(atPath: dir + "/a.png", toPath: only + "/a.png")
            XCTAssertThrowsError(try Dataset.load(path: only, valFraction: 0, split: .train, threads: 2), name) {
                XCTAssertTrue("\($0)".hasPrefix(only + "/" + name + ":") && "\($0)".contains(fragment) && !"\($0)".contains("\n"), "\(name): \($0)")
            }
        }
    }

    /// A folder of 23 files of varied sizes and kinds.
    func makeVariedFolder() {
        for i in 0..<20 { writePNG("c\(i % 3)/img\(i).png", height: 4 + i % 5, width: 6 + i % 7, pixels: (0..<((4 + i % 5) * (6 + i % 7))).map { UInt8(($0 * 7 + i) % 256) }) }
        copy("pages.tif", to: "c1/pages.tif"); copy("colour.jpg", to: "c2/colour.jpg"); copy("colour.tif", to: "c0/z.tif")
    }

    func testTheSameBytesWhateverTheThreads() throws {
        makeVariedFolder()
        let one = try Dataset.load(path: dir, valFraction: 0, split: .train, threads: 1)
        let calls = Calls()
        let three = try Dataset.load(path: dir, valFraction: 0, split: .train, threads: 3, progress: { calls.add($0, $1) })
        XCTAssertEqual(one.pixels, three.pixels)
        XCTAssertEqual(one.shapes, three.shapes)
        XCTAssertEqual(one.labels, three.labels)
        XCTAssertEqual(one.count, 25)
        XCTAssertEqual(calls.list.last.map { [$0.0, $0.1] }, [25, 25])
        XCTAssertEqual(calls.list.map(\.0), calls.list.map(\.0).sorted())
        XCTAssertTrue(calls.list.allSatisfy { $0.1 == 25 })
    }

    func testTheSameBytesAndErrorsWhateverTheRanks() throws {
        makeVariedFolder()
        let single = try Dataset.load(path: dir, valFraction: 0, split: .train)
        let folder = dir
        for size in [2, 3, 5] {
            let results = ThreadWorld.run(size: size) { (communicator: Communicator) throws(DAEError) in
                try Dataset.load(path: folder, valFraction: 0, split: .train, communicator: communicator, threads: 2)
            }
            for result in results {
                let data = try result.get()
                XCTAssertEqual(data.pixels, single.pixels, "\(size) ranks")
                XCTAssertEqual(data.shapes, single.shapes)
            }
        }
        // a broken file decoded by one rank: every rank throws its message
        try FileManager.default.copyItem(atPath: fixture("truncated.png"), toPath: dir + "/c1/img5x.png")
        let expected = "\(dir)/c1/img5x.png: "
        for size in [1, 3] {
            for result in ThreadWorld.run(size: size, { (communicator: Communicator) throws(DAEError) in
                try Dataset.load(path: folder, valFraction: 0, split: .train, communicator: communicator)
            }) {
                XCTAssertThrowsError(try result.get()) { XCTAssertTrue("\($0)".hasPrefix(expected) && "\($0)".contains("cannot decode"), "\($0)") }
            }
        }
    }
}

/// Progress calls, as (decoded, total).
final class Calls: @unchecked Sendable {
    let lock = NSLock()
    var list: [(Int, Int)] = []
    func add(_ a: Int, _ b: Int) { lock.lock(); list.append((a, b)); lock.unlock() }
}

/// `size` ranks as threads of this process, with real collectives between them (broadcast and
/// the Int64 sum are what loading uses).
final class ThreadWorld: @unchecked Sendable {
    let size: Int
    let condition = NSCondition()
    var arrived = 0, generation = 0
    var slots: [[UInt8]]
    var result: [UInt8] = []
    /// Whether the ranks offer non-blocking sums (startAllreduceSum): they do them at once, keep
    /// the result, and check at finishPending that nobody wrote to the buffer meanwhile.
    let overlap: Bool
    let started = Atomic<Int>(0)   // startAllreduceSum calls, over all ranks
    init(size: Int, overlap: Bool = false) {
        self.size = size; self.overlap = overlap
        slots = [[UInt8]](repeating: [], count: size)
    }

    /// Every rank hands in its bytes; all get `combine` of them once all have arrived.
    func collective(rank: Int, _ data: [UInt8], _ combine: ([[UInt8]]) -> [UInt8]) -> [UInt8] {
        condition.lock(); defer { condition.unlock() }
        let current = generation
        slots[rank] = data
        arrived += 1
        if arrived == size {
            result = combine(slots); arrived = 0; generation += 1
            condition.broadcast()
        } else {
            while generation == current { condition.wait() }
        }
        return result
    }

    final class Rank: Communicator, @unchecked Sendable {
        let world: ThreadWorld
        let rank: Int
        init(world: ThreadWorld, rank: Int) { self.world = world; self.rank = rank }
        var size: Int { world.size }
        var localSize: Int { 1 }
        var name: String { "threads" }
        /// Every rank's values summed in rank order (so the same on every rank), in place.
        func sum<T: AdditiveArithmetic>(_ values: UnsafeMutablePointer<T>, count: Int) {
            let size = MemoryLayout<T>.stride
            let mine = Array(UnsafeRawBufferPointer(start: values, count: size * count))
            let total = world.collective(rank: rank, mine) { all in
                var total = [T](repeating: .zero, count: count)
                for bytes in all { bytes.withUnsafeBytes { for i in 0..<count { total[i] += $0.load(fromByteOffset: size * i, as: T.self) } } }
                return total.withUnsafeBytes { Array($0) }
            }
            total.withUnsafeBytes { UnsafeMutableRawPointer(values).copyMemory(from: $0.baseAddress!, byteCount: size * count) }
        }
        func allreduceSum(_ values: UnsafeMutablePointer<Int64>, count: Int) { sum(values, count: count) }
        func allreduceSum(_ values: UnsafeMutablePointer<Float>, count: Int) { sum(values, count: count) }
        func allreduceSum(_ values: UnsafeMutablePointer<Double>, count: Int) { sum(values, count: count) }
        func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int) {
            let mine = rank == root ? Array(UnsafeRawBufferPointer(start: bytes, count: count)) : []
            let sent = world.collective(rank: rank, mine) { $0[root] }
            precondition(sent.count == count, "broadcast of \(count) bytes received \(sent.count)")
            sent.withUnsafeBytes { if count > 0 { bytes.copyMemory(from: $0.baseAddress!, byteCount: count) } }
        }
        func barrier() { _ = world.collective(rank: rank, []) { _ in [] } }
        var overlapsReductions: Bool { world.overlap }
        /// The started sum, done at once: at finishPending, whether its buffer still holds the result.
        var pending: (() -> Bool)? = nil
        func start<T: AdditiveArithmetic>(_ values: UnsafeMutablePointer<T>, count: Int) {
            precondition(world.overlap && pending == nil)
            sum(values, count: count)
            let bytes = { Array(UnsafeRawBufferPointer(start: values, count: MemoryLayout<T>.stride * count)) }
            let result = bytes()
            pending = { bytes() == result }
            world.started.add(1, ordering: .relaxed)
        }
        func startAllreduceSum(_ values: UnsafeMutablePointer<Int64>, count: Int) { start(values, count: count) }
        func startAllreduceSum(_ values: UnsafeMutablePointer<Float>, count: Int) { start(values, count: count) }
        func progressPending() -> Bool { true }
        func finishPending() {
            guard let unchanged = pending else { return }
            precondition(unchanged(), "a started sum's buffer was written to")
            pending = nil
        }
        func abort(code: Int32) -> Never { fatalError("abort \(code)") }
        func finalize() {}
    }

    /// Runs `body` on every rank, each on its own thread, and returns their results by rank.
    static func run<T>(size: Int, overlap: Bool = false, _ body: @escaping @Sendable (Communicator) throws(DAEError) -> T) -> [Result<T, DAEError>] {
        run(ThreadWorld(size: size, overlap: overlap), body)
    }

    static func run<T>(_ world: ThreadWorld, _ body: @escaping @Sendable (Communicator) throws(DAEError) -> T) -> [Result<T, DAEError>] {
        let size = world.size
        let box = ResultsBox<T>(size: size)
        let done = DispatchSemaphore(value: 0)
        for rank in 0..<size {
            let thread = Thread {
                let result: Result<T, DAEError>
                do throws(DAEError) { result = .success(try body(Rank(world: world, rank: rank))) } catch { result = .failure(error) }
                box.set(rank, result)
                done.signal()
            }
            thread.start()
        }
        for _ in 0..<size { done.wait() }
        return box.results.map { $0! }
    }
}

final class ResultsBox<T>: @unchecked Sendable {
    let lock = NSLock()
    var results: [Result<T, DAEError>?]
    init(size: Int) { results = Array(repeating: nil, count: size) }
    func set(_ i: Int, _ r: Result<T, DAEError>) { lock.lock(); results[i] = r; lock.unlock() }
}
