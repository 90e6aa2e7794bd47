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

    @Option(help: ArgumentHelp(ModelKind.help)) var model: ModelKind?
    @Option(help: "Layer widths, comma-separated: conv two (default 32,64), unet one per level (default 32,64,128), stacked its hidden layers, input side first (default 1000,1000,1000).")
    var widths: String?
    @Option(help: "Stacked model: the same as --widths.") var hidden: String?
    @Option(parsing: .unconditional, help: "DnCNN: its 3x3 convolutions (default 17; --widths is their one width, default 64).") var depth: Int?
    @Option(parsing: .unconditional, help: "Channels the model sees: 1 (gray) or 3 (RGB; gray images are repeated); default: what the data has.") var channels: Int?
    @Option(parsing: .unconditional, help: "Train on random N x N crops of the images (N a multiple of the model's pooling: 4 for conv); images may then differ in size.")
    var patch: Int?
    @Option(name: .customLong("patches-per-epoch"), parsing: .unconditional, help: "With --patch: crops per epoch (default one per image, at least 10000).") var patchesPerEpoch: Int?
    @Option(help: "With --patch: none, or flips (each crop flipped and rotated by one of the square's 8 symmetries; default none).") var augment: AugmentKind?
    @Option(name: .customLong("pretrain-epochs"), parsing: .unconditional, help: "Stacked model: pre-training epochs per layer (default 10).") var pretrainEpochs: Int?
    @Option(help: "Stacked model: hidden units, sigmoid or relu (default sigmoid).") var activation: StackedSpec.Activation?
    @Flag(name: .customLong("tied-weights"), help: "Stacked model: each decoder uses its encoder's weight transposed.") var tiedWeights = false
    @Option(parsing: .unconditional, help: "Number of epochs (stacked model: end-to-end fine-tuning epochs after pre-training; default 20, stacked 0).") var epochs: Int?
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Samples per optimizer step, over all ranks (default 20; stacked 100).") var batchSize: Int?
    @Option(parsing: .unconditional, help: "Adam learning rate (default 1e-3).") var lr: Float?
    @Option(name: .customLong("weight-decay"), parsing: .unconditional,
            help: "Decoupled weight decay, as torch.optim.AdamW's weight_decay (default 0: plain Adam).") var weightDecay: Float?
    @Option(name: .customLong("clip-grad-norm"), parsing: .unconditional,
            help: "Clip the reduced gradient to this global L2 norm before each update, as torch.nn.utils.clip_grad_norm_ (default: no clipping).")
    var clipGradNorm: Float?
    @Option(name: .customLong("lr-schedule"), help: "constant, or cosine: from --lr down to 0 over the run's steps along half a cosine (PyTorch's CosineAnnealingLR stepped every batch; default constant).")
    var lrSchedule: LRSchedule?
    @Option(help: "Input corruption: gaussian:F (clamp(x + F*N(0,1), 0, 1)), mask:P, saltpepper:P or none (default: gaussian:0.5; stacked mask:0.25).")
    var noise: NoiseKind?
    @Option(help: "Reconstruction loss: mse or bce (default mse).") var loss: LossKind?
    @Option(parsing: .unconditional, help: "Seed for initialisation, shuffling and noise (default 0).") var seed: UInt64?
    @Option(parsing: .unconditional, help: "Train on the first N training samples only.") var limit: Int?
    @OptionGroup var data: DataOptions
    @Option(name: .customLong("run-dir"), help: "Output folder (default: runs/<UTC date-time>-<pid>; in a Slurm job runs/slurm-<job id>).") var runDir: String?
    @Flag(help: "Start afresh in a --run-dir that holds an earlier run, removing its checkpoints and outputs.") var overwrite = false
    @Option(help: "Gradient reduction: exact (bitwise the same on any number of ranks; the default) or fast (float allreduce).") var reduce: ReduceMode?
    @Option(name: .customLong("micro-batch"), parsing: .unconditional, help: "Samples per micro-batch in exact mode; a step needs at least one micro-batch per rank (default 5; stacked 25).")
    var microBatch: Int?
    @OptionGroup var threads: ThreadOptions
    @Option(name: .customLong("checkpoint-every"), parsing: .unconditional, help: "Also write a checkpoint every N steps (default 0: only at epoch ends).") var checkpointEvery: Int?
    @Flag(name: .customLong("no-epoch-checkpoints"), help: "Do not write a checkpoint at each epoch's end.") var noEpochCheckpoints = false
    @Flag(name: .customLong("no-overlap"), help: "On several ranks: reduce all gradients after the backward, instead of starting the decoder's while the encoder's backward runs (in exact mode the same bits; for measuring).")
    var noOverlap = false
    @Option(parsing: .unconditional, help: "Checkpoints to keep in <run-dir>/checkpoints (the newest; default 3).") var keep: Int?
    @Option(help: "Resume: 'auto' (the newest valid checkpoint in <run-dir>/checkpoints, or a fresh start) or a checkpoint path. Flags not given are then the run's own, from <run-dir>/config.json.")
    var resume: String?
    @Option(name: .customLong("eval-every"), parsing: .unconditional, help: "Evaluate on the test set every E epochs, and after the last (0: never; default 1).") var evalEvery: Int?
    @Option(name: .customLong("eval-limit"), parsing: .unconditional, help: "Evaluate on the first N test images only (default: all).") var evalLimit: Int?
    @Option(name: .customLong("grid-columns"), parsing: .unconditional, help: "Test images per row of the sample grid (default 10).") var gridColumns: Int?
    @Option(name: .customLong("log-every"), parsing: .unconditional, help: "Also log the mean training loss every N steps to metrics.jsonl and TensorBoard (default 0: off).") var logEvery: Int?
    @Flag(help: "No progress or epoch lines on stdout.") var quiet = false

    /// Every flag checked before anything is loaded; each error names its flag.
    func validate() throws {
        try validating { () throws(DAEError) in
            let previous = (try? readPrevious()) ?? nil     // an unreadable config.json: run() names it
            try makeConfig(previous).validate()
            try makeSettings(directory: runDir, previous).validate()
        }
        if let evalLimit, evalLimit < 1 { throw flagError("--eval-limit", "must be at least 1, got \(evalLimit)") }
        if let logEvery, logEvery < 0 { throw flagError("--log-every", "must be 0 or more, got \(logEvery)") }
    }

    func run() throws {
        try runReportingErrors { communicatorSlot in
            let communicator = try Launch.makeCommunicator()
            communicatorSlot = communicator
            let previous = try readPrevious()
            var config = try makeConfig(previous)
            let settings = makeSettings(directory: runDir ?? RunSettings.defaultDirectory(), previous)
            if communicator.rank == 0 { try settings.checkResumeFile() }
            let (dataPath, valFraction) = (dataPath(previous), valFraction(previous))
            let channels = self.channels ?? previous?.channels
            let threadCount = threads.count(for: communicator)
            let loadProgress = communicator.rank == 0 && !quiet ? Progress.loading : nil
            // the loader's warnings on rank 0, each once (both splits list the same folder)
            var noted = Set<String>()
            let note = { (line: String) in if communicator.rank == 0 && noted.insert(line).inserted { warn(line) } }
            // --limit before the memory check: a split too large for memory loads with the --limit it names
            let train = try Dataset.load(path: dataPath, valFraction: valFraction, split: .train, channels: channels, limit: config.limit,
                                         communicator: communicator, threads: threadCount, notes: note, progress: loadProgress)
            config.model = try completeModel(config.model, data: train)
            let evalLimit = self.evalLimit ?? previous?.evalLimit
            let test = settings.evalEvery > 0 ? try Dataset.load(path: dataPath, valFraction: valFraction, split: .test, channels: train.channels,
                                                                 limit: evalLimit, communicator: communicator, threads: threadCount, notes: note) : nil
            let samples = TrainingSamples(data: train, patches: config.patches, seed: config.seed).perEpoch
            let run = try TrainingRun(config: config, settings: settings, data: train, test: test,
                                      communicator: communicator, threads: threads.count(for: communicator, training: config, images: samples))
            run.stopRequested = { StopSignals.requested }
            if communicator.rank == 0, let directory = settings.directory {
                if resume != nil && previous == nil && !quiet {
                    FileHandle.standardOutput.write(Data("note: \(directory) has no config.json: this run's settings are the flags given and the defaults\n".utf8))
                }
                let progress = Progress(quiet: quiet, config: config, runDirectory: directory)
                progress.header(run)
                let logEvery = self.logEvery ?? previous?.logEvery ?? 0
                let record = RunConfiguration(run: run, command: CommandLine.arguments.joined(separator: " "), dataPath: dataPath,
                                              valFraction: valFraction, evalLimit: evalLimit, logEvery: logEvery)
                run.observers = [progress, RunOutputs(directory: directory, configuration: record, logEvery: logEvery)]
            }
            do {
                try run.run()
            } catch DAEError.badFlag(let flag, let problem) where previous == nil && resume != nil {
                // the run's own settings were not there to fill in the flags not given
                throw DAEError.badFlag(flag, problem + " (\(settings.directory ?? "the run directory") has no config.json, so flags not given took their defaults: give the run's flags again)")
            }
        }
    }
}
