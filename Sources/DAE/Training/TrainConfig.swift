// What a training run is asked to do (TrainConfig), where it stands (TrainingPosition) and what
// one epoch did (EpochResult): plain values shared by the Trainer, the TrainingRun around it,
// checkpoints and the observers.

import Foundation

public enum ReduceMode: String, Sendable, CaseIterable {
    /// Fixed-point sums over fixed micro-batches: bitwise the same on any number of ranks/threads.
    case exact
    /// One forward/backward per rank and a float allreduce: results vary with the world size.
    case fast
}

public struct TrainConfig: Sendable, Equatable {
    public var model = ModelSpec.reference
    /// The convolutional model's epochs; a stacked model's epochs of end-to-end fine-tuning (0: none).
    public var epochs = 20
    /// A stacked model's pre-training epochs per layer.
    public var pretrainEpochs = 10
    public var batchSize = 20
    public var adam = AdamConfig()
    /// Clip the reduced gradient to this global L2 norm before the update, as
    /// torch.nn.utils.clip_grad_norm_ (nil: no clipping).
    public var clipGradNorm: Float? = nil
    /// The learning rate over each phase's steps (constant, or cosine down to 0).
    public var lrSchedule = LRSchedule.constant
    public var noise = NoiseKind.gaussian(factor: 0.5)
    public var loss = LossKind.mse
    public var seed: UInt64 = 0
    public var limit: Int? = nil
    public var microBatch = 5
    public var reduce = ReduceMode.exact
    /// Train on random crops of the images (nil: on whole images, which must share one size).
    public var patches: PatchSampling? = nil
    public init() {}

    /// The defaults for `model`: the reference recipe for the convolutional model; for the stacked
    /// one, masking noise, no fine-tuning and larger steps. Its layers have far more parameters per
    /// sample of compute than the convolutional model, so larger steps amortise the per-micro-batch
    /// reduction work (784-1000-1000: about 700 samples/s at batch 20 / micro-batch 5, about 2,600
    /// at 100 / 25; docs/features.md).
    public init(model: ModelSpec) {
        self.model = model
        if model.stackedSpec != nil {
            epochs = 0
            batchSize = 100
            noise = .mask(p: 0.25)
            microBatch = 25
        }
    }

    /// Rejects values no run could use; each error names its flag.
    public func validate() throws(DAEError) {
        if let spec = model.stackedSpec, spec.activation == .relu, spec.hidden.count > 1 {
            switch noise {
            case .gaussian, .gaussianRange, .saltPepper:
                throw .badFlag("--noise", "\(noise) works in [0,1], which the ReLU codes of layers 2 and up are not; use mask:P with --activation relu")
            default: break
            }
        }
        if model.stackedSpec != nil {
            guard epochs >= 0 else { throw .badFlag("--epochs", "must be 0 or more (fine-tuning epochs), got \(epochs)") }
            guard pretrainEpochs >= 0 else { throw .badFlag("--pretrain-epochs", "must be 0 or more, got \(pretrainEpochs)") }
            guard epochs + pretrainEpochs > 0 else { throw .badFlag("--pretrain-epochs", "the stacked model needs --pretrain-epochs or --epochs (fine-tuning) above 0") }
        } else {
            guard epochs >= 1 else { throw .badFlag("--epochs", "must be at least 1, got \(epochs)") }
        }
        if loss == .bce && !model.outputInUnitRange {
            throw .badFlag("--loss", "bce needs outputs in [0,1], which \(model.name)'s are not (the input minus its predicted noise); use --loss mse")
        }
        guard batchSize >= 1 else { throw .badFlag("--batch-size", "must be at least 1, got \(batchSize)") }
        guard batchSize <= 65_536 else { throw .badFlag("--batch-size", "\(batchSize) is larger than the 65536 supported") }
        guard adam.lr.isFinite, adam.lr > 0 else { throw .badFlag("--lr", "must be a positive number, got \(adam.lr)") }
        guard adam.weightDecay.isFinite, adam.weightDecay >= 0 else { throw .badFlag("--weight-decay", "must be 0 or more, got \(adam.weightDecay)") }
        if let clipGradNorm {
            guard clipGradNorm.isFinite, clipGradNorm > 0 else { throw .badFlag("--clip-grad-norm", "must be a positive number, got \(clipGradNorm)") }
        }
        guard microBatch >= 1 else { throw .badFlag("--micro-batch", "must be at least 1, got \(microBatch)") }
        if let limit { guard limit >= 1 else { throw .badFlag("--limit", "must be at least 1, got \(limit)") } }
        if let patches {
            if model.stackedSpec != nil { throw .badFlag("--patch", "the stacked model takes whole images of its input size; use --model conv or unet with --patch") }
            try patches.validate(sideMultiple: model.sideMultiple)
        }
        // random streams are keyed by phase << 20 + epoch (see randomEpoch)
        guard epochs < 1 << 20 else { throw .badFlag("--epochs", "must be below \(1 << 20), got \(epochs)") }
        guard pretrainEpochs < 1 << 20 else { throw .badFlag("--pretrain-epochs", "must be below \(1 << 20), got \(pretrainEpochs)") }
    }

    /// Epochs of each phase: [epochs] for the convolutional model; for a stacked model with L
    /// layers, pretrainEpochs for each of phases 0..<L, then `epochs` of fine-tuning (phase L).
    public var phaseEpochs: [Int] {
        guard let s = model.stackedSpec else { return [epochs] }
        return Array(repeating: pretrainEpochs, count: s.hidden.count) + [epochs]
    }

    /// How logs name a phase: "" for the one phase of the convolutional model, else "layer k " or "fine-tune ".
    public func phaseName(_ phase: Int) -> String {
        guard let s = model.stackedSpec else { return "" }
        return phase < s.hidden.count ? "layer \(phase + 1) " : "fine-tune "
    }
}

/// Where training stands. With randomness keyed by (seed, epoch, sample index), this and the seed
/// are all the random state there is: a checkpoint stores it and a resumed run continues exactly.
public struct TrainingPosition: Sendable, Equatable {
    public var phase = 0             // the phase in progress (a stacked model's layer, or fine-tuning)
    public var epoch = 1             // the epoch in progress within the phase, 1-based
    public var stepInEpoch = 0       // steps of that epoch already taken
    public var globalStep = 0        // optimizer steps since the start of training
    public var samplesSeen = 0       // training samples processed since the start
    public var epochLossSum = 0.0    // sum of this epoch's batch losses so far (for its mean)
    public init() {}
}

/// What one epoch did (or, if training was stopped, the part of it done in this process).
public struct EpochResult: Sendable {
    public var phase = 0
    public var phaseName = ""          // "" (convolutional model), "layer k " or "fine-tune "
    public var epoch: Int              // 1-based, within the phase
    public var meanLoss: Double        // mean of the batch losses (each a per-pixel mean), whole epoch
    public var samples: Int            // samples processed by this process's run of the epoch
    public var seconds: Double
    public var reduceSeconds: Double   // time in the gradient allreduce (waiting for peers included)
    public var stopped = false         // a stop was requested (signal): the epoch is not complete
    public var samplesPerSecond: Double { Double(samples) / max(seconds, 1e-9) }
}
