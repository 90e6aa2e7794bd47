// A whole training run, from "configuration + data + communicator" to the final weights. Follow a
// run through `run()`:
//   1. resume (optional): rank 0 reads the newest valid checkpoint (or the one named), checks its
//      settings against this run's, and broadcasts its state to every rank
//   2. phase by phase (one for the convolutional model; a stacked model's layers, then
//      fine-tuning), epoch by epoch: Trainer.trainEpoch runs the steps (Trainer.swift follows one)
//   3. after every step: the step's event, and a checkpoint every --checkpoint-every steps
//   4. at an epoch's end: evaluation when due (every rank scores its share of the test set), the
//      epoch's event, the epoch checkpoint; keep-K pruning after every checkpoint
//   5. a stop request (a signal on any rank, agreed in a step's allreduce): a checkpoint, the
//      stopped event, return
//   6. the final weights (rank 0), the finished event
// Observers (TrainingEvents.swift) see it all on rank 0: the command line prints progress, and
// RunOutputs writes config.json, metrics.jsonl, samples/, tensorboard/ and report.html.

import Foundation

/// How a run is driven around its steps: where it writes, how often it checkpoints and evaluates.
public struct RunSettings: Sendable {
    /// The run directory: checkpoints/ and model.safetensors go here (nil: nothing is written).
    public var directory: String?
    public var resume: ResumeRequest? = nil
    /// Also checkpoint every N steps (0: only at epoch ends).
    public var checkpointEvery = 0
    /// Checkpoint at every epoch's end.
    public var epochCheckpoints = true
    /// Checkpoints kept in <directory>/checkpoints (the newest).
    public var keep = 3
    /// Evaluate every E epochs and after the last one of a phase (0: never; needs test data).
    public var evalEvery = 1
    /// Test images per row of the sample grid.
    public var gridColumns = 10
    /// A fresh start (no resume) in a directory holding an earlier run clears it instead of refusing.
    public var overwrite = false
    /// On several ranks: reduce the decoder's gradients while the encoder's backward runs
    /// (Trainer.overlapReduction). In exact mode the same bits either way; off, for measuring
    /// what it saves.
    public var overlapReduction = true

    public init(directory: String?) { self.directory = directory }

    /// The command line's default run directory: runs/slurm-<job id> in a Slurm job (the id stays
    /// the same across requeues, so a requeued job continues in it), else runs/<UTC date-time>-<pid>
    /// (two jobs started in the same second still get two directories).
    public static func defaultDirectory(now: Date = Date(), environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let job = environment["SLURM_JOB_ID"], !job.isEmpty, job.allSatisfy(\.isNumber) { return "runs/slurm-" + job }
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return "runs/" + formatter.string(from: now) + "-\(getpid())"
    }

    /// Rejects values no run could use; each error names its flag.
    public func validate() throws(DAEError) {
        if directory?.isEmpty == true { throw .badFlag("--run-dir", "is empty; pass a folder for the run's outputs, or leave --run-dir out for runs/<date-time>") }
        guard checkpointEvery >= 0 else { throw .badFlag("--checkpoint-every", "must be 0 or more, got \(checkpointEvery)") }
        guard keep >= 1 else { throw .badFlag("--keep", "must be at least 1, got \(keep)") }
        guard evalEvery >= 0 else { throw .badFlag("--eval-every", "must be 0 or more, got \(evalEvery)") }
        guard (1...1000).contains(gridColumns) else { throw .badFlag("--grid-columns", "must be between 1 and 1000, got \(gridColumns)") }
        if resume == .auto && directory == nil {
            throw .badFlag("--resume", "'auto' looks in <run-dir>/checkpoints: pass the --run-dir of the run to continue")
        }
        if overwrite && resume != nil { throw .badFlag("--overwrite", "clears the run directory, so it cannot be combined with --resume") }
    }
}

extension RunSettings {
    /// A --resume PATH that is not there, named before any data is loaded (rank 0, which reads it).
    public func checkResumeFile() throws(DAEError) {
        guard case .path(let path) = resume else { return }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue else {
            let why = isFolder.boolValue ? "is a folder" : unreadableReason(path)
            throw .badFlag("--resume", "\(path): \(why); pass a checkpoint file (<run-dir>/checkpoints/step-N.safetensors), or --resume auto with the run's --run-dir")
        }
    }
}

public enum ResumeRequest: Sendable, Equatable {
    /// The newest valid checkpoint in <run-dir>/checkpoints, or a fresh start when there is none.
    case auto
    /// This checkpoint file, or an error.
    case path(String)

    public init(_ text: String) { self = text == "auto" ? .auto : .path(text) }
}

/// How `run()` ended.
public enum RunOutcome: Sendable, Equatable {
    case finished
    case stopped
}

public final class TrainingRun {
    public let config: TrainConfig
    public let settings: RunSettings
    public let trainer: Trainer
    public let communicator: Communicator
    public let data: Dataset
    /// This rank's threads, as given.
    public let threads: Int
    /// Scores the model at epoch ends (nil without test data or with evalEvery 0).
    public let evaluator: Evaluator?
    public var observers: [TrainingObserver] = []
    /// Polled once per step on every rank; any rank answering true stops all of them after that step.
    public var stopRequested: @Sendable () -> Bool {
        get { trainer.stopRequested }
        set { trainer.stopRequested = newValue }
    }
    let isRoot: Bool
    let fingerprint: UInt32          // of the training data (rank 0), stored in checkpoints
    var lastSaved = -1               // the global step of the last checkpoint written
    var largestWeightAtStart: Float? = nil   // rank 0: for the divergence warning (endEpoch)
    static let divergingWeight: Float = 1e4, divergingGrowth: Float = 100

    /// `test`: the evaluation set (same image size as `data`). `threads`: this rank's share of the
    /// cores (see Trainer.init).
    public init(config: TrainConfig, settings: RunSettings, data: Dataset, test: Dataset?,
                communicator: Communicator = SingleProcess(), threads: Int = 1) throws(DAEError) {
        try settings.validate()
        self.config = config
        self.settings = settings
        self.data = data
        self.communicator = communicator
        self.threads = threads
        isRoot = communicator.rank == 0
        trainer = try Trainer(config: config, data: data, communicator: communicator, threads: threads)
        trainer.overlapReduction = settings.overlapReduction
        fingerprint = isRoot ? Checkpoint.fingerprint(data) : 0
        if var test, settings.evalEvery > 0 {
            if let patches = config.patches {
                // fixed crops of the validation images, the same every epoch (Patches.swift)
                try TrainingSamples(data: test, patches: patches, seed: config.seed).check()
                test = test.fixedCrops(size: patches.size, count: max(test.count, Self.evalPatches))
            } else {
                try test.requireOneSize(flagHint: "--patch")
                guard test.height == data.height && test.width == data.width && test.channels == data.channels else {
                    throw .data(path: test.source, problem: "test images are \(test.channels)x\(test.height)x\(test.width) but training images \(data.channels)x\(data.height)x\(data.width)")
                }
            }
            // the trainer's worker threads, between steps
            evaluator = Evaluator(model: config.model, data: test, noise: config.noise, seed: config.seed, parameters: trainer.params,
                                  communicator: communicator, pool: trainer.pool)
        } else {
            evaluator = nil
        }
    }

    /// Evaluation crops when training on patches: at least this many, and one per validation image.
    public static let evalPatches = 1000

    /// <directory>/checkpoints.
    public var checkpointDirectory: String? { settings.directory.map { ($0 as NSString).appendingPathComponent("checkpoints") } }

    func emit(_ event: TrainingEvent) throws(DAEError) {
        guard isRoot else { return }
        for observer in observers { try observer.training(event) }
    }

    /// Trains to the end of the last phase, or until a stop request. Every rank calls it.
    @discardableResult
    public func run() throws(DAEError) -> RunOutcome {
        // rank 0 owns the run directory for the whole run; a fresh start must not mix two runs
        var lock: RunDirectoryLock? = nil
        if isRoot, let directory = settings.directory { lock = try takeRunDirectory(directory) }
        defer { withExtendedLifetime(lock) {} }
        if let request = settings.resume { try resume(request, directory: lock) }
        if trainer.finished {      // resumed from the end of training
            try emit(.alreadyTrained(position: trainer.position, epochs: config.phaseEpochs.last ?? 0))
            try finish()
            return .finished
        }
        // a stop requested before the first step (during start-up): nothing to checkpoint
        if trainer.agreeOnStop() {
            try emit(.stopped(position: trainer.position, stepsPerEpoch: trainer.stepsPerEpoch, checkpoint: nil))
            communicator.barrier()
            return .stopped
        }
        if isRoot { largestWeightAtStart = trainer.largestWeight() }
        let resumedAfter = trainer.position.globalStep > 0 ? trainer.position.globalStep : nil
        try emit(.began(BeginReport(resumedAfter: resumedAfter, position: trainer.position)))
        while !trainer.finished {
            let phase = trainer.position.phase, epoch = trainer.position.epoch, phaseEpochs = trainer.phaseEpochs
            let phaseName = config.phaseName(phase)       // made once: a step allocates nothing
            let epochStart = Date(), firstStep = trainer.position.stepInEpoch
            var samplesThisRun = 0, lossSeen = trainer.position.epochLossSum
            let result = try trainer.trainEpoch { t throws(DAEError) in
                let p = t.position
                samplesThisRun += min(config.batchSize, t.samples.perEpoch - (p.stepInEpoch - 1) * config.batchSize)
                try emit(.stepDone(StepReport(position: p, phaseName: phaseName, phaseEpochs: phaseEpochs,
                                              stepsPerEpoch: t.stepsPerEpoch, batchLoss: p.epochLossSum - lossSeen,
                                              stepsThisRun: p.stepInEpoch - firstStep, samplesThisRun: samplesThisRun,
                                              secondsThisRun: Date().timeIntervalSince(epochStart))))
                lossSeen = p.epochLossSum
                if settings.checkpointEvery > 0, p.globalStep % settings.checkpointEvery == 0, p.stepInEpoch < t.stepsPerEpoch {
                    try saveCheckpoint()
                }
            }
            let completed = trainer.position.stepInEpoch == 0
            if completed { try endEpoch(result, phase: phase, epoch: epoch, phaseEpochs: phaseEpochs) }
            // a stop after the very last step simply finishes; anywhere else it checkpoints and returns
            let lastStep = trainer.position.epoch > phaseEpochs && config.phaseEpochs[(phase + 1)...].allSatisfy { $0 == 0 }
            if result.stopped && !lastStep {
                let path = try saveCheckpoint()
                try emit(.stopped(position: trainer.position, stepsPerEpoch: trainer.stepsPerEpoch, checkpoint: path))
                communicator.barrier()
                return .stopped
            }
            // epoch ends, and --checkpoint-every steps that fall on an epoch's last step (saved
            // here, after the position has moved to the next epoch)
            let every = settings.checkpointEvery
            if completed && (settings.epochCheckpoints || (every > 0 && trainer.position.globalStep % every == 0)) {
                try saveCheckpoint()
            }
            if trainer.advancePhase() && !trainer.finished {
                try emit(.phaseBegan(phase: trainer.position.phase, name: config.phaseName(trainer.position.phase),
                                     trainableParameters: trainer.trainable.count))
            }
        }
        try finish()
        return .finished
    }

    /// Rank 0 takes the run directory's lock and checks that this start loses nothing that is
    /// saved there (docs/run-directory.md, "One run per directory"):
    ///   - a fresh start (no --resume) needs a directory that holds no run, or --overwrite, which
    ///     removes the earlier run's files (RunDirectoryLock.clearEarlierRun);
    ///   - --resume PATH with a checkpoint of another directory (branching a run) needs a directory
    ///     that holds no run: this one's checkpoints would be pruned, its config.json and
    ///     model.safetensors replaced by another lineage's;
    ///   - --resume auto is checked in resume(): a directory with checkpoints or final weights of
    ///     which none can be resumed is refused rather than trained over.
    func takeRunDirectory(_ directory: String) throws(DAEError) -> RunDirectoryLock {
        let lock = try RunDirectoryLock(directory: directory)
        lock.removeStaleTemporaries()
        let held = lock.runFiles()
        switch settings.resume {
        case nil:
            guard let earlier = held.first else { break }
            guard settings.overwrite else {
                throw .badFlag("--run-dir", "\(directory) holds an earlier run (\(earlier)); continue it with --resume auto, start afresh in another --run-dir, or pass --overwrite to replace it")
            }
            try lock.clearEarlierRun()
        case .path(let path):
            guard let own = held.first, !lock.owns(checkpoint: path) else { break }
            let origin = RunDirectoryLock.runDirectory(ofCheckpoint: path).map { "pass --run-dir \($0) to continue its own run, or " } ?? ""
            throw .badFlag("--resume", "\(path) is not a checkpoint of \(directory), which holds a run of its own (\(own)); \(origin)start from it in a new --run-dir (nothing was changed)")
        case .auto:
            break
        }
        return lock
    }

    /// The final weights (rank 0, never non-finite ones), the finished event, every rank done.
    func finish() throws(DAEError) {
        var weights: String? = nil
        if isRoot, let directory = settings.directory {
            weights = (directory as NSString).appendingPathComponent("model.safetensors")
            try trainer.checkFinite()
            try trainer.saveWeights(to: weights!)
        }
        try emit(.finished(weights: weights))
        communicator.barrier()
    }

    /// An epoch's end: evaluation when due (on every rank), then its event.
    func endEpoch(_ result: EpochResult, phase: Int, epoch: Int, phaseEpochs: Int) throws(DAEError) {
        var report = EpochReport(result: result, phaseEpochs: phaseEpochs, globalStep: trainer.position.globalStep,
                                 worldSize: communicator.size)
        if let evaluator, epoch % settings.evalEvery == 0 || epoch == phaseEpochs {
            let start = Date()
            evaluator.setPhase(phase)
            report.eval = evaluator.evaluate()
            if isRoot {
                report.grid = Grid.make(evaluator.sampleImages(columns: settings.gridColumns), channels: evaluator.data.channels,
                                        height: evaluator.data.height, width: evaluator.data.width, columns: settings.gridColumns)
            }
            report.evalSeconds = Date().timeIntervalSince(start)
        }
        try emit(.epochEnded(report))
        // Weights far beyond any trained network's (and 100x their start) while the values are
        // still finite: what too large an --lr does before it overflows, or instead of it.
        if let start = largestWeightAtStart {
            let largest = trainer.largestWeight()
            if largest > Self.divergingWeight && largest > Self.divergingGrowth * max(start, 1e-3) {
                try emit(.diverging(globalStep: trainer.position.globalStep, largestWeight: largest, atStart: start))
                largestWeightAtStart = nil          // once per run
            }
        }
    }

    /// Rank 0 writes a checkpoint of the current position (once per position) and prunes old ones;
    /// returns its path. Other ranks, and runs without a directory, write nothing.
    @discardableResult
    func saveCheckpoint() throws(DAEError) -> String? {
        guard isRoot, let folder = checkpointDirectory else { return nil }
        let path = (folder as NSString).appendingPathComponent(Checkpoint.fileName(globalStep: trainer.position.globalStep))
        guard trainer.position.globalStep != lastSaved else { return path }
        try trainer.checkFinite()          // a diverged state is never written
        try Checkpoint.save(trainer, dataFingerprint: fingerprint, to: path)
        // keep-K: the one just written, and the newest others. Only this timeline's checkpoints
        // (at or before this step) are pruned: one past it was skipped on resume as damaged and
        // is left for the user, until this run writes that step again.
        let step = trainer.position.globalStep
        let earlier = Checkpoint.list(in: folder).filter { $0 != path && (Checkpoint.globalStep(ofFile: $0) ?? Int.max) < step }
        for old in earlier.dropFirst(settings.keep - 1) {
            try? FileManager.default.removeItem(atPath: old)
        }
        lastSaved = trainer.position.globalStep
        try emit(.checkpointWritten(path: path, position: trainer.position))
        return path
    }

    /// A checkpoint beyond the end this run asks for (fewer --epochs than it has trained) is
    /// refused: resuming it could only mislabel its weights. One exactly at the end is fine (the
    /// run then has nothing to do).
    func checkNotPastTheEnd(_ p: TrainingPosition, path: String) throws(DAEError) {
        let epochs = config.phaseEpochs[p.phase], steps = trainer.stepsPerEpoch
        let completed = p.epoch - 1 + (p.stepInEpoch >= steps ? 1 : 0)
        let inEpoch = p.stepInEpoch > 0 && p.stepInEpoch < steps
        guard completed > epochs || (completed == epochs && inEpoch) else { return }
        let flag = p.phase == config.phaseEpochs.count - 1 ? "--epochs" : "--pretrain-epochs"
        let reached = inEpoch ? "epoch \(p.epoch) (step \(p.stepInEpoch)/\(steps))" : "the end of epoch \(completed)"
        throw .badFlag(flag, "the checkpoint \(path) has trained \(config.phaseName(p.phase))to \(reached), past the \(epochs) epochs asked for; pass \(flag) \(completed + (inEpoch ? 1 : 0)) or more to continue it")
    }

    /// An error's text without the path it starts with (the event names the path).
    static func problem(_ error: DAEError) -> String {
        if case .checkpoint(_, let problem) = error { return problem }
        return "\(error)"
    }

    /// Rank 0 reads and validates the checkpoint(s), then every rank receives the state.
    /// `directory`: rank 0's hold on the run directory (nil on other ranks and without one).
    func resume(_ request: ResumeRequest, directory: RunDirectoryLock?) throws(DAEError) {
        var found: Int32 = 0
        var skipped: [String] = []
        if isRoot {
            let candidates: [String]
            switch request {
            case .auto: candidates = checkpointDirectory.map { Checkpoint.list(in: $0) } ?? []
            case .path(let path): candidates = [path]
            }
            for path in candidates {
                do {
                    let state = try Checkpoint.load(path: path, layout: trainer.layout) { [config, data, fingerprint] metadata throws(DAEError) in
                        try Checkpoint.checkSettings(metadata, path: path, config: config, data: data, dataFingerprint: fingerprint)
                    }
                    try Checkpoint.checkCompatible(state, path: path, config: config, data: data,
                                                   dataFingerprint: fingerprint, stepsPerEpoch: trainer.stepsPerEpoch,
                                                   samplesPerEpoch: trainer.samples.perEpoch)
                    try checkNotPastTheEnd(state.position, path: path)
                    try trainer.restore(state, path: path)
                    found = 1
                    if !trainer.finished {
                        try emit(.resumed(from: path, position: trainer.position, stepsPerEpoch: trainer.stepsPerEpoch))
                    }
                    break
                } catch {
                    if request != .auto { throw error }
                    if case .badFlag = error { throw error }      // a settings mismatch is not skipped
                    // a newer dae-dist's checkpoint is not damaged: skipping it would train over it
                    if let version = Checkpoint.newerFormatVersion(path: path) {
                        throw .checkpoint(path: path, problem: "was written by a dae-dist with checkpoint format version \(version) (this one reads \(Checkpoint.version)); resume with that version (nothing was changed)")
                    }
                    skipped.append(path)
                    try emit(.skippedCheckpoint(path: path, problem: Self.problem(error)))
                }
            }
            if found == 0, let directory {
                // only a directory with nothing trained in it starts afresh: a finished run's
                // weights, or checkpoints that all failed, are never trained over
                if let kept = directory.trainedState().first {
                    let what = skipped.isEmpty ? "no checkpoint to continue from (\(kept) is the final weights of a finished run)"
                                               : "no checkpoint that can be resumed (\(skipped.count) skipped, see the warnings above)"
                    throw .badFlag("--resume", "\(directory.directory) holds a run but \(what); nothing was changed. Move those files away, start in a new --run-dir, or pass --overwrite without --resume to replace the run")
                }
                try emit(.noCheckpoint(directory: checkpointDirectory ?? ""))
            }
        }
        communicator.broadcast(&found, count: 4, root: 0)
        if found == 1 { trainer.broadcastState() }
    }
}
