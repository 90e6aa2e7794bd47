// The typed records of a run directory, written with JSONEncoder (numbers as JSON numbers):
//   config.json     RunConfiguration: what was run, on what, how
//   metrics.jsonl   MetricsRecord per line: one per epoch, and one per --log-every steps

import Foundation

public struct RunConfiguration: Codable, Sendable, Equatable {
    public var command: String
    public var model: String                 // its description, e.g. "StackedDenoiser 784-1000-1000 sigmoid"
    public var modelKind: String             // the --model value: "conv", "unet", "stacked" (ModelSpec.registry)
    /// The model's whole shape, as the registry encodes it ({"kind": "unet", "channels": 1, ...});
    /// absent in config.json files of older dae-dist versions, which recorded the fields below.
    public var modelSpec: ModelSpec?
    public var channels: Int?                // an image model's channels: 1 (gray) or 3 (RGB)
    public var widths: [Int]?                // older files: conv and unet layer widths
    public var hidden: [Int]?                // older files: the stacked model's layers
    public var activation: String?           // older files
    public var tiedWeights: Bool?            // older files
    public var pretrainEpochs: Int?
    public var epochs: Int
    public var batchSize: Int
    public var lr: Float
    public var lrSchedule: String?           // "constant" or "cosine" (absent in older files: constant)
    public var weightDecay: Float?           // AdamW's weight decay (absent in older files: 0)
    public var clipGradNorm: Float?          // the gradient clipping's norm (absent: none)
    public var noise: String
    public var loss: String
    public var seed: UInt64
    public var data: String
    public var limit: Int?
    public var patch: Int?                   // the side of the training crops (absent: whole images)
    public var patchesPerEpoch: Int?         // crops per epoch as asked (absent: the default)
    public var augment: String?              // "flips" or "none", with patches
    public var valFraction: Double?          // the test split's share of a folder without splits
    public var trainSamples: Int
    public var height: Int
    public var width: Int
    public var worldSize: Int
    public var threadsPerRank: Int
    public var reduce: String
    public var microBatch: Int
    public var evalEvery: Int
    public var evalLimit: Int?
    public var gridColumns: Int
    public var checkpointEvery: Int
    public var epochCheckpoints: Bool
    public var keep: Int
    public var logEvery: Int
    public var parameters: Int
    /// The software and machine that ran it; absent in config.json files of older dae-dist versions.
    public var build: BuildInfo?

    enum CodingKeys: String, CodingKey {
        case command, model, modelKind = "model_kind", modelSpec = "model_spec", channels, widths, hidden, activation, tiedWeights = "tied_weights"
        case pretrainEpochs = "pretrain_epochs", epochs, batchSize = "batch_size", lr, lrSchedule = "lr_schedule", weightDecay = "weight_decay", clipGradNorm = "clip_grad_norm", noise, loss, seed, data, limit
        case patch, patchesPerEpoch = "patches_per_epoch", augment
        case valFraction = "val_fraction", trainSamples = "train_samples", height, width, worldSize = "world_size", threadsPerRank = "threads_per_rank"
        case reduce, microBatch = "micro_batch", evalEvery = "eval_every", evalLimit = "eval_limit", gridColumns = "grid_columns"
        case checkpointEvery = "checkpoint_every", epochCheckpoints = "epoch_checkpoints", keep, logEvery = "log_every", parameters
        case build
    }

    /// The configuration of `run`, started by `command` on the data at `dataPath`.
    public init(run: TrainingRun, command: String, dataPath: String, valFraction: Double? = nil, evalLimit: Int? = nil, logEvery: Int = 0) {
        let config = run.config, trainer = run.trainer, settings = run.settings
        self.command = command
        model = config.model.description
        modelKind = config.model.kind
        modelSpec = config.model
        if config.model.stackedSpec == nil { channels = config.model.channels } else { pretrainEpochs = config.pretrainEpochs }
        if let patches = config.patches {
            patch = patches.size; patchesPerEpoch = patches.perEpoch; augment = patches.flips ? "flips" : "none"
        }
        epochs = config.epochs; batchSize = config.batchSize; lr = config.adam.lr; lrSchedule = config.lrSchedule.rawValue
        weightDecay = config.adam.weightDecay; clipGradNorm = config.clipGradNorm
        noise = config.noise.description; loss = config.loss.rawValue; seed = config.seed
        data = dataPath; limit = config.limit; self.valFraction = valFraction
        trainSamples = run.data.count; height = run.data.height; width = run.data.width
        worldSize = run.communicator.size; threadsPerRank = run.threads
        reduce = config.reduce.rawValue; microBatch = trainer.effectiveMicroBatch
        evalEvery = settings.evalEvery; self.evalLimit = evalLimit; gridColumns = settings.gridColumns
        checkpointEvery = settings.checkpointEvery; epochCheckpoints = settings.epochCheckpoints; keep = settings.keep
        self.logEvery = logEvery
        parameters = trainer.layout.count
        build = BuildInfo.current
    }

    /// <directory>/config.json, or nil when there is none or it cannot be read as one.
    public static func read(directory: String) -> RunConfiguration? {
        try? load(directory: directory)
    }

    /// <directory>/config.json, nil when the directory has none; a file that is there but cannot
    /// be read as a run's configuration (truncated, edited, another program's) is an error, not a
    /// run without settings: resuming would otherwise train the defaults on the wrong data.
    public static func load(directory: String) throws(DAEError) -> RunConfiguration? {
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let advice = "fix it, or move it away and give the run's flags again"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .data(path: path, problem: "\(unreadableReason(path)); \(advice)")
        }
        do {
            return try JSONDecoder().decode(RunConfiguration.self, from: data)
        } catch {
            let problem: String
            switch error as? DecodingError {
            case .keyNotFound(let key, _)?: problem = "has no '\(key.stringValue)'"
            case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?:
                problem = "has a value of the wrong type at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
            case .dataCorrupted(let context)? where !context.codingPath.isEmpty:
                problem = "\(context.debugDescription) (at '\(context.codingPath.map(\.stringValue).joined(separator: "."))')"
            default: problem = data.isEmpty ? "is empty" : "is not valid JSON (truncated?)"
            }
            throw .data(path: path, problem: "\(problem): it is not a dae-dist run configuration; \(advice)")
        }
    }

    /// The training settings it records (the model's input size is set when the data is loaded).
    public func trainConfig() throws(DAEError) -> TrainConfig {
        var config = TrainConfig()
        if let modelSpec { config.model = modelSpec } else { config.model = try olderModel() }
        config.pretrainEpochs = pretrainEpochs ?? config.pretrainEpochs
        if let patch { config.patches = PatchSampling(size: patch, perEpoch: patchesPerEpoch, flips: augment == "flips") }
        config.epochs = epochs; config.batchSize = batchSize; config.adam.lr = lr
        config.adam.weightDecay = weightDecay ?? 0; config.clipGradNorm = clipGradNorm
        guard let schedule = LRSchedule(rawValue: lrSchedule ?? "constant") else {
            throw .badFlag("--resume", "config.json of this run names an unknown lr_schedule '\(lrSchedule ?? "")'; set it to constant or cosine there")
        }
        config.lrSchedule = schedule
        config.noise = try NoiseKind(parsing: noise)
        guard let lossKind = LossKind(rawValue: loss), let reduceMode = ReduceMode(rawValue: reduce) else {
            throw .badFlag("--resume", "config.json of this run names an unknown loss '\(loss)' or reduction '\(reduce)'")
        }
        config.loss = lossKind; config.reduce = reduceMode
        config.seed = seed; config.limit = limit; config.microBatch = microBatch
        return config
    }

    /// The model of a config.json written before model_spec, from the fields it had then. A kind
    /// this dae-dist does not know is refused, never taken for another model.
    func olderModel() throws(DAEError) -> ModelSpec {
        switch modelKind {
        case "stacked":
            guard let hidden, let activation = StackedSpec.Activation(rawValue: activation ?? "") else {
                throw .badFlag("--resume", "config.json of this run records a stacked model without its layers; pass --hidden and --activation")
            }
            return .stacked(StackedSpec(inputSize: 0, hidden: hidden, activation: activation, tied: tiedWeights ?? false))
        case "unet":
            return .unet(UNetSpec(channels: channels ?? 1, widths: widths ?? UNetSpec.defaultWidths))
        case "conv":
            return .conv(ConvSpec(channels: channels ?? 1, widths: widths ?? ConvSpec().widths))
        default:
            throw .badFlag("--resume", "config.json of this run names model kind '\(modelKind)', which this dae-dist does not know (\(ModelSpec.kindsText)); resume it with the dae-dist that wrote it")
        }
    }

    /// The run-driving settings it records, for `directory`.
    public func runSettings(directory: String?) -> RunSettings {
        var settings = RunSettings(directory: directory)
        settings.evalEvery = evalEvery; settings.gridColumns = gridColumns
        settings.checkpointEvery = checkpointEvery; settings.epochCheckpoints = epochCheckpoints; settings.keep = keep
        return settings
    }

    /// key/value rows in key order, for the report's table; the build's fields as "build.<key>" rows.
    public var rows: [(String, String)] {
        guard let data = try? JSONEncoder().encode(self),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [] }
        var flat: [String: Any] = [:]
        for (key, value) in object {
            if let nested = value as? [String: Any] {
                for (inner, innerValue) in nested { flat[key + "." + inner] = innerValue }
            } else {
                flat[key] = value
            }
        }
        return flat.keys.sorted().map { ($0, "\(flat[$0]!)") }
    }
}

public struct MetricsRecord: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case epoch, train }
    public var kind: Kind
    public var phase: String?                // a stacked model's phase: "layer 2", "fine-tune"
    public var epoch: Int
    public var step: Int                     // the global step it describes
    public var trainLoss: Double
    public var eval: EvalMetrics?
    public var samplesPerSecond: Double?
    public var seconds: Double?
    public var allreduceSeconds: Double?
    public var worldSize: Int?
    public var time: String?

    enum CodingKeys: String, CodingKey {
        case kind, phase, epoch, step, trainLoss = "train_loss", eval, samplesPerSecond = "samples_per_s", seconds
        case allreduceSeconds = "allreduce_seconds", worldSize = "world_size", time
    }

    public init(kind: Kind, phase: String? = nil, epoch: Int, step: Int, trainLoss: Double, eval: EvalMetrics? = nil,
                samplesPerSecond: Double? = nil, seconds: Double? = nil, allreduceSeconds: Double? = nil,
                worldSize: Int? = nil, time: String? = nil) {
        self.kind = kind; self.phase = phase; self.epoch = epoch; self.step = step; self.trainLoss = trainLoss
        self.eval = eval; self.samplesPerSecond = samplesPerSecond; self.seconds = seconds
        self.allreduceSeconds = allreduceSeconds; self.worldSize = worldSize; self.time = time
    }
}

/// One line of JSON, keys sorted.
public func jsonLine<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(value) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}
