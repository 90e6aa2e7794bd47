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
    func readPrevious() -> RunConfiguration? {
        guard resume != nil, let runDir else { return nil }
        return RunConfiguration.read(directory: runDir)
    }

    /// The data path: the flag, or when resuming without it, the run's own.
    func dataPath(_ previous: RunConfiguration?) -> String { data.data ?? previous?.data ?? DataOptions.defaultPath }
    /// The held-out fraction of a folder without splits: the flag, or the resumed run's own.
    func valFraction(_ previous: RunConfiguration?) -> Double { data.valFraction ?? previous?.valFraction ?? data.fraction }

    func makeConfig(_ previous: RunConfiguration?) throws(DAEError) -> TrainConfig {
        var config: TrainConfig
        if let previous {
            config = try previous.trainConfig()
            if model != nil || hidden != nil || activation != nil || tiedWeights { config.model = try modelSpec(base: config.model) }
        } else {
            config = TrainConfig(model: try modelSpec(base: nil))
        }
        if let epochs { config.epochs = epochs }
        if let pretrainEpochs { config.pretrainEpochs = pretrainEpochs }
        if let batchSize { config.batchSize = batchSize }
        if let noise { config.noise = noise }
        if let microBatch { config.microBatch = microBatch }
        if let lr { config.adam.lr = lr }
        if let loss { config.loss = loss }
        if let reduce { config.reduce = reduce }
        if let seed { config.seed = seed }
        if let limit { config.limit = limit }
        return config
    }

    /// The model the flags name, on top of `base` (the resumed run's model) when there is one.
    func modelSpec(base: ModelSpec?) throws(DAEError) -> ModelSpec {
        var baseStacked: StackedSpec? = nil
        if case .stacked(let spec) = base { baseStacked = spec }
        switch model ?? (baseStacked == nil ? .conv : .stacked) {
        case .conv:
            // stacked-only flags would be silently ignored: a forgotten --model stacked
            for (flag, given) in [("--hidden", hidden != nil), ("--pretrain-epochs", pretrainEpochs != nil),
                                  ("--activation", activation != nil), ("--tied-weights", tiedWeights)] where given {
                throw .badFlag(flag, "applies to the stacked model only; add --model stacked")
            }
            return .reference
        case .stacked:
            let widths = try hidden.map { text throws(DAEError) in try StackedSpec.parseHidden(text) } ?? baseStacked?.hidden ?? [1000, 1000, 1000]
            return .stacked(StackedSpec(inputSize: 0, hidden: widths, activation: activation ?? baseStacked?.activation ?? .sigmoid,
                                        tied: tiedWeights || (baseStacked?.tied ?? false)))
        }
    }

    func makeSettings(directory: String?, _ previous: RunConfiguration?) -> RunSettings {
        var settings = previous?.runSettings(directory: directory) ?? RunSettings(directory: directory)
        settings.resume = resume.map(ResumeRequest.init)
        settings.overwrite = overwrite
        if let checkpointEvery { settings.checkpointEvery = checkpointEvery }
        if noEpochCheckpoints { settings.epochCheckpoints = false }
        if let keep { settings.keep = keep }
        if let evalEvery { settings.evalEvery = evalEvery }
        if let gridColumns { settings.gridColumns = gridColumns }
        return settings
    }
}
