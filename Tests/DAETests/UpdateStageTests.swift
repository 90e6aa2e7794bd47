// The update stage against PyTorch (Tests/reference/make_update_fixtures.py): gradient clipping
// as torch.nn.utils.clip_grad_norm_ and decoupled weight decay as torch.optim.AdamW, and their
// place in training: recorded in checkpoints, refused on resume when they differ, and in exact
// mode the same bits on any thread count.

@testable import DAE
import Foundation
import XCTest

final class UpdateStageTests: XCTestCase {
    static let fixture: [String: [Float]] = {
        let url = Bundle.module.url(forResource: "Fixtures/update", withExtension: "safetensors")!
        let (list, _) = try! SafeTensors.read(path: url.path)
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0.values) })
    }()

    /// Three steps of clipping (to maxNorm) and AdamW(lr 1e-2, weight decay 0.1), as the fixture's.
    func steps(maxNorm: Float) -> (params: FloatBuffer, adam: Adam, coefficients: [Float]) {
        let params = FloatBuffer(Self.fixture["param0"]!)
        let adam = Adam(parameterCount: params.count, config: AdamConfig(lr: 1e-2, weightDecay: 0.1))
        var coefficients: [Float] = []
        for step in 1...3 {
            let grads = FloatBuffer(Self.fixture["grad\(step)"]!)
            var constants = adam.beginStep()
            constants.gradScale = GradientClipping.coefficient(UnsafePointer(grads.pointer), count: grads.count, maxNorm: maxNorm)
            coefficients.append(constants.gradScale)
            adam.apply(constants, params: params, grads: grads, range: 0 ..< params.count)
        }
        return (params, adam, coefficients)
    }

    func testClippingAndAdamWMatchPyTorch() {
        let (params, adam, coefficients) = steps(maxNorm: 0.5)
        XCTAssertLessThan(relativeError(coefficients, Self.fixture["clip.coefficient"]!), 1e-6)
        XCTAssertLessThan(relativeError(params.array, Self.fixture["clip.param3"]!), 1e-5)
        XCTAssertLessThan(relativeError(adam.m.array, Self.fixture["clip.exp_avg"]!), 1e-5)
        // 1 - beta2 is taken in Float from beta2 = Float(0.999), as Adam.swift always has (PyTorch
        // takes it from the double 0.999): the second moment differs by that rounding, 1.3e-5
        // relative, which the parameters (through sqrt(v)) feel far less
        XCTAssertLessThan(relativeError(adam.v.array, Self.fixture["clip.exp_avg_sq"]!), 2e-5)
        // a norm below max_norm is left alone (the coefficient clamps to 1)
        let (unclipped, _, ones) = steps(maxNorm: 100)
        XCTAssertEqual(ones, [1, 1, 1])
        XCTAssertLessThan(relativeError(unclipped.array, Self.fixture["noclip.param3"]!), 1e-5)
    }

    func testTheScaleActsOnTheGradientBeforeTheMoments() {
        // half of twice the gradient is the gradient exactly (powers of 2): the same bits, moments
        // included, only if the scale is applied to g before m and v see it
        func run(scale: Float, gradientFactor: Float) -> [Float] {
            let params = FloatBuffer(Reference.values("adam.param0"))
            let adam = Adam(parameterCount: params.count, config: AdamConfig(lr: 1e-3, weightDecay: 0.1))
            for step in 1...3 {
                var constants = adam.beginStep()
                constants.gradScale = scale
                adam.apply(constants, params: params, grads: FloatBuffer(Reference.values("adam.grad\(step)").map { $0 * gradientFactor }),
                           range: 0 ..< params.count)
            }
            return params.array + adam.m.array + adam.v.array
        }
        XCTAssertEqual(run(scale: 0.5, gradientFactor: 2), run(scale: 1, gradientFactor: 1))
        XCTAssertNotEqual(run(scale: 0.5, gradientFactor: 1), run(scale: 1, gradientFactor: 1))
    }

    func testClippedTrainingIsTheSameOnAnyThreadCountAndRecorded() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(60)
        var config = TrainConfig()
        config.epochs = 1
        config.clipGradNorm = 0.05
        config.adam.weightDecay = 0.01
        let weights = try [1, 2].map { threads in try weightsAfterOneEpoch(config, data: data, threads: threads) }
        XCTAssertEqual(weights[0], weights[1])
        // and it changed something: not the unclipped run's weights
        var plain = config
        plain.clipGradNorm = nil
        plain.adam.weightDecay = 0
        let trainer = try Trainer(config: plain, data: data, threads: 1)
        _ = try trainer.trainEpoch()
        XCTAssertNotEqual(trainer.params.array, weights[0])
        // a resume with other settings is refused, naming the flag
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Checkpoint.save(trainer, dataFingerprint: 1, to: dir + "/c.safetensors")
        let state = try Checkpoint.load(path: dir + "/c.safetensors", layout: trainer.layout)
        XCTAssertEqual(state.metadata["clip_grad_norm"], "none")
        XCTAssertThrowsError(try Checkpoint.checkSettings(state.metadata, path: "c", config: config, data: data, dataFingerprint: 1)) {
            XCTAssertTrue("\($0)".hasPrefix("--weight-decay: the checkpoint c was trained with weight decay 0.0, this run has 0.01"), "\($0)")
        }
        XCTAssertThrowsError(try Checkpoint.checkSettings(state.metadata, path: "c", config: { var c = plain; c.clipGradNorm = 0.05; return c }(), data: data, dataFingerprint: 1)) {
            XCTAssertTrue("\($0)".hasPrefix("--clip-grad-norm: the checkpoint c was trained with clip grad norm none, this run has 0.05"), "\($0)")
        }
        XCTAssertNoThrow(try Checkpoint.checkSettings(state.metadata, path: "c", config: plain, data: data, dataFingerprint: 1))
    }
}
