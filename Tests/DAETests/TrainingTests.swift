// Short real training runs: the loss must fall, and a run must be reproducible bit for bit.

import DAE
import Foundation
import XCTest

final class TrainingTests: XCTestCase {
    static let data: Dataset = try! Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(400)

    func testLossFallsOnAShortRun() throws {
        var config = TrainConfig()
        config.epochs = 5
        let trainer = try Trainer(config: config, data: Self.data)
        var losses: [Double] = []
        for _ in 1...5 { losses.append(try trainer.trainEpoch().meanLoss) }
        // Measured: 0.146 -> 0.064 (factor 2.3) with the reference recipe on these 400 samples.
        XCTAssertLessThan(losses[4], losses[0] / 1.8, "losses \(losses)")
        XCTAssertLessThan(losses[4], 0.08, "losses \(losses)")
    }

    func testBinaryCrossEntropyTrainingFalls() throws {
        var config = TrainConfig()
        config.loss = .bce
        config.noise = .mask(p: 0.25)
        let trainer = try Trainer(config: config, data: Self.data)
        let first = try trainer.trainEpoch().meanLoss, second = try trainer.trainEpoch().meanLoss
        XCTAssertLessThan(second, first, "bce losses \(first) then \(second)")
    }

    func testSameSeedGivesBitwiseIdenticalWeights() throws {
        var config = TrainConfig()
        config.batchSize = 32                      // 200 = 6 full batches + one of 8: a partial batch
        let data = Self.data.prefix(200)
        let a = try Trainer(config: config, data: data), b = try Trainer(config: config, data: data)
        _ = try a.trainEpoch(); _ = try b.trainEpoch()
        XCTAssertEqual(a.params.array, b.params.array)
        config.seed = 1
        let c = try Trainer(config: config, data: data)
        _ = try c.trainEpoch()
        XCTAssertNotEqual(a.params.array, c.params.array)
    }

    func testInvalidConfigurationsAreRejected() {
        var config = TrainConfig()
        config.batchSize = 0
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".hasPrefix("--batch-size:")) }
        config = TrainConfig(); config.adam.lr = -1
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".hasPrefix("--lr:")) }
        config = TrainConfig(); config.adam.lr = .nan
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".hasPrefix("--lr:")) }
        config = TrainConfig(); config.epochs = 0
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".hasPrefix("--epochs:")) }
        config = TrainConfig(); config.limit = 0
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".hasPrefix("--limit:")) }
    }

    func testAdamHandComputedFirstSteps() {
        // Step 1: m = 0.1 g, v = 0.001 g^2; bias-corrected m^ = g, v^ = g^2, so the update is
        // lr * g / (|g| + eps): lr times the sign of g for |g| >> eps.
        let params = FloatBuffer([1, 1, 1]), grads = FloatBuffer([0.5, -2, 0])
        let adam = Adam(parameterCount: 3, config: AdamConfig(lr: 0.1))
        adam.update(params: params, grads: grads)
        XCTAssertEqual(params[0], 0.9, accuracy: 1e-6)
        XCTAssertEqual(params[1], 1.1, accuracy: 1e-6)
        XCTAssertEqual(params[2], 1)
        XCTAssertEqual(adam.m[0], 0.05, accuracy: 1e-7)
        XCTAssertEqual(adam.m[1], -0.2, accuracy: 1e-7)
        XCTAssertEqual(adam.v[1], 0.004, accuracy: 1e-7)
        // Step 2 with g = 0 for the first element: m = 0.045, v = 0.999*0.00025;
        // m^ = 0.045/0.19, v^ = 0.00024975/0.001999 -> update = 0.1 * 0.236842 / (0.353466 + 1e-8)
        grads[0] = 0
        adam.update(params: params, grads: grads)
        let mHat = 0.045 / 0.19, vHat = 0.999 * 0.00025 / (1 - 0.999 * 0.999)
        XCTAssertEqual(Double(params[0]), 0.9 - 0.1 * mHat / (vHat.squareRoot() + 1e-8), accuracy: 1e-6)
    }

    func testCosineScheduleFactors() {
        // lr * (1 + cos(pi * (s - 1) / T)) / 2 for step s of T: full lr first, half at the middle
        let cosine = LRSchedule.cosine
        XCTAssertEqual(cosine.factor(step: 1, of: 10), 1)
        XCTAssertEqual(cosine.factor(step: 6, of: 10), 0.5, accuracy: 1e-15)
        XCTAssertEqual(cosine.factor(step: 3, of: 10), (1 + cos(Double.pi / 5)) / 2, accuracy: 1e-15)
        XCTAssertEqual(cosine.factor(step: 10, of: 10), (1 + cos(0.9 * Double.pi)) / 2, accuracy: 1e-15)
        // past the end (a run never gets there: a cosine run's epochs are fixed on resume): 0, not rising again
        XCTAssertEqual(cosine.factor(step: 11, of: 10), 0, accuracy: 1e-15)
        XCTAssertEqual(cosine.factor(step: 50, of: 10), 0, accuracy: 1e-15)
        XCTAssertEqual(LRSchedule.constant.factor(step: 7, of: 10), 1)
    }

    func testAdamStepTakesTheScheduledRate() {
        // step 1 moves each parameter by lr * factor * sign(g) (see the hand-computed test above)
        let params = FloatBuffer([1, 1]), grads = FloatBuffer([0.5, -2])
        let adam = Adam(parameterCount: 2, config: AdamConfig(lr: 0.1))
        adam.update(params: params, grads: grads, range: 0..<2, lrFactor: 0.25)
        XCTAssertEqual(params[0], 0.975, accuracy: 1e-6)
        XCTAssertEqual(params[1], 1.025, accuracy: 1e-6)
    }

    func testSafeTensorsRoundTripAndCorruption() throws {
        let tensors = [SafeTensor(name: "a.weight", shape: [2, 3], values: [1, 2, 3, 4, 5, -6.5]),
                       SafeTensor(name: "b", shape: [1], values: [.pi])]
        let bytes = SafeTensors.encode(tensors, metadata: ["epoch": "3", "quote\"d": "x\ny"])
        let headerLength = Int(bytes[0]) | Int(bytes[1]) << 8
        XCTAssertEqual(headerLength % 8, 0)
        let (back, metadata) = try SafeTensors.decode(bytes, path: "t")
        XCTAssertEqual(back, tensors)
        XCTAssertEqual(metadata, ["epoch": "3", "quote\"d": "x\ny"])
        XCTAssertThrowsError(try SafeTensors.decode(Array(bytes.prefix(bytes.count - 4)), path: "cut.safetensors")) {
            XCTAssertTrue("\($0)".hasPrefix("cut.safetensors:"), "\($0)")
        }
        XCTAssertThrowsError(try SafeTensors.decode([1, 2, 3], path: "tiny"))
        var garbage = bytes
        garbage[10] = 0x7B
        XCTAssertThrowsError(try SafeTensors.decode(garbage, path: "garbage"))
    }

    func testWeightsFileLoadsBackAndRejectsWrongShapes() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = ConvDenoiser(capacity: 1)
        model.initialize(seed: 5)
        let path = dir + "/model.safetensors"
        try Weights.save(model.params, layout: model.layout, to: path)
        let other = ConvDenoiser(capacity: 1)
        try Weights.load(try SafeTensors.read(path: path).tensors, into: other.params, layout: other.layout, path: path)
        XCTAssertEqual(model.params.array, other.params.array)
        let original = try SafeTensors.read(path: path).tensors
        var tensors = original
        tensors[0] = SafeTensor(name: tensors[0].name, shape: [32, 9], values: tensors[0].values)
        XCTAssertThrowsError(try Weights.load(tensors, into: other.params, layout: other.layout, path: path)) {
            XCTAssertTrue("\($0)".contains("has shape [32, 9], expected [32, 1, 3, 3]"), "\($0)")
        }
        XCTAssertThrowsError(try Weights.load(Array(original.dropLast()), into: other.params, layout: other.layout, path: path)) {
            XCTAssertTrue("\($0)".contains("missing tensor 'decoder.2.bias'"), "\($0)")
        }
    }
}
