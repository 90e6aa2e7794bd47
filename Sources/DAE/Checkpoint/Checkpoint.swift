// Training checkpoints: one safetensors file holding everything a run needs to continue exactly.
//
//   tensors   <state_dict key>                   the model weights (reference PyTorch names/shapes)
//             optimizer.exp_avg.<key>            Adam's first moment, same shape
//             optimizer.exp_avg_sq.<key>         Adam's second moment, same shape
//   metadata  format, format_version, model, image size, the training configuration, the
//             position (epoch, step in epoch, global step, samples seen, the epoch's loss sum so
//             far), Adam's step count, the training data's fingerprint, the data section's CRC-32
//             (data_crc32) and the header's (header_crc32: every other metadata entry and the
//             tensor table in the canonical form of SafeTensors.headerChecksum), and the versions
//             of what wrote it (BuildInfo: dae-dist, Swift, OpenBLAS, MPI, OS, CPU).
//
// On load, the position is cross-checked: its fields must agree with each other (in `load`) and,
// given the run's batch size, sample count and phase schedule, with the steps and samples that lead
// to it (in `checkCompatible`). Checkpoints written before header_crc32 existed still load; for
// them the cross-checks are the only guard on the metadata.
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
        var settings: [(key: String, flag: String, value: String)] = [("model", "--model", config.model.name),
                                                                       ("model_shape", config.model.shapeFlags, config.model.description)]
        if config.model.stackedSpec != nil { settings += [("pretrain_epochs", "--pretrain-epochs", String(config.pretrainEpochs))] }
        let patches = config.patches
        settings += [("patch", "--patch", patches.map { String($0.size) } ?? "none"),
                     ("patches_per_epoch", "--patches-per-epoch", patches.map { String($0.samplesPerEpoch(images: data.count)) } ?? "none"),
                     ("augment", "--augment", patches?.flips == true ? "flips" : "none")]
        return settings + [
         ("image_size", "--data", "\(data.height)x\(data.width)"),
         ("train_samples", "--limit", String(data.count)),
         ("data_fingerprint", "--data", String(format: "%08x", dataFingerprint)),
         ("batch_size", "--batch-size", String(config.batchSize)),
         ("lr", "--lr", String(config.adam.lr)),
         ("lr_schedule", "--lr-schedule", config.lrSchedule.rawValue),
         ("weight_decay", "--weight-decay", String(config.adam.weightDecay)),
         ("clip_grad_norm", "--clip-grad-norm", config.clipGradNorm.map { String($0) } ?? "none"),
         ("beta1", "Adam beta1", String(config.adam.beta1)),
         ("beta2", "Adam beta2", String(config.adam.beta2)),
         ("eps", "Adam eps", String(config.adam.eps)),
         ("noise", "--noise", config.noise.description),
         ("loss", "--loss", config.loss.rawValue),
         ("seed", "--seed", String(config.seed))]
            // a cosine schedule spans the run's steps: more or fewer epochs would move its lr
            + (config.lrSchedule == .constant ? [] : [("schedule_epochs", "--epochs", String(config.epochs))])
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
        // what the data was, so that a resume on other data can say what changed (checkSettings)
        metadata["limit"] = config.limit.map(String.init) ?? "none"
        if let names = trainer.data.names { metadata["data_names_crc32"] = hex(namesChecksum(names)) }
        for setting in fixedSettings(config, data: trainer.data, dataFingerprint: dataFingerprint) {
            metadata[setting.key] = setting.value
        }
        // What wrote it (dae_dist_version, swift, openblas, openblas_core, mpi, os, cpu): for the
        // record only; loading neither needs nor checks these keys.
        for (key, value) in BuildInfo.current.metadata() { metadata[key] = value }
        // The data checksum covers the data section, which does not depend on the metadata; the
        // header checksum covers every other metadata entry (data_crc32 included) and the tensor table.
        let dataOnly = SafeTensors.encode(tensors)
        metadata["data_crc32"] = String(format: "%08x", SafeTensors.dataChecksum(dataOnly)!)
        metadata[SafeTensors.headerChecksumKey] = hex(SafeTensors.headerChecksum(tensors: tensors, metadata: metadata))
        try writeFileAtomically(SafeTensors.encode(tensors, metadata: metadata), to: path,
                                crashHalfway: FaultInjection.current.checkpointWriteCrash())
    }

    static func hex(_ value: UInt32) -> String { String(format: "%08x", value) }

    /// Reads and validates a checkpoint: format, checksums, position, every tensor present and finite.
    /// `settings`, when given, checks the metadata before any tensor is read: a checkpoint of
    /// another model then fails with its settings error (naming the flag), not a missing tensor.
    public static func load(path: String, layout: ParameterLayout,
                            settings: (([String: String]) throws(DAEError) -> Void)? = nil) throws(DAEError) -> CheckpointState {
        func fail(_ problem: String) -> DAEError { .checkpoint(path: path, problem: problem) }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw fail("\(unreadableReason(path)); pass a checkpoint file (<run-dir>/checkpoints/step-N.safetensors), or --resume auto with --run-dir")
        }
        guard !isFolder.boolValue else {
            throw fail("is a folder; pass a checkpoint file (<run-dir>/checkpoints/step-N.safetensors), or --resume auto with --run-dir")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw fail(unreadableReason(path)) }
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
        // Before the settings: an edited setting is a corrupt file, not a settings mismatch. A
        // checkpoint without header_crc32 was written before it existed and is not refused for that.
        if let stored = metadata[SafeTensors.headerChecksumKey] {
            let computed = hex(SafeTensors.headerChecksum(tensors: tensors, metadata: metadata))
            guard stored == computed else {
                throw fail("header checksum mismatch: the checkpoint's metadata was edited or is corrupt (stored \(stored), computed \(computed)); resume from an older checkpoint")
            }
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
        // The decimal copy must say the same, and an epoch's sum starts at 0.
        if let decimal = metadata["epoch_loss_sum"], Double(decimal) != position.epochLossSum {
            throw fail("epoch_loss_sum \(decimal) disagrees with epoch_loss_sum_bits \(bitsText) (\(position.epochLossSum))")
        }
        guard position.stepInEpoch > 0 || position.epochLossSum == 0 else {
            throw fail("epoch_loss_sum_bits \(bitsText) is not 0 at step_in_epoch 0")
        }
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
                                       data: Dataset, dataFingerprint: UInt32, stepsPerEpoch: Int, samplesPerEpoch: Int? = nil) throws(DAEError) {
        try checkSettings(state.metadata, path: path, config: config, data: data, dataFingerprint: dataFingerprint)
        guard state.position.phase < config.phaseEpochs.count else {
            throw DAEError.checkpoint(path: path, problem: "phase \(state.position.phase) does not exist in this run's \(config.phaseEpochs.count) phases")
        }
        guard state.position.stepInEpoch <= stepsPerEpoch else {
            throw DAEError.checkpoint(path: path, problem: "position step \(state.position.stepInEpoch) is beyond the \(stepsPerEpoch) steps of an epoch")
        }
        try checkPosition(state, path: path, config: config, samples: samplesPerEpoch ?? data.count, stepsPerEpoch: stepsPerEpoch)
    }

    /// Cross-checks the position against the steps and samples that lead to it: with `stepsPerEpoch`
    /// steps of `config.batchSize` samples (the last one short when the batch does not divide the
    /// `samples`), global_step must be the steps of the completed phases and epochs plus
    /// step_in_epoch, samples_seen their samples, and optimizer.step the steps of the current phase
    /// (a stacked model starts a fresh Adam with each phase). The completed phases count the epochs
    /// the checkpoint's own run had (its metadata `epochs` and `pretrain_epochs`): --epochs may
    /// change on resume. Call after `checkSettings`, which makes the batch size, the sample count,
    /// the model and pretrain_epochs the checkpoint's.
    static func checkPosition(_ state: CheckpointState, path: String, config: TrainConfig,
                              samples: Int, stepsPerEpoch: Int) throws(DAEError) {
        func fail(_ problem: String) -> DAEError { .checkpoint(path: path, problem: problem) }
        func recordedEpochs(_ key: String) throws(DAEError) -> Int {
            guard let text = state.metadata[key], let value = Int(text), value >= 0, value < 1 << 20 else {
                throw fail("metadata '\(key)' is missing or not an integer from 0 to \((1 << 20) - 1)")
            }
            return value
        }
        var recorded = config
        recorded.epochs = try recordedEpochs("epochs")
        if config.model.stackedSpec != nil { recorded.pretrainEpochs = try recordedEpochs("pretrain_epochs") }
        let p = state.position, phaseEpochs = recorded.phaseEpochs
        // An epoch's end is saved as the next epoch's step 0, so a phase of E epochs ends at E + 1.
        // (This bound also keeps the products below far from overflowing.)
        guard p.epoch <= phaseEpochs[p.phase] + 1 else {
            throw fail("epoch \(p.epoch) is beyond the end of the checkpoint's \(config.phaseName(p.phase))training, which had \(phaseEpochs[p.phase]) epoch(s)")
        }
        let epochsDone = phaseEpochs[..<p.phase].reduce(0, +) + p.epoch - 1
        let phaseSteps = (p.epoch - 1) * stepsPerEpoch + p.stepInEpoch
        let expectedSteps = phaseEpochs[..<p.phase].reduce(0, +) * stepsPerEpoch + phaseSteps
        let at = "\(config.phaseName(p.phase))epoch \(p.epoch), step_in_epoch \(p.stepInEpoch), \(stepsPerEpoch) steps per epoch"
        guard p.globalStep == expectedSteps else {
            throw fail("global_step \(p.globalStep) disagrees with the position (\(at)): expected \(expectedSteps)")
        }
        let expectedSamples = epochsDone * samples + min(p.stepInEpoch * config.batchSize, samples)
        guard p.samplesSeen == expectedSamples else {
            throw fail("samples_seen \(p.samplesSeen) disagrees with the position (\(at), batch size \(config.batchSize), \(samples) samples): expected \(expectedSamples)")
        }
        guard state.optimizerStep == phaseSteps else {
            throw fail("optimizer.step \(state.optimizerStep) disagrees with the position (\(at)): expected \(phaseSteps), the steps of the current phase")
        }
    }

    /// Checks that the run's fixed settings agree with a checkpoint's metadata; the error names the flag.
    /// What a checkpoint written before a setting was recorded had: whole images, and the
    /// reference convolutional model (stacked checkpoints always recorded their shape).
    static let valuesOfEarlierFiles = ["patch": "none", "patches_per_epoch": "none", "augment": "none", "lr_schedule": "constant", "weight_decay": "0.0", "clip_grad_norm": "none",
                                       "model_shape": ModelSpec.reference.description]

    public static func checkSettings(_ metadata: [String: String], path: String, config: TrainConfig,
                                     data: Dataset, dataFingerprint: UInt32) throws(DAEError) {
        for setting in fixedSettings(config, data: data, dataFingerprint: dataFingerprint) {
            let stored = metadata[setting.key] ?? valuesOfEarlierFiles[setting.key] ?? "(missing)"
            if stored != setting.value && dataKeys.contains(setting.key) {
                throw dataChanged(metadata, path: path, config: config, data: data, dataFingerprint: dataFingerprint)
            }
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

    /// The settings that describe the training data rather than a flag of their own.
    static let dataKeys: Set<String> = ["image_size", "train_samples", "data_fingerprint"]

    /// CRC-32 of the images' names (relative paths, in order): which files a folder's split holds.
    static func namesChecksum(_ names: [String]) -> UInt32 {
        Array(names.joined(separator: "\n").utf8).withUnsafeBytes { crc32(bytes: $0[...]) }
    }

    /// The training data differ from the checkpoint's: says what changed, as far as the checkpoint
    /// tells (its --limit, its files, their pixels), naming the flag that would bring it back.
    static func dataChanged(_ metadata: [String: String], path: String, config: TrainConfig,
                            data: Dataset, dataFingerprint: UInt32) -> DAEError {
        let thisLimit = config.limit.map(String.init) ?? "none"
        if let limit = metadata["limit"], limit != thisLimit {
            func described(_ value: String) -> String { value == "none" ? "no --limit" : "--limit \(value)" }
            return .badFlag("--limit", "the checkpoint \(path) was trained with \(described(limit)), this run has \(described(thisLimit)); resume it with \(described(limit))")
        }
        let then = metadata["train_samples"] ?? "?", size = metadata["image_size"] ?? "?"
        let now = "\(data.count) image(s) of \(data.height)x\(data.width)"
        let what: String
        if then != String(data.count) || size != "\(data.height)x\(data.width)" {
            what = "it had \(then) image(s) of \(size), this run has \(now)"
        } else if let names = metadata["data_names_crc32"], let current = data.names, names != hex(namesChecksum(current)) {
            what = "the same number of images (\(then)) but other files (renamed, replaced, or another --val-fraction)"
        } else {
            what = "the same \(now), but their pixels differ (fingerprint \(metadata["data_fingerprint"] ?? "?"), this run \(String(format: "%08x", dataFingerprint)))"
        }
        let split = data.names != nil ? " (files added or removed, or another --val-fraction)" : ""
        return .badFlag("--data", "\(data.source) is not the training data of the checkpoint \(path): \(what)\(what.hasPrefix("it had") ? split : ""); resume on the data it was trained on, or start afresh in a new --run-dir")
    }

    /// The global step in a checkpoint's file name (step-000000050.safetensors: 50).
    public static func globalStep(ofFile path: String) -> Int? {
        let name = (path as NSString).lastPathComponent
        guard name.hasPrefix("step-"), name.hasSuffix(".safetensors") else { return nil }
        return Int(name.dropFirst(5).dropLast(12))
    }

    /// The format version of a dae-dist checkpoint this binary cannot read, from its header alone
    /// (nil for a readable version, another file, or a header that cannot be read).
    public static func newerFormatVersion(path: String) -> String? {
        guard let header = try? SafeTensors.readHeader(path: path), header.metadata["format"] == format,
              let stored = header.metadata["format_version"], stored != version else { return nil }
        return stored
    }

    /// Deletes all but the newest `keep` checkpoints in `directory`.
    public static func prune(_ directory: String, keep: Int) {
        for old in list(in: directory).dropFirst(max(keep, 1)) {
            try? FileManager.default.removeItem(atPath: old)
        }
    }
}
