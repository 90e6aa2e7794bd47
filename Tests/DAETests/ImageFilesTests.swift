// JPEG and TIFF files of a --data folder decode to the same gray digit as its PNG (Fixtures/images,
// made by Tests/reference/make_image_fixtures.py with Pillow); broken files are named.

import DAE
import Foundation
import XCTest

final class ImageFilesTests: XCTestCase {
    func fixture(_ name: String) -> String { Bundle.module.url(forResource: "Fixtures/images/" + name, withExtension: nil)!.path }
    lazy var digit = try! ImageFile.decodeGray(path: fixture("gray.png"))[0]

    func meanAbsoluteDifference(_ a: GrayImage, _ b: GrayImage) -> Double {
        zip(a.pixels, b.pixels).map { abs(Double($0) - Double($1)) }.reduce(0, +) / Double(a.pixels.count)
    }

    func testTIFFDecodesExactlyAndEveryPageIsAnImage() throws {
        for name in ["gray.tif", "sixteen.tif", "rgb.tif"] {
            let pages = try ImageFile.decodeGray(path: fixture(name))
            XCTAssertEqual(pages, [digit], name)      // 16-bit v*257 -> v; equal RGB channels -> their value
        }
        let pages = try ImageFile.decodeGray(path: fixture("pages.tif"))
        XCTAssertEqual(pages.count, 3)
        XCTAssertEqual(pages[0], digit)
        let mnist = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .test)
        XCTAssertEqual(pages[2].pixels, Array(mnist.pixels[(2 * 784)..<(3 * 784)]))
    }

    func testJPEGDecodesCloseToTheDigit() throws {
        for name in ["gray.jpg", "rgb.jpg"] {
            let image = try ImageFile.decodeGray(path: fixture(name))[0]
            XCTAssertEqual([image.width, image.height], [28, 28])
            XCTAssertLessThan(meanAbsoluteDifference(image, digit), 3, name)     // quality 95: a few levels off
        }
    }

    func testBrokenFilesAreNamed() {
        for (name, fragment) in [("truncated.jpg", "cannot decode the image data"), ("truncated.tif", "truncated"),
                                 ("notpng.png", "not a PNG, JPEG or TIFF image")] {
            XCTAssertThrowsError(try ImageFile.decodeGray(path: fixture(name)), name) {
                XCTAssertTrue("\($0)".hasPrefix(fixture(name) + ":") && "\($0)".contains(fragment), "\(name): \($0)")
            }
        }
    }

    func testAFolderMixesPNGJPEGAndTIFF() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (i, name) in ["gray.png", "gray.jpg", "pages.tif"].enumerated() {
            try FileManager.default.createDirectory(atPath: dir + "/train/c\(i)", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: fixture(name), toPath: dir + "/train/c\(i)/" + name)
        }
        try FileManager.default.createDirectory(atPath: dir + "/test/c0", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixture("rgb.tif"), toPath: dir + "/test/c0/x.TIF")
        let train = try Dataset.load(path: dir, split: .train)
        XCTAssertEqual(train.count, 5)                        // 1 + 1 + 3 pages
        XCTAssertEqual(train.labels, [0, 1, 2, 2, 2])
        XCTAssertEqual(try Dataset.load(path: dir, split: .test).count, 1)
    }
}
