// Training checkpoints: one safetensors file holding everything a run needs to continue exactly.
//
//   tensors   <state_dict key>                   the model weights (reference PyTorch names/shapes)
//             optimizer.exp_avg.<key>            Adam's first moment, same shape
//             optimizer.exp_avg_sq.<key>         Adam's second moment, same shape
//   metadata  format, format_version, model, image size, the training configuration, the
//             position (epoch, step in epoch, global step, samples seen, the epoch's loss sum so
//             far), Adam's step count, the training data's fingerprint and the data section's CRC-32.
//
// Position + seed is all the random state there is: the shuffle is keyed by (seed, epoch) and the
// noise by (seed, epoch, sample index). See docs/checkpoints.md.

import Foundation

public struct CheckpointState: Sendable {
    public var parameters: [Float]
    public var firstMoment: [Float]
    public var secondMoment: [Float]
    public var optimizerStep: Int
    public var position: TrainingPosition
    public var metadata: [String: String]
}

public enum Checkpoint {
    public static let format = "dae-dist checkpoint"
    public static let version = "1"
    public static let optimizerPrefix = "optimizer."

    /// File name of the checkpoint after `globalStep` steps; sorts by step.
    public static func fileName(globalStep: Int) -> String { String(format: "step-%09d.safetensors", globalStep) }

    /// The settings a run must share with the checkpoint it resumes, with the flag that sets each
    /// (or, for those no flag sets, what they are).
    /// Others (epochs, threads, reduce mode, checkpoint cadence) may change on resume.
    static func fixedSettings(_ config: TrainConfig, data: Dataset, dataFingerprint: UInt32) -> [(key: String, flag: String, value: String)] {
        var settings: [(key: String, flag: String, value: String)] = [("model", "--model", config.model.name)]
        if case .stacked = config.model {
            settings += [("model_shape", "--hidden, --activation or --tied-weights", config.model.description),
                         ("pretrain_epochs", "--pretrain-epochs", String(config.pretrainEpochs))]
        }
        return settings + [
         ("image_size", "--data", "\(data.height)x\(data.width)"),
         ("train_samples", "--limit", String(data.count)),
         ("data_fingerprint", "--data", String(format: "%08x", dataFingerprint)),
         ("batch_size", "--batch-size", String(config.batchSize)),
         ("lr", "--lr", String(config.adam.lr)),
         ("beta1", "Adam beta1", String(config.adam.beta1)),
         ("beta2", "Adam beta2", String(config.adam.beta2)),
         ("eps", "Adam eps", String(config.adam.eps)),
         ("noise", "--noise", config.noise.description),
         ("loss", "--loss", config.loss.rawValue),
         ("seed", "--seed", String(config.seed))]
    }

    /// A fingerprint of the training data (CRC-32 of its pixels and labels), so that a checkpoint
    /// is not resumed on other data by mistake.
    public static func fingerprint(_ data: Dataset) -> UInt32 {
        let pixels = data.pixels.withUnsafeBytes { crc32(bytes: $0[...]) }
        let labels = data.labels.withUnsafeBytes { crc32(bytes: $0[...]) }
        return pixels ^ (labels &* 0x9E37_79B1)
    }

    /// Writes `trainer`'s state atomically to `path`.
    public static func save(_ trainer: Trainer, dataFingerprint: UInt32, to path: String) throws(DAEError) {
        let p = trainer.position, config = trainer.config
        var tensors = Weights.tensors(trainer.params, layout: trainer.layout)
        tensors += Weights.tensors(trainer.optimizer.m, layout: trainer.layout, prefix: optimizerPrefix + "exp_avg.")
        tensors += Weights.tensors(trainer.optimizer.v, layout: trainer.layout, prefix: optimizerPrefix + "exp_avg_sq.")
        var metadata: [String: String] = [
            "format": format, "format_version": version,
            "phase": String(p.phase), "epoch": String(p.epoch), "step_in_epoch": String(p.stepInEpoch),
            "global_step": String(p.globalStep), "samples_seen": String(p.samplesSeen),
            "epoch_loss_sum": String(p.epochLossSum), "epoch_loss_sum_bits": String(p.epochLossSum.bitPattern, radix: 16),
            "optimizer": "Adam", "optimizer.step": String(trainer.optimizer.step),
            "epochs": String(config.epochs), "micro_batch": String(config.microBatch), "reduce": config.reduce.rawValue,
            "world_size": String(trainer.communicator.size),
        ]
        for (key, value) in config.model.metadata where key != "model" { metadata[key] = value }
        for setting in fixedSettings(config, data: trainer.data, dataFingerprint: dataFingerprint) {
            metadata[setting.key] = setting.value
        }
        // The checksum covers the data section, which does not depend on the metadata.
        let dataOnly = SafeTensors.encode(tensors)
        metadata["data_crc32"] = String(format: "%08x", SafeTensors.dataChecksum(dataOnly)!)
        try writeFileAtomically(SafeTensors.encode(tensors, metadata: metadata), to: path,
                                crashHalfway: FaultInjection.current.checkpointWriteCrash())
    }

    /// Reads and validates a checkpoint: format, checksum, every tensor present and finite.
    /// `settings`, when given, checks the metadata before any tensor is read: a checkpoint of
    /// another model then fails with its settings error (naming the flag), not a missing tensor.
    public static func load(path: String, layout: ParameterLayout,
                            settings: (([String: String]) throws(DAEError) -> Void)? = nil) throws(DAEError) -> CheckpointState {
        func fail(_ problem: String) -> DAEError { .checkpoint(path: path, problem: problem) }
        guard FileManager.default.fileExists(atPath: path) else { throw fail("no such file") }
        guard let data = FileManager.default.contents(atPath: path) else { throw fail("cannot be read (permissions?)") }
        let bytes = [UInt8](data)
        let (tensors, metadata) = try SafeTensors.decode(bytes, path: path)
        guard metadata["format"] == format else {
            throw fail(metadata["format"] == "dae-dist weights"
                       ? "is a weights file (model.safetensors), not a checkpoint; resume from <run-dir>/checkpoints/"
                       : "not a dae-dist checkpoint (no format: \(format) in its metadata)")
        }
        guard metadata["format_version"] == version else {
            throw fail("checkpoint format version \(metadata["format_version"] ?? "?") is not supported (this dae-dist reads \(version))")
        }
        try settings?(metadata)
        guard let stored = metadata["data_crc32"], let actual = SafeTensors.dataChecksum(bytes),
              stored == String(format: "%08x", actual) else {
            throw fail("checksum mismatch: the tensor data is corrupt (stored \(metadata["data_crc32"] ?? "none"), computed \(SafeTensors.dataChecksum(bytes).map { String(format: "%08x", $0) } ?? "?")); resume from an older checkpoint")
        }
        func integer(_ key: String, min: Int = 0) throws(DAEError) -> Int {
            guard let text = metadata[key], let value = Int(text), value >= min else {
                throw fail("metadata '\(key)' is missing or not an integer >= \(min)")
            }
            return value
        }
        var position = TrainingPosition()
        position.phase = metadata["phase"] == nil ? 0 : try integer("phase")   // absent before the stacked model
        position.epoch = try integer("epoch", min: 1)
        position.stepInEpoch = try integer("step_in_epoch")
        position.globalStep = try integer("global_step")
        position.samplesSeen = try integer("samples_seen")
        guard let bitsText = metadata["epoch_loss_sum_bits"], let bits = UInt64(bitsText, radix: 16),
              Double(bitPattern: bits).isFinite else {
            throw fail("metadata 'epoch_loss_sum_bits' is missing or invalid")
        }
        position.epochLossSum = Double(bitPattern: bits)
        let step = try integer("optimizer.step")
        // Adam restarts with each phase of a stacked model, so its count can trail the global step.
        guard step <= position.globalStep, position.phase > 0 || step == position.globalStep else {
            throw fail("optimizer.step \(step) disagrees with global_step \(position.globalStep)")
        }

        let parameters = FloatBuffer(count: layout.count), m = FloatBuffer(count: layout.count), v = FloatBuffer(count: layout.count)
        try Weights.load(tensors, into: parameters, layout: layout, path: path)
        try Weights.load(tensors, into: m, layout: layout, prefix: optimizerPrefix + "exp_avg.", path: path)
        try Weights.load(tensors, into: v, layout: layout, prefix: optimizerPrefix + "exp_avg_sq.", path: path)
        guard v.array.allSatisfy({ $0 >= 0 }) else { throw fail("optimizer.exp_avg_sq holds negative values") }
        return CheckpointState(parameters: parameters.array, firstMoment: m.array, secondMoment: v.array,
                               optimizerStep: step, position: position, metadata: metadata)
    }

    /// Checks that the run's settings agree with the checkpoint's; the error names the flag.
    public static func checkCompatible(_ state: CheckpointState, path: String, config: TrainConfig,
                                       data: Dataset, dataFingerprint: UInt32, stepsPerEpoch: Int) throws(DAEError) {
        try checkSettings(state.metadata, path: path, config: config, data: data, dataFingerprint: dataFingerprint)
        guard state.position.phase < config.phaseEpochs.count else {
            throw DAEError.checkpoint(path: path, problem: "phase \(state.position.phase) does not exist in this run's \(config.phaseEpochs.count) phases")
        }
        guard state.position.stepInEpoch <= stepsPerEpoch else {
            throw DAEError.checkpoint(path: path, problem: "position step \(state.position.stepInEpoch) is beyond the \(stepsPerEpoch) steps of an epoch")
        }
    }

    /// Checks that the run's fixed settings agree with a checkpoint's metadata; the error names the flag.
    public static func checkSettings(_ metadata: [String: String], path: String, config: TrainConfig,
                                     data: Dataset, dataFingerprint: UInt32) throws(DAEError) {
        for setting in fixedSettings(config, data: data, dataFingerprint: dataFingerprint) {
            let stored = metadata[setting.key] ?? "(missing)"
            if stored != setting.value {
                let what = setting.key == "data_fingerprint" ? "training data (fingerprint)" : setting.key.replacingOccurrences(of: "_", with: " ")
                throw DAEError.badFlag(setting.flag, "the checkpoint \(path) was trained with \(what) \(stored), this run has \(setting.value); use the same setting to resume, or a new --run-dir to start afresh")
            }
        }
    }

    /// The checkpoints in `directory`, newest (highest step) first. Temporary files are ignored.
    public static func list(in directory: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        return names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".safetensors") }
            .sorted(by: >)
            .map { (directory as NSString).appendingPathComponent($0) }
    }

    /// Deletes all but the newest `keep` checkpoints in `directory`.
    public static func prune(_ directory: String, keep: Int) {
        for old in list(in: directory).dropFirst(max(keep, 1)) {
            try? FileManager.default.removeItem(atPath: old)
        }
    }
}
