// The training loop. Follow one batch from top to bottom of `trainEpoch`:
//   1. its sample indices: a slice of the epoch's permutation keyed by (seed, epoch)
//   2. assembly: clean images (x/255) into `clean`, corrupted copies into the model's input,
//      the noise keyed by (seed, epoch, sample index)
//   3. forward: model.output = sigmoid(decoder(encoder(noisy)))
//   4. loss against the clean images, and dL/dz into model.gradOutput
//   5. backward: every parameter's gradient into the flat gradient buffer
//   6. Adam: one pass over the flat parameter buffer
// Nothing in the loop allocates: the model, the optimizer and the batch buffers are built once.

import Foundation

public struct TrainConfig: Sendable, Equatable {
    public var epochs = 20
    public var batchSize = 20
    public var adam = AdamConfig()
    public var noise = NoiseKind.gaussian(factor: 0.5)
    public var loss = LossKind.mse
    public var seed: UInt64 = 0
    public var limit: Int? = nil
    public init() {}

    /// Rejects values no run could use; each error names its flag.
    public func validate() throws(DAEError) {
        guard epochs >= 1 else { throw .badFlag("--epochs", "must be at least 1, got \(epochs)") }
        guard batchSize >= 1 else { throw .badFlag("--batch-size", "must be at least 1, got \(batchSize)") }
        guard batchSize <= 65_536 else { throw .badFlag("--batch-size", "\(batchSize) is larger than the 65536 supported") }
        guard adam.lr.isFinite, adam.lr > 0 else { throw .badFlag("--lr", "must be a positive number, got \(adam.lr)") }
        if let limit { guard limit >= 1 else { throw .badFlag("--limit", "must be at least 1, got \(limit)") } }
    }
}

/// What one epoch did, for the progress line and the metrics.
public struct EpochResult: Sendable {
    public var epoch: Int           // 1-based
    public var meanLoss: Double     // mean of the batch losses (each a per-pixel mean)
    public var samples: Int
    public var seconds: Double
    public var samplesPerSecond: Double { Double(samples) / max(seconds, 1e-9) }
}

public final class Trainer {
    public let config: TrainConfig
    public let data: Dataset
    public let model: ConvDenoiser
    public let optimizer: Adam
    let clean: FloatBuffer          // [batch, H, W] the clean images: the loss target
    var order: [Int32] = []         // the epoch's permutation of sample indices

    public init(config: TrainConfig, data: Dataset) throws(DAEError) {
        try config.validate()
        self.config = config
        self.data = data
        model = ConvDenoiser(height: data.height, width: data.width, capacity: min(config.batchSize, data.count))
        model.initialize(seed: config.seed)
        optimizer = Adam(parameterCount: model.parameterCount, config: config.adam)
        clean = FloatBuffer(count: model.capacity * data.imageSize)
        order.reserveCapacity(data.count)
    }

    public var stepsPerEpoch: Int { (data.count + config.batchSize - 1) / config.batchSize }

    /// Trains one epoch (1-based), returning its mean loss. Throws if the loss stops being finite.
    public func trainEpoch(_ epoch: Int) throws(DAEError) -> EpochResult {
        let start = Date()
        epochPermutation(count: data.count, seed: config.seed, epoch: epoch, into: &order)
        let pixels = data.imageSize
        var lossSum = 0.0
        for step in 0..<stepsPerEpoch {
            // 1. this step's samples
            let first = step * config.batchSize
            let n = min(config.batchSize, data.count - first)
            // 2. assemble clean targets and noisy inputs
            for i in 0..<n {
                let index = Int(order[first + i])
                let target = clean.pointer + i * pixels
                data.image(index, into: target)
                config.noise.corrupt(target, into: model.input + i * pixels, count: pixels,
                                     seed: config.seed, epoch: epoch, sampleIndex: index)
            }
            // 3. forward
            model.forward(n: n)
            // 4. loss (a per-pixel mean over the batch) and its gradient
            let batchLoss = config.loss.sum(output: model.output, target: clean.pointer, count: n * pixels) / Double(n * pixels)
            guard batchLoss.isFinite else {
                throw .numeric("training diverged at epoch \(epoch), step \(step + 1): loss is \(batchLoss); try a smaller --lr")
            }
            lossSum += batchLoss
            config.loss.backward(output: model.output, target: clean.pointer, gradient: model.gradOutput,
                                 count: n * pixels, meanOver: n * pixels)
            // 5. backward
            model.backward(n: n)
            // 6. optimizer step
            optimizer.update(params: model.params, grads: model.grads)
        }
        return EpochResult(epoch: epoch, meanLoss: lossSum / Double(stepsPerEpoch), samples: data.count,
                           seconds: Date().timeIntervalSince(start))
    }

    /// The final weights, named as the reference PyTorch model's state_dict.
    public func saveWeights(to path: String) throws(DAEError) {
        try Weights.save(model.params, layout: model.layout, to: path, metadata: [
            "format": "dae-dist weights",
            "model": "ConvDenoiser",
            "epochs": String(config.epochs),
            "seed": String(config.seed),
            "noise": config.noise.description,
            "loss": config.loss.rawValue,
        ])
    }
}
