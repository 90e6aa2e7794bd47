// The same weights and inputs must give PyTorch's outputs, losses and gradients (to float
// rounding): the fixture comes from the reference model in Tests/reference/make_fixtures.py.

import DAE
import XCTest

final class ReferenceTests: XCTestCase {
    /// The fixture's 12x8 model with its weights and its noisy input loaded.
    func makeModel() throws -> ConvDenoiser {
        let model = ConvDenoiser(height: 12, width: 8, capacity: 2)
        let weights = Reference.tensors.values.filter { $0.name.hasPrefix("weights.") }
        try Weights.load(weights, into: model.params, layout: model.layout, prefix: "weights.", path: "fixture")
        let input = Reference.values("input")
        for i in 0..<input.count { model.input[i] = input[i] }
        return model
    }

    func testStateDictNamesAndShapesMatchPyTorch() {
        let layout = ConvDenoiser.makeLayout()
        for slot in layout.slots {
            XCTAssertEqual(Reference.tensors["weights." + slot.name]?.shape, slot.shape, slot.name)
        }
        XCTAssertEqual(layout.slots.count, Reference.tensors.keys.filter { $0.hasPrefix("weights.") }.count)
        XCTAssertEqual(layout.count, 27_169)
    }

    func testForwardMatchesPyTorch() throws {
        let model = try makeModel()
        model.forward(n: 2)
        let output = Array(UnsafeBufferPointer(start: model.output, count: 2 * 96))
        XCTAssertLessThan(relativeError(output, Reference.values("output")), 1e-5)
    }

    func testEncoderCodeMatchesPyTorch() throws {
        let model = try makeModel()
        model.encode(n: 2)
        // Ours is [64, n, 3, 2]; PyTorch's [n, 64, 3, 2].
        let ours = Array(UnsafeBufferPointer(start: model.code, count: 64 * 2 * 6))
        var theirs = [Float](repeating: 0, count: ours.count)
        let reference = Reference.values("code")
        for n in 0..<2 { for c in 0..<64 { for p in 0..<6 { theirs[(c * 2 + n) * 6 + p] = reference[(n * 64 + c) * 6 + p] } } }
        XCTAssertLessThan(relativeError(ours, theirs), 1e-5)
    }

    func testLossesAndGradientsMatchPyTorch() throws {
        for loss in LossKind.allCases {
            let model = try makeModel()
            let target = Reference.values("target")
            model.forward(n: 2)
            let value = target.withUnsafeBufferPointer {
                loss.sum(output: model.output, target: $0.baseAddress!, count: 192) / 192
            }
            let expected = Reference.values("loss.\(loss.rawValue)")[0]
            XCTAssertEqual(Float(value), expected, accuracy: expected * 1e-5, "\(loss) loss")
            target.withUnsafeBufferPointer {
                loss.backward(output: model.output, target: $0.baseAddress!, gradient: model.gradOutput, count: 192, meanOver: 192)
            }
            model.backward(n: 2)
            for slot in model.layout.slots {
                let ours = Array(UnsafeBufferPointer(start: model.grads.pointer + slot.offset, count: slot.count))
                let theirs = Reference.values("grad.\(loss.rawValue).\(slot.name)")
                XCTAssertLessThan(relativeError(ours, theirs), 1e-4, "\(loss) gradient of \(slot.name)")
            }
        }
    }

    func testAdamMatchesPyTorch() {
        let params = FloatBuffer(Reference.values("adam.param0"))
        let adam = Adam(parameterCount: params.count, config: AdamConfig(lr: 1e-3))
        for step in 1...3 {
            adam.update(params: params, grads: FloatBuffer(Reference.values("adam.grad\(step)")))
            let expected = Reference.values("adam.param\(step)")
            for i in 0..<params.count {
                XCTAssertEqual(params[i], expected[i], accuracy: 1e-7, "step \(step), element \(i)")
            }
        }
    }
}
