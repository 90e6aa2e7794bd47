// dae-dist train's flags -> the library's TrainConfig (what to train) and RunSettings (how to
// drive the run). A fresh run takes each flag not given from the model's defaults. A resumed run
// (--resume with a --run-dir holding config.json) takes it from the run's own config.json, so
// `dae-dist train --run-dir R --resume auto` alone continues R; flags that are given must still
// agree with its checkpoint (TrainingRun checks, naming the flag).

import DAE
import Foundation

extension Train {
    /// The configuration of the run being resumed, if any (read once by validate() and run(),
    /// and handed to the functions below).
    /// With --resume PATH into a directory that has no config.json (a run branched from another
    /// directory's checkpoint), the checkpoint's own run directory's. A config.json that cannot be
    /// read is an error (RunConfiguration.load), never silently the defaults.
    func readPrevious() throws(DAEError) -> RunConfiguration? {
        guard let resume else { return nil }
        if let runDir, let own = try RunConfiguration.load(directory: runDir) { return own }
        if resume != "auto", let origin = RunDirectoryLock.runDirectory(ofCheckpoint: resume) {
            return try RunConfiguration.load(directory: origin)
        }
        return nil
    }

    /// The data path: the flag, or when resuming without it, the run's own.
    func dataPath(_ previous: RunConfiguration?) -> String { data.data ?? previous?.data ?? DataOptions.defaultPath }
    /// The held-out fraction of a folder without splits: the flag, or the resumed run's own.
    func valFraction(_ previous: RunConfiguration?) -> Double { data.valFraction ?? previous?.valFraction ?? data.fraction }

    func makeConfig(_ previous: RunConfiguration?) throws(DAEError) -> TrainConfig {
        var config: TrainConfig
        if let previous {
            config = try previous.trainConfig()
            if model != nil || widths != nil || hidden != nil || channels != nil || activation != nil || tiedWeights || depth != nil || pretrainEpochs != nil {
                config.model = try modelSpec(base: config.model)
            }
        } else {
            config = TrainConfig(model: try modelSpec(base: nil))
        }
        if let epochs { config.epochs = epochs }
        if let pretrainEpochs { config.pretrainEpochs = pretrainEpochs }
        if let batchSize { config.batchSize = batchSize }
        if let noise { config.noise = noise }
        if let microBatch { config.microBatch = microBatch }
        if let lr { config.adam.lr = lr }
        if let lrSchedule { config.lrSchedule = lrSchedule }
        if let weightDecay { config.adam.weightDecay = weightDecay }
        if let clipGradNorm { config.clipGradNorm = clipGradNorm }
        if let loss { config.loss = loss }
        if let reduce { config.reduce = reduce }
        if let seed { config.seed = seed }
        if let limit { config.limit = limit }
        if let patch {
            config.patches = PatchSampling(size: patch, perEpoch: config.patches?.perEpoch, flips: config.patches?.flips ?? false)
        }
        for (flag, given) in [("--patches-per-epoch", patchesPerEpoch != nil), ("--augment", augment != nil)] where given && config.patches == nil {
            throw .badFlag(flag, "applies to training on crops; add --patch N")
        }
        if let patchesPerEpoch { config.patches?.perEpoch = patchesPerEpoch }
        if let augment { config.patches?.flips = augment == .flips }
        return config
    }

    /// The model with what only the data tells: a stacked model's input size, and the channels of
    /// an image model when --channels was not given (those of the data).
    func completeModel(_ model: ModelSpec, data: Dataset) throws(DAEError) -> ModelSpec {
        try model.completed(channels: data.channels, imageSize: data.imageSize)
    }

    /// The model the flags name, on top of `base` (the resumed run's model) when there is one: the
    /// registry builds it (ModelSpec.fromFlags), refusing a flag the model does not take.
    func modelSpec(base: ModelSpec?) throws(DAEError) -> ModelSpec {
        var flags = ModelFlags()
        flags.widths = widths; flags.hidden = hidden; flags.channels = channels
        flags.activation = activation?.rawValue; flags.tiedWeights = tiedWeights; flags.depth = depth
        let spec = try ModelSpec.fromFlags(kind: model?.kind, flags, base: base)
        if spec.stackedSpec == nil, pretrainEpochs != nil {
            throw .badFlag("--pretrain-epochs", "applies to the stacked model only; add --model stacked")
        }
        return spec
    }

    func makeSettings(directory: String?, _ previous: RunConfiguration?) -> RunSettings {
        var settings = previous?.runSettings(directory: directory) ?? RunSettings(directory: directory)
        settings.resume = resume.map(ResumeRequest.init)
        settings.overwrite = overwrite
        if let checkpointEvery { settings.checkpointEvery = checkpointEvery }
        if noEpochCheckpoints { settings.epochCheckpoints = false }
        if noOverlap { settings.overlapReduction = false }
        if let keep { settings.keep = keep }
        if let evalEvery { settings.evalEvery = evalEvery }
        if let gridColumns { settings.gridColumns = gridColumns }
        return settings
    }
}
