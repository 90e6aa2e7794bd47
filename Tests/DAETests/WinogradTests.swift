// The Winograd path's two implementations of its tile transforms, Swift and AVX-512 (chosen by
// the CPU), must give the same bits, zeros' signs included: otherwise a model's weights would
// depend on which machine of a cluster trained them. Its numerics against a direct convolution
// are in GradientCheckTests (testConv2dMatchesDirectConvolution, testConv2dGradients).

@testable import DAE
import XCTest

final class WinogradTests: XCTestCase {
    /// Random values with exact zeros of both signs mixed in (the transforms' 0 - x and x - 0).
    func values(_ count: Int, seed: UInt64) -> [Float] {
        randomArray(count, seed: seed).enumerated().map { i, v in i % 5 == 0 ? 0 : i % 7 == 0 ? -0.0 : v }
    }

    func assertSameBits(_ a: FloatBuffer, _ b: FloatBuffer, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let differing = (0..<a.count).filter { a[$0].bitPattern != b[$0].bitPattern }
        XCTAssertEqual(differing.count, 0, "\(what): \(differing.count) of \(a.count) values differ, first at \(differing.first ?? -1)", file: file, line: line)
    }

    func testAVX512TransformsGiveTheSwiftBits() throws {
        try XCTSkipUnless(Winograd.avx512, "this CPU runs the Swift transforms only")
        for (channels, n, h, w) in [(3, 2, 2, 2), (2, 1, 4, 14), (3, 2, 14, 14), (2, 2, 6, 16), (2, 1, 4, 18), (1, 1, 2, 34)] {
            let shape = "\(channels)x\(n)x\(h)x\(w)", pixels = channels * n * h * w
            let x = FloatBuffer(values(pixels, seed: 21)), m = FloatBuffer(values(16 * pixels / 4, seed: 22))
            let bias = FloatBuffer(values(channels, seed: 23))
            let rows = FloatBuffer(count: 4 * (w + 18))
            let swift = FloatBuffer(count: 4 * pixels), avx = FloatBuffer(count: 4 * pixels)
            Winograd.transformInput(x.pointer, channels: channels, n: n, h: h, w: w, into: swift.pointer, rows: rows.pointer, vectorised: false)
            Winograd.transformInput(x.pointer, channels: channels, n: n, h: h, w: w, into: avx.pointer, rows: rows.pointer, vectorised: true)
            assertSameBits(swift, avx, "input transform \(shape)")
            Winograd.transformOutputGradient(x.pointer, channels: channels, n: n, h: h, w: w, into: swift.pointer, vectorised: false)
            Winograd.transformOutputGradient(x.pointer, channels: channels, n: n, h: h, w: w, into: avx.pointer, vectorised: true)
            assertSameBits(swift, avx, "output-gradient transform \(shape)")
            let y1 = FloatBuffer(count: pixels), y2 = FloatBuffer(count: pixels)
            for b in [UnsafePointer(bias.pointer), nil] {
                Winograd.transformOutput(m.pointer, channels: channels, n: n, h: h, w: w, bias: b, into: y1.pointer, vectorised: false)
                Winograd.transformOutput(m.pointer, channels: channels, n: n, h: h, w: w, bias: b, into: y2.pointer, vectorised: true)
                assertSameBits(y1, y2, "output transform \(shape)\(b == nil ? "" : " with bias")")
            }
        }
    }

    /// The Swift transforms' full-width stores may run past a row of tiles onto values written
    /// later, never past their array: a canary after each array stays untouched.
    func testSwiftTransformsStayInsideTheirArrays() {
        for w in [14, 34] { transformsStayInside(w: w) }
    }

    func transformsStayInside(w: Int) {
        let (channels, n, h) = (2, 1, 4), pixels = channels * n * h * w, canary: Float = 12345
        let x = FloatBuffer(values(pixels, seed: 31)), m = FloatBuffer(values(4 * pixels, seed: 32))
        let rows = FloatBuffer(count: 4 * (w + 18))
        let v = FloatBuffer(count: 4 * pixels + 16), y = FloatBuffer(count: pixels + 16)
        for i in 0..<16 { v[4 * pixels + i] = canary; y[pixels + i] = canary }
        Winograd.transformInput(x.pointer, channels: channels, n: n, h: h, w: w, into: v.pointer, rows: rows.pointer, vectorised: false)
        Winograd.transformOutputGradient(x.pointer, channels: channels, n: n, h: h, w: w, into: v.pointer, vectorised: false)
        Winograd.transformOutput(m.pointer, channels: channels, n: n, h: h, w: w, bias: nil, into: y.pointer, vectorised: false)
        for i in 0..<16 {
            XCTAssertEqual(v[4 * pixels + i], canary, "tile values' canary \(i)")
            XCTAssertEqual(y[pixels + i], canary, "image's canary \(i)")
        }
    }

    /// The reference model's conv2 takes the Winograd path, conv1 the direct one (by measurement).
    func testConvDenoiserPaths() {
        let model = ConvDenoiser(capacity: 2)
        XCTAssertTrue(model.conv2.winograd)
        XCTAssertFalse(model.conv1.winograd)
    }
}
