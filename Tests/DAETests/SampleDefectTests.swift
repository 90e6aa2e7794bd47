// `dae-dist sample` judges its samples with a pixel classifier trained on the training split and
// scored on the test split. When the two splits hold images of different sizes, the classifier used
// to write past its input buffer; now it refuses (the command's check: EndToEndTests/SampleCommandTests).

import DAE
import Foundation
import XCTest

final class SampleDefectTests: XCTestCase {
    static func dataset(count: Int, height: Int, width: Int) -> Dataset {
        Dataset(count: count, height: height, width: width, pixels: [UInt8](repeating: 128, count: count * height * width),
                labels: (0..<count).map { UInt8($0 % 10) }, source: "memory")
    }

    func testClassifierRefusesImagesOfAnotherSize() {
        let classifier = DigitClassifier(inputs: 4 * 4, seed: 0)
        let larger = Self.dataset(count: 20, height: 8, width: 8)
        XCTAssertThrowsError(try classifier.accuracy(on: larger)) { XCTAssertTrue("\($0)".contains("8x8"), "\($0)") }
        XCTAssertThrowsError(try classifier.train(on: larger, epochs: 1)) { XCTAssertTrue("\($0)".contains("16 inputs"), "\($0)") }
        let smaller = Self.dataset(count: 20, height: 2, width: 4)
        XCTAssertThrowsError(try classifier.accuracy(on: smaller))
        XCTAssertNoThrow(try classifier.accuracy(on: Self.dataset(count: 20, height: 4, width: 4)))
    }
}
