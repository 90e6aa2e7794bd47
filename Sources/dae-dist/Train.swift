// dae-dist train: the training run, rank 0's outputs, checkpoints and resume.

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
    var model = "conv"
    @Option(help: "Stacked model: hidden layer widths, input side first (default 1000,1000,1000).") var hidden: String?
    @Option(name: .customLong("pretrain-epochs"), help: "Stacked model: pre-training epochs per layer (default 10).") var pretrainEpochs: Int?
    @Option(help: "Stacked model: hidden units, sigmoid or relu (default sigmoid).") var activation: String?
    @Flag(name: .customLong("tied-weights"), help: "Stacked model: each decoder uses its encoder's weight transposed.")
    var tiedWeights = false
    @Option(help: "Number of epochs (stacked model: end-to-end fine-tuning epochs after pre-training; default 20, stacked 0).")
    var epochs: Int?
    @Option(name: .customLong("batch-size"), help: "Samples per optimizer step, over all ranks (default 20; stacked 100).") var batchSize: Int?
    @Option(help: "Adam learning rate.") var lr: Float = 1e-3
    @Option(help: "Input corruption: gaussian:F (clamp(x + F*N(0,1), 0, 1)), mask:P, saltpepper:P or none (default: gaussian:0.5; stacked mask:0.25).")
    var noise: String?
    @Option(help: "Reconstruction loss: mse or bce.") var loss = "mse"
    @Option(help: "Seed for initialisation, shuffling and noise.") var seed: UInt64 = 0
    @Option(help: "Train on the first N training samples only.") var limit: Int?
    @Option(name: .customLong("data-dir"), help: "Folder with IDX files in MNIST's layout (Fashion-MNIST works too).")
    var dataDir = "data/mnist"
    @Option(name: .customLong("run-dir"), help: "Output folder (default: runs/<UTC date-time>).") var runDir: String?
    @Option(help: "Gradient reduction: exact (bitwise the same on any number of ranks) or fast (float allreduce).")
    var reduce = "exact"
    @Option(name: .customLong("micro-batch"), help: "Samples per micro-batch in exact mode; a step needs at least one micro-batch per rank (default 5; stacked 25).")
    var microBatch: Int?
    @Option(help: "Threads per rank (default: the node's cores shared among its ranks, at least 1).") var threads: Int?
    @Option(name: .customLong("checkpoint-every"), help: "Also write a checkpoint every N steps (0: only at epoch ends).")
    var checkpointEvery = 0
    @Flag(name: .customLong("no-epoch-checkpoints"), help: "Do not write a checkpoint at each epoch's end.")
    var noEpochCheckpoints = false
    @Option(help: "Checkpoints to keep in <run-dir>/checkpoints (the newest).") var keep = 3
    @Option(help: "Resume: 'auto' (the newest valid checkpoint in <run-dir>/checkpoints, or a fresh start) or a checkpoint path.")
    var resume: String?
    @Option(name: .customLong("eval-every"), help: "Evaluate on the test set every E epochs, and after the last (0: never).")
    var evalEvery = 1
    @Option(name: .customLong("eval-limit"), help: "Evaluate on the first N test images only (default: all).") var evalLimit: Int?
    @Option(name: .customLong("grid-columns"), help: "Test images per row of the sample grid.") var gridColumns = 10
    @Option(name: .customLong("log-every"), help: "Also log the mean training loss every N steps to metrics.jsonl and TensorBoard (0: off).")
    var logEvery = 0
    @Flag(help: "No progress or epoch lines on stdout.") var quiet = false

    func run() throws {
        try runReportingErrors { communicatorSlot in
            let communicator = try Launch.makeCommunicator()
            communicatorSlot = communicator
            let isRoot = communicator.rank == 0

            var config = TrainConfig()
            switch model.lowercased() {
            case "conv":
                config.model = .conv
                // stacked-only flags would be silently ignored: a forgotten --model stacked
                for (flag, given) in [("--hidden", hidden != nil), ("--pretrain-epochs", pretrainEpochs != nil),
                                      ("--activation", activation != nil), ("--tied-weights", tiedWeights)] where given {
                    throw DAEError.badFlag(flag, "applies to the stacked model only; add --model stacked")
                }
            case "stacked":
                let activationName = activation ?? "sigmoid"
                guard let act = StackedSpec.Activation(rawValue: activationName.lowercased()) else {
                    throw DAEError.badFlag("--activation", "unknown activation '\(activationName)'; use sigmoid or relu")
                }
                config.model = .stacked(StackedSpec(inputSize: 0, hidden: try StackedSpec.parseHidden(hidden ?? "1000,1000,1000"), activation: act, tied: tiedWeights))
            default:
                throw DAEError.badFlag("--model", "unknown model '\(model)'; use conv or stacked")
            }
            let stacked = config.model != .conv
            config.epochs = epochs ?? (stacked ? 0 : 20)
            config.pretrainEpochs = pretrainEpochs ?? 10
            // The stacked model's layers have far more parameters per sample of compute than the
            // convolutional one, so larger steps amortise the per-micro-batch reduction work
            // (measured for 784-1000-1000: about 700 samples/s at batch 20 / micro-batch 5, about
            // 2,600 at 100 / 25; docs/features.md).
            config.batchSize = batchSize ?? (stacked ? 100 : 20)
            config.adam.lr = lr
            config.noise = try NoiseKind(parsing: noise ?? (stacked ? "mask:0.25" : "gaussian:0.5"))
            if case .stacked(let spec) = config.model, spec.activation == .relu, spec.hidden.count > 1 {
                switch config.noise {
                case .gaussian, .saltPepper:
                    throw DAEError.badFlag("--noise", "\(config.noise) works in [0,1], which the ReLU codes of layers 2 and up are not; use mask:P with --activation relu")
                default: break
                }
            }
            guard let lossKind = LossKind(rawValue: loss.lowercased()) else {
                throw DAEError.badFlag("--loss", "unknown loss '\(loss)'; use mse or bce")
            }
            config.loss = lossKind
            guard let reduceMode = ReduceMode(rawValue: reduce.lowercased()) else {
                throw DAEError.badFlag("--reduce", "unknown mode '\(reduce)'; use exact or fast")
            }
            config.reduce = reduceMode
            config.microBatch = microBatch ?? (stacked ? 25 : 5)
            config.seed = seed
            config.limit = limit
            try config.validate()
            let cores = ProcessInfo.processInfo.activeProcessorCount
            let threadCount = try threadsPerRank(threads, communicator)

            guard checkpointEvery >= 0 else { throw DAEError.badFlag("--checkpoint-every", "must be 0 or more, got \(checkpointEvery)") }
            guard keep >= 1 else { throw DAEError.badFlag("--keep", "must be at least 1, got \(keep)") }
            guard evalEvery >= 0 else { throw DAEError.badFlag("--eval-every", "must be 0 or more, got \(evalEvery)") }
            guard gridColumns >= 1 && gridColumns <= 1000 else { throw DAEError.badFlag("--grid-columns", "must be between 1 and 1000, got \(gridColumns)") }
            if let evalLimit, evalLimit < 1 { throw DAEError.badFlag("--eval-limit", "must be at least 1, got \(evalLimit)") }
            guard logEvery >= 0 else { throw DAEError.badFlag("--log-every", "must be 0 or more, got \(logEvery)") }
            if resume == "auto" && runDir == nil {
                throw DAEError.badFlag("--resume", "'auto' looks in <run-dir>/checkpoints: pass the --run-dir of the run to continue")
            }

            var data = try Dataset.load(directory: dataDir, split: .train)
            if let limit { data = data.prefix(limit) }
            if case .stacked(var spec) = config.model {
                spec.inputSize = data.imageSize
                config.model = .stacked(spec)
                try spec.checkSize()
            }
            let directory = runDir ?? defaultRunDirectory()
            let checkpoints = (directory as NSString).appendingPathComponent("checkpoints")
            let trainer = try Trainer(config: config, data: data, communicator: communicator, threads: threadCount)
            let fingerprint = isRoot ? Checkpoint.fingerprint(data) : 0
            let test = evalEvery > 0 ? try Dataset.load(directory: dataDir, split: .test).prefix(evalLimit ?? Int.max) : nil
            if let test, test.height != data.height || test.width != data.width {
                throw DAEError.data(path: test.source, problem: "test images are \(test.height)x\(test.width) but training images \(data.height)x\(data.width)")
            }
            let evaluator = test.map {
                Evaluator(model: config.model, data: $0, noise: config.noise, seed: config.seed, parameters: trainer.params, communicator: communicator,
                          threads: config.reduce == .exact ? threadCount : 1)
            }
            let progress = Progress(quiet: quiet)
            StopSignals.install()
            trainer.stopRequested = { StopSignals.requested }
            if isRoot {
                say("dae-dist train: \(data.count) samples (\(data.height)x\(data.width)) from \(data.source)")
                let schedule = stacked ? "\(config.model.description): \(config.pretrainEpochs) pre-training epochs per layer, \(config.epochs) fine-tuning epochs" : "\(config.epochs) epochs"
                say("  \(schedule), batch \(config.batchSize), Adam lr \(config.adam.lr), noise \(config.noise), loss \(config.loss.rawValue), seed \(config.seed)")
                let threading = config.reduce == .exact
                    ? "\(trainer.workerCount) worker thread(s) x 1 BLAS thread, micro-batch \(trainer.effectiveMicroBatch)"
                    : "\(BLASThreads.current) BLAS thread(s)"
                say("  \(communicator.size) rank(s) (\(communicator.name), \(communicator.localSize) on this node, \(cores) cores), reduce \(config.reduce.rawValue), \(threading) per rank")
                say("  \(trainer.layout.count) parameters, run dir \(directory)")
            }

            // Resume: rank 0 reads and validates, then every rank receives the state.
            if let resume {
                var found: Int32 = 0
                if isRoot {
                    let candidates = resume == "auto" ? Checkpoint.list(in: checkpoints) : [resume]
                    for path in candidates {
                        do {
                            let state = try Checkpoint.load(path: path, layout: trainer.layout) { metadata throws(DAEError) in
                                try Checkpoint.checkSettings(metadata, path: path, config: config, data: data, dataFingerprint: fingerprint)
                            }
                            try Checkpoint.checkCompatible(state, path: path, config: config, data: data,
                                                           dataFingerprint: fingerprint, stepsPerEpoch: trainer.stepsPerEpoch)
                            trainer.restore(state)
                            found = 1
                            let p = trainer.position
                            say("resuming from \(path): step \(p.globalStep), \(config.phaseName(p.phase))epoch \(p.epoch) at step \(p.stepInEpoch)/\(trainer.stepsPerEpoch)")
                            break
                        } catch let error as DAEError {
                            if resume != "auto" { throw error }
                            if case .badFlag = error { throw error }      // a settings mismatch is not skipped
                            FileHandle.standardError.write(Data("warning: skipping \(error)\n".utf8))
                        }
                    }
                    if found == 0 { say("no checkpoint in \(checkpoints): starting afresh") }
                }
                communicator.broadcast(&found, count: 4, root: 0)
                if found == 1 { trainer.broadcastState() }
            }

            // Rank 0's outputs: config.json, metrics.jsonl, samples/, tensorboard/, report.html.
            var outputs: RunOutputs? = nil
            if isRoot {
                let settings: [(String, String)] = [
                    ("command", CommandLine.arguments.joined(separator: " ")),
                    ("model", config.model.description), ("pretrain_epochs", stacked ? String(config.pretrainEpochs) : "-"),
                    ("epochs", String(config.epochs)), ("batch_size", String(config.batchSize)), ("lr", String(config.adam.lr)),
                    ("noise", config.noise.description), ("loss", config.loss.rawValue), ("seed", String(config.seed)),
                    ("data_dir", dataDir), ("train_samples", String(data.count)), ("image_size", "\(data.height)x\(data.width)"),
                    ("world_size", String(communicator.size)), ("threads_per_rank", String(threadCount)),
                    ("reduce", config.reduce.rawValue), ("micro_batch", String(trainer.effectiveMicroBatch)),
                    ("eval_every", String(evalEvery)), ("checkpoint_every", String(checkpointEvery)), ("keep", String(keep)),
                    ("parameters", String(trainer.layout.count)),
                ]
                outputs = try RunOutputs(directory: directory, configuration: settings,
                                         resumedAfter: trainer.position.globalStep > 0 ? trainer.position.globalStep : nil)
            }

            var lastSaved = -1
            func saveCheckpoint() throws(DAEError) {
                guard isRoot, trainer.position.globalStep != lastSaved else { return }
                let path = (checkpoints as NSString).appendingPathComponent(Checkpoint.fileName(globalStep: trainer.position.globalStep))
                try Checkpoint.save(trainer, dataFingerprint: fingerprint, to: path)
                Checkpoint.prune(checkpoints, keep: keep)
                lastSaved = trainer.position.globalStep
            }

            // Phase by phase (one for the convolutional model; a stacked model's layers, then
            // fine-tuning), epoch by epoch.
            while !trainer.finished {
                let epoch = trainer.position.epoch, phase = trainer.position.phase
                let epochs = trainer.phaseEpochs, phaseName = config.phaseName(phase)
                let epochStart = Date()
                var samplesThisRun = 0, lossSumSeen = trainer.position.epochLossSum, windowSum = 0.0, windowSteps = 0
                progress.startEpoch(atStep: trainer.position.stepInEpoch)
                let r = try trainer.trainEpoch { t throws(DAEError) in
                    let p = t.position
                    let batchLoss = p.epochLossSum - lossSumSeen
                    lossSumSeen = p.epochLossSum
                    samplesThisRun += min(config.batchSize, data.count - (p.stepInEpoch - 1) * config.batchSize)
                    if isRoot {
                        progress.step(epoch: p.epoch, epochs: epochs, step: p.stepInEpoch, steps: t.stepsPerEpoch,
                                      samplesPerSecond: Double(samplesThisRun) / max(Date().timeIntervalSince(epochStart), 1e-9),
                                      loss: p.epochLossSum / Double(p.stepInEpoch))
                        if logEvery > 0 {
                            windowSum += batchLoss; windowSteps += 1
                            if p.globalStep % logEvery == 0 {
                                try outputs?.trainSteps(epoch: p.epoch, step: p.globalStep, meanLoss: windowSum / Double(windowSteps))
                                windowSum = 0; windowSteps = 0
                            }
                        }
                    }
                    if checkpointEvery > 0, p.globalStep % checkpointEvery == 0, p.stepInEpoch < t.stepsPerEpoch {
                        try saveCheckpoint()
                    }
                }
                let completed = trainer.position.stepInEpoch == 0
                if completed {
                    if isRoot {
                        progress.line(phaseName + String(format: "epoch %3d/%d  loss %.6f  %7.0f samples/s  %6.1f s  (allreduce %.1f%%)",
                                             r.epoch, epochs, r.meanLoss, r.samplesPerSecond, r.seconds,
                                             100 * r.reduceSeconds / max(r.seconds, 1e-9)))
                    }
                    // Evaluation: every rank scores its share of the test set; rank 0 writes the outputs.
                    var metrics: EvalMetrics? = nil
                    var grid: GrayImage? = nil
                    if let evaluator, epoch % evalEvery == 0 || epoch == epochs {
                        let evalStart = Date()
                        evaluator.setPhase(phase)
                        metrics = evaluator.evaluate()
                        if isRoot {
                            grid = Grid.make(evaluator.sampleImages(columns: gridColumns), height: data.height, width: data.width, columns: gridColumns)
                            progress.line("  " + metrics!.summary + String(format: "  %.1f s", Date().timeIntervalSince(evalStart)))
                        }
                    }
                    try outputs?.epochEnd(r, step: trainer.position.globalStep, eval: metrics, grid: grid, worldSize: communicator.size)
                }
                // a stop after the very last step simply finishes; anywhere else it checkpoints and exits
                let lastStep = trainer.position.epoch > epochs && config.phaseEpochs[(phase + 1)...].allSatisfy { $0 == 0 }
                if r.stopped && !lastStep {
                    try saveCheckpoint()
                    if isRoot {
                        let p = trainer.position
                        progress.line("stopped by \(StopSignals.lastName) after step \(p.globalStep) (\(phaseName)epoch \(p.epoch), step \(p.stepInEpoch)/\(trainer.stepsPerEpoch)); checkpoint in \(checkpoints)", always: true)
                        progress.line("resume with: dae-dist train --run-dir \(directory) --resume auto (and the same settings)", always: true)
                    }
                    communicator.barrier()
                    return
                }
                // epoch ends, and --checkpoint-every steps that fall on an epoch's last step (saved
                // here, after the position has moved to the next epoch)
                if completed && (!noEpochCheckpoints || (checkpointEvery > 0 && trainer.position.globalStep % checkpointEvery == 0)) {
                    try saveCheckpoint()
                }
                if trainer.advancePhase() && isRoot && !trainer.finished {
                    progress.line("\(config.phaseName(trainer.position.phase))begins: \(trainer.trainable.count) parameters train, fresh Adam", always: false)
                }
            }
            if isRoot {
                let weights = (directory as NSString).appendingPathComponent("model.safetensors")
                try trainer.saveWeights(to: weights)
                say("wrote \(weights); report: \((directory as NSString).appendingPathComponent("report.html"))")
            }
            communicator.barrier()
        }
    }

    func defaultRunDirectory() -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return "runs/" + formatter.string(from: Date())
    }
}
