// The typed records of a run directory, written with JSONEncoder (numbers as JSON numbers):
//   config.json     RunConfiguration: what was run, on what, how
//   metrics.jsonl   MetricsRecord per line: one per epoch, and one per --log-every steps

import Foundation

public struct RunConfiguration: Codable, Sendable, Equatable {
    public var command: String
    public var model: String
    public var pretrainEpochs: Int?          // stacked model only
    public var epochs: Int
    public var batchSize: Int
    public var lr: Float
    public var noise: String
    public var loss: String
    public var seed: UInt64
    public var data: String
    public var trainSamples: Int
    public var height: Int
    public var width: Int
    public var worldSize: Int
    public var threadsPerRank: Int
    public var reduce: String
    public var microBatch: Int
    public var evalEvery: Int
    public var checkpointEvery: Int
    public var keep: Int
    public var parameters: Int

    enum CodingKeys: String, CodingKey {
        case command, model, pretrainEpochs = "pretrain_epochs", epochs, batchSize = "batch_size", lr, noise, loss, seed, data
        case trainSamples = "train_samples", height, width, worldSize = "world_size", threadsPerRank = "threads_per_rank"
        case reduce, microBatch = "micro_batch", evalEvery = "eval_every", checkpointEvery = "checkpoint_every", keep, parameters
    }

    /// The configuration of `run`, started by `command` on the data at `dataPath`.
    public init(run: TrainingRun, command: String, dataPath: String) {
        let config = run.config, trainer = run.trainer
        if case .stacked = config.model { pretrainEpochs = config.pretrainEpochs }
        self.command = command
        model = config.model.description
        epochs = config.epochs; batchSize = config.batchSize; lr = config.adam.lr
        noise = config.noise.description; loss = config.loss.rawValue; seed = config.seed
        data = dataPath; trainSamples = run.data.count; height = run.data.height; width = run.data.width
        worldSize = run.communicator.size; threadsPerRank = run.threads
        reduce = config.reduce.rawValue; microBatch = trainer.effectiveMicroBatch
        evalEvery = run.settings.evalEvery; checkpointEvery = run.settings.checkpointEvery; keep = run.settings.keep
        parameters = trainer.layout.count
    }

    /// key/value rows in key order, for the report's table.
    public var rows: [(String, String)] {
        guard let data = try? JSONEncoder().encode(self),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [] }
        return object.keys.sorted().map { ($0, "\(object[$0]!)") }
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
