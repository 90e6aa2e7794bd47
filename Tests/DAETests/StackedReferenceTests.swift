// The stacked model against PyTorch: the fixture Tests/DAETests/Fixtures/stacked.safetensors was
// computed by Tests/reference/make_stacked_fixtures.py with the StackedDenoiser class of
// docs/reference_model.py (untied sigmoid with MSE, tied ReLU with BCE; 16 -> 10 -> 6, batch 3):
// outputs, codes, losses and every gradient, in the deep (fine-tuning) mode and in layer 2's
// pre-training mode.

@testable import DAE
import XCTest

final class StackedReferenceTests: XCTestCase {
    static let fixture: [String: SafeTensor] = {
        let url = Bundle.module.url(forResource: "Fixtures/stacked", withExtension: "safetensors")!
        let (list, _) = try! SafeTensors.read(path: url.path)
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
    }()

    func values(_ name: String) -> [Float] {
        guard let t = Self.fixture[name] else { fatalError("stacked fixture has no tensor \(name)") }
        return t.values
    }

    func model(_ name: String, activation: StackedSpec.Activation, tied: Bool) throws -> StackedDenoiser {
        let model = StackedDenoiser(StackedSpec(inputSize: 16, hidden: [10, 6], activation: activation, tied: tied), capacity: 3)
        try Weights.load(Array(Self.fixture.values), into: model.params, layout: model.layout, prefix: name + ".param.", path: "stacked fixture")
        return model
    }

    func check(_ name: String, activation: StackedSpec.Activation, tied: Bool, loss: LossKind) throws {
        let m = try model(name, activation: activation, tied: tied)
        let n = 3
        // deep mode: pixels in, pixels out, every parameter trained
        m.setPhase(2)
        let x = values(name + ".x"), target = values(name + ".target")
        for i in 0..<x.count { m.input[i] = x[i] }
        m.forward(n: n)
        let output = Array(UnsafeBufferPointer(start: m.output, count: n * 16))
        XCTAssertLessThan(relativeError(output, values(name + ".deep.output")), 1e-5, "\(name) deep output")
        let sum = target.withUnsafeBufferPointer { loss.sum(output: m.output, target: $0.baseAddress!, count: n * 16) }
        XCTAssertEqual(sum, Double(values(name + ".deep.loss")[0]), accuracy: 1e-4 * abs(sum), "\(name) deep loss")
        target.withUnsafeBufferPointer {
            loss.backward(output: m.output, target: $0.baseAddress!, gradient: m.gradOutput, count: n * 16, meanOver: 1, activation: m.outputActivation)
        }
        m.backward(n: n)
        for slot in m.layout.slots {
            let grad = Array(UnsafeBufferPointer(start: m.grads.pointer + slot.offset, count: slot.count))
            XCTAssertLessThan(relativeError(grad, values("\(name).deep.grad.\(slot.name)")), 1e-4, "\(name) deep grad \(slot.name)")
        }
        m.setImageAutoencoder(afterPhase: Int.max)
        m.encode(n: n)
        var code = [Float](repeating: 0, count: n * 6)
        for i in 0..<n { code.withUnsafeMutableBufferPointer { m.copyCode(sample: i, n: n, into: $0.baseAddress! + i * 6) } }
        XCTAssertLessThan(relativeError(code, values(name + ".deep.code")), 1e-5, "\(name) code")

        // layer 2's pre-training: the clean codes of layer 1 as the target, a masked copy as input
        m.setPhase(1)
        let layerTarget = x.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: m.target(images: $0.baseAddress!, n: n), count: n * 10)) }
        XCTAssertLessThan(relativeError(layerTarget, values(name + ".layer2.target")), 1e-5, "\(name) layer-2 target")
        let noisy = values(name + ".layer2.input")
        for i in 0..<noisy.count { m.input[i] = noisy[i] }
        m.forward(n: n)
        XCTAssertLessThan(relativeError(Array(UnsafeBufferPointer(start: m.output, count: n * 10)), values(name + ".layer2.output")), 1e-5, "\(name) layer-2 output")
        let layerLoss = Trainer.loss(.mse, for: m)
        let layerSum = layerTarget.withUnsafeBufferPointer { layerLoss.sum(output: m.output, target: $0.baseAddress!, count: n * 10) }
        XCTAssertEqual(layerSum, Double(values(name + ".layer2.loss")[0]), accuracy: 1e-4 * abs(layerSum))
        layerTarget.withUnsafeBufferPointer {
            layerLoss.backward(output: m.output, target: $0.baseAddress!, gradient: m.gradOutput, count: n * 10, meanOver: 1, activation: m.outputActivation)
        }
        m.backward(n: n)
        let trained = m.layout.slots.filter { m.trainable.contains($0.offset) }
        XCTAssertEqual(trained.map(\.name).sorted(), Self.fixture.keys.filter { $0.hasPrefix(name + ".layer2.grad.") }.map { String($0.dropFirst((name + ".layer2.grad.").count)) }.sorted())
        for slot in trained {
            let grad = Array(UnsafeBufferPointer(start: m.grads.pointer + slot.offset, count: slot.count))
            XCTAssertLessThan(relativeError(grad, values("\(name).layer2.grad.\(slot.name)")), 1e-4, "\(name) layer-2 grad \(slot.name)")
        }
    }

    func testUntiedSigmoidMatchesPyTorch() throws { try check("untied", activation: .sigmoid, tied: false, loss: .mse) }
    func testTiedReLUMatchesPyTorch() throws { try check("tied", activation: .relu, tied: true, loss: .bce) }
}
