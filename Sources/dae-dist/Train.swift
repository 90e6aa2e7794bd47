// dae-dist train: flags -> a TrainingRun (the library runs it) with rank 0's observers attached.

import ArgumentParser
import DAE
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a denoising autoencoder: the reference convolutional one, or a stacked one layer by layer.",
        discussion: """
            Defaults are the reference recipe: 20 epochs, batch 20, Adam lr 1e-3, gaussian:0.5 noise, MSE loss, seed 0.
            --model stacked trains a fully connected stacked denoising autoencoder (Vincent et al.): each layer of --hidden
            for --pretrain-epochs as a denoising autoencoder of the clean codes below it (default noise mask:0.25), then
            --epochs of end-to-end fine-tuning of the whole stack (default 0).
            Start it with mpirun (see launch/run) to train data-parallel; results are the same on any number of ranks.
            """)

    @Option(help: "Model: conv (the reference ConvDenoiser) or stacked (fully connected, trained layer by layer).")
    var model: ModelKind = .conv
    @Option(help: "Stacked model: hidden layer widths, input side first (default 1000,1000,1000).") var hidden: String?
    @Option(name: .customLong("pretrain-epochs"), help: "Stacked model: pre-training epochs per layer (default 10).") var pretrainEpochs: Int?
    @Option(help: "Stacked model: hidden units, sigmoid or relu (default sigmoid).") var activation: StackedSpec.Activation?
    @Flag(name: .customLong("tied-weights"), help: "Stacked model: each decoder uses its encoder's weight transposed.") var tiedWeights = false
    @Option(help: "Number of epochs (stacked model: end-to-end fine-tuning epochs after pre-training; default 20, stacked 0).") var epochs: Int?
    @Option(name: .customLong("batch-size"), help: "Samples per optimizer step, over all ranks (default 20; stacked 100).") var batchSize: Int?
    @Option(help: "Adam learning rate.") var lr: Float = 1e-3
    @Option(help: "Input corruption: gaussian:F (clamp(x + F*N(0,1), 0, 1)), mask:P, saltpepper:P or none (default: gaussian:0.5; stacked mask:0.25).")
    var noise: NoiseKind?
    @Option(help: "Reconstruction loss: mse or bce.") var loss: LossKind = .mse
    @Option(help: "Seed for initialisation, shuffling and noise.") var seed: UInt64 = 0
    @Option(help: "Train on the first N training samples only.") var limit: Int?
    @OptionGroup var data: DataOptions
    @Option(name: .customLong("run-dir"), help: "Output folder (default: runs/<UTC date-time>).") var runDir: String?
    @Option(help: "Gradient reduction: exact (bitwise the same on any number of ranks) or fast (float allreduce).") var reduce: ReduceMode = .exact
    @Option(name: .customLong("micro-batch"), help: "Samples per micro-batch in exact mode; a step needs at least one micro-batch per rank (default 5; stacked 25).")
    var microBatch: Int?
    @OptionGroup var threads: ThreadOptions
    @Option(name: .customLong("checkpoint-every"), help: "Also write a checkpoint every N steps (0: only at epoch ends).") var checkpointEvery = 0
    @Flag(name: .customLong("no-epoch-checkpoints"), help: "Do not write a checkpoint at each epoch's end.") var noEpochCheckpoints = false
    @Option(help: "Checkpoints to keep in <run-dir>/checkpoints (the newest).") var keep = 3
    @Option(help: "Resume: 'auto' (the newest valid checkpoint in <run-dir>/checkpoints, or a fresh start) or a checkpoint path.") var resume: String?
    @Option(name: .customLong("eval-every"), help: "Evaluate on the test set every E epochs, and after the last (0: never).") var evalEvery = 1
    @Option(name: .customLong("eval-limit"), help: "Evaluate on the first N test images only (default: all).") var evalLimit: Int?
    @Option(name: .customLong("grid-columns"), help: "Test images per row of the sample grid.") var gridColumns = 10
    @Option(name: .customLong("log-every"), help: "Also log the mean training loss every N steps to metrics.jsonl and TensorBoard (0: off).") var logEvery = 0
    @Flag(help: "No progress or epoch lines on stdout.") var quiet = false

    /// Every flag checked before anything is loaded; each error names its flag.
    func validate() throws {
        try validating { () throws(DAEError) in
            try makeConfig().validate()
            try makeSettings(directory: runDir).validate()
        }
        if let evalLimit, evalLimit < 1 { throw flagError("--eval-limit", "must be at least 1, got \(evalLimit)") }
        guard logEvery >= 0 else { throw flagError("--log-every", "must be 0 or more, got \(logEvery)") }
    }

    func makeConfig() throws(DAEError) -> TrainConfig {
        var spec = ModelSpec.conv
        switch model {
        case .conv:
            // stacked-only flags would be silently ignored: a forgotten --model stacked
            for (flag, given) in [("--hidden", hidden != nil), ("--pretrain-epochs", pretrainEpochs != nil),
                                  ("--activation", activation != nil), ("--tied-weights", tiedWeights)] where given {
                throw .badFlag(flag, "applies to the stacked model only; add --model stacked")
            }
        case .stacked:
            spec = .stacked(StackedSpec(inputSize: 0, hidden: try StackedSpec.parseHidden(hidden ?? "1000,1000,1000"),
                                        activation: activation ?? .sigmoid, tied: tiedWeights))
        }
        var config = TrainConfig(model: spec)
        if let epochs { config.epochs = epochs }
        if let pretrainEpochs { config.pretrainEpochs = pretrainEpochs }
        if let batchSize { config.batchSize = batchSize }
        if let noise { config.noise = noise }
        if let microBatch { config.microBatch = microBatch }
        config.adam.lr = lr
        config.loss = loss
        config.reduce = reduce
        config.seed = seed
        config.limit = limit
        return config
    }

    func makeSettings(directory: String?) -> RunSettings {
        var settings = RunSettings(directory: directory)
        settings.resume = resume.map(ResumeRequest.init)
        settings.checkpointEvery = checkpointEvery
        settings.epochCheckpoints = !noEpochCheckpoints
        settings.keep = keep
        settings.evalEvery = evalEvery
        settings.gridColumns = gridColumns
        return settings
    }

    func run() throws {
        try runReportingErrors { communicatorSlot in
            let communicator = try Launch.makeCommunicator()
            communicatorSlot = communicator
            StopSignals.install()      // from here on a stop signal is a request; the run polls it once per step
            var config = try makeConfig()
            var train = try Dataset.load(directory: data.data, split: .train)
            if let limit { train = train.prefix(limit) }
            if case .stacked(var spec) = config.model {
                spec.inputSize = train.imageSize
                try spec.checkSize()
                config.model = .stacked(spec)
            }
            let test = evalEvery > 0 ? try Dataset.load(directory: data.data, split: .test).prefix(evalLimit ?? Int.max) : nil
            let directory = runDir ?? RunSettings.defaultDirectory()
            let run = try TrainingRun(config: config, settings: makeSettings(directory: directory), data: train, test: test,
                                      communicator: communicator, threads: threads.count(for: communicator))
            run.stopRequested = { StopSignals.requested }
            if communicator.rank == 0 {
                let progress = Progress(quiet: quiet, config: config, runDirectory: directory)
                progress.header(run)
                let record = RunConfiguration(run: run, command: CommandLine.arguments.joined(separator: " "), dataPath: data.data)
                run.observers = [progress, RunOutputs(directory: directory, configuration: record, logEvery: logEvery)]
            }
            try run.run()
        }
    }
}
