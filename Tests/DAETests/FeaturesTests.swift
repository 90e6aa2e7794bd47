// Using a trained model: PNG decoding of every kind the issue names (and the broken ones), the
// denoiser on sizes that are not multiples of 4, feature shapes, the linear probe's accuracy, and
// the denoise/encode commands end to end.

@testable import DAE
import Foundation
import XCTest

final class FeaturesTests: XCTestCase {
    func fixture(_ name: String) -> (bytes: [UInt8], path: String) {
        let url = Bundle.module.url(forResource: "Fixtures/images/" + name, withExtension: nil)!
        return ([UInt8](try! Data(contentsOf: url)), url.path)
    }

    func testEveryPNGKindDecodesToTheSameGrayDigit() throws {
        let gray = try PNG.decode(fixture("gray.png").bytes, path: "gray.png")
        XCTAssertEqual([gray.width, gray.height], [28, 28])
        XCTAssertEqual(gray.pixels.max(), 255)
        for name in ["rgb.png", "palette.png", "sixteen.png", "alpha.png"] {
            let image = try PNG.decode(fixture(name).bytes, path: name)
            XCTAssertEqual([image.width, image.height], [28, 28], name)
            let worst = zip(image.pixels, gray.pixels).map { abs(Int($0) - Int($1)) }.max()!
            XCTAssertLessThanOrEqual(worst, 1, "\(name) decodes to other gray values than gray.png")
        }
    }

    func testBrokenPNGsGiveAnErrorNamingTheFile() {
        for (name, fragment) in [("notpng.png", "not a PNG file"), ("truncated.png", "truncated or corrupt"), ("zerowidth.png", "zerowidth.png")] {
            XCTAssertThrowsError(try PNG.decode(fixture(name).bytes, path: name), name) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(fragment) && text.contains(name) && !text.contains("\n"), text)
            }
        }
        XCTAssertThrowsError(try PNG.decode([], path: "empty.png"))
        // a header claiming 5000x5000 (more than PNG.maxPixels): refused before any allocation
        var huge = fixture("gray.png").bytes
        for (k, v) in [UInt32(5000), UInt32(5000)].enumerated() {
            for b in 0..<4 { huge[16 + 4 * k + b] = UInt8(v >> (24 - 8 * b) & 0xFF) }
        }
        let crc = huge[12..<29].withUnsafeBytes { crc32(bytes: $0[...]) }
        for b in 0..<4 { huge[29 + b] = UInt8(crc >> (24 - 8 * b) & 0xFF) }
        XCTAssertThrowsError(try PNG.decode(huge, path: "huge.png")) { XCTAssertTrue("\($0)".contains("more than"), "\($0)") }
    }

    func testPNGWriteReadRoundTripOfOddSizes() throws {
        let image = GrayImage(width: 45, height: 30, pixels: (0..<1350).map { UInt8($0 % 256) })
        XCTAssertEqual(try PNG.decode(PNG.encode(image), path: "x"), image)
    }

    func testDenoiserPadsAndCropsBackAnySize() {
        let params = FloatBuffer(count: ConvDenoiser.makeLayout().count)
        initializeParameters(params, layout: ConvDenoiser.makeLayout(), seed: 1)
        let denoiser = ImageDenoiser(model: .reference, params: params)
        // a 30x45 image denoised alone equals its top-left corner when denoised inside a 32x48
        // image made by replicating its edges: padding is 'replicate' and the crop is top-left
        let (h, w) = (30, 45)
        let image = randomArray(h * w, seed: 2).map { ($0 + 1) / 2 }
        var padded = [Float](repeating: 0, count: 32 * 48)
        for y in 0..<32 { for x in 0..<48 { padded[y * 48 + x] = image[min(y, h - 1) * w + min(x, w - 1)] } }
        var small = [Float](repeating: 0, count: h * w), big = [Float](repeating: 0, count: 32 * 48)
        denoiser.denoise(image, count: 1, height: h, width: w, into: &small)
        denoiser.denoise(padded, count: 1, height: 32, width: 48, into: &big)
        for y in 0..<h { for x in 0..<w { XCTAssertEqual(small[y * w + x], big[y * 48 + x], accuracy: 1e-6) } }
        XCTAssertThrowsError(try ImageDenoiser(model: .stacked(StackedSpec(inputSize: 784, hidden: [8])), params: params)
            .check(height: 30, width: 45, source: "odd.png"))
    }

    func testFeatureShapes() {
        let conv = FloatBuffer(count: ConvDenoiser.makeLayout().count)
        XCTAssertEqual(FeatureExtractor(.encoder(.reference, conv), height: 28, width: 28).featureShape, [64, 7, 7])
        let spec = StackedSpec(inputSize: 784, hidden: [20, 12])
        XCTAssertEqual(FeatureExtractor(.encoder(.stacked(spec), FloatBuffer(count: StackedDenoiser.makeLayout(spec).count)), height: 28, width: 28).featureShape, [12])
        XCTAssertEqual(FeatureExtractor(.pixels, height: 28, width: 28).featureShape, [784])
    }

    func testLinearProbeOnPixelsBeatsAFloor() throws {
        // (small: tests run as a debug build)
        let train = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(600)
        let test = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .test).prefix(300)
        var config = ProbeConfig()
        config.iterations = 30
        let result = try LinearProbe(features: FeatureExtractor(.pixels, height: 28, width: 28), train: train, test: test, config: config).run()
        XCTAssertGreaterThan(result.testAccuracy, 0.75, "a linear classifier on MNIST pixels should pass 75% even on 600 images")
        XCTAssertGreaterThan(result.trainAccuracy, result.testAccuracy - 0.05)
        // chance is 10%: the untrained convolutional encoder's features must also carry the digits
        let params = FloatBuffer(count: ConvDenoiser.makeLayout().count)
        initializeParameters(params, layout: ConvDenoiser.makeLayout(), seed: 0)
        let random = try LinearProbe(features: FeatureExtractor(.encoder(.reference, params), height: 28, width: 28, threads: 2),
                                 train: train, test: test, config: config, threads: 2).run()
        XCTAssertGreaterThan(random.testAccuracy, 0.75)
    }
}
