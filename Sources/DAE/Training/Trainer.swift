// The steps of training, data-parallel (TrainingRun.swift drives them: epochs, phases, evaluation,
// checkpoints). Follow one optimizer step through `step(...)`, in three stages: the step engine
// (StepEngine.swift: 2-6), the gradient reduction (GradientReduction.swift: 6-7) and the update
// (UpdateStage.swift: 8):
//   1. its samples: positions first ..< first+n of the epoch's order keyed by (seed, epoch) (a
//      permutation of the images, or with patches the images their crops come from: Patches.swift),
//      cut into micro-batches that do not depend on the world size (StepPlan); this rank takes a
//      contiguous run of them, and each of its worker threads takes the next one not yet taken
//   2. per micro-batch, on a worker: assemble clean samples (whole images or crops, x/255) and
//      their corrupted copies, the noise keyed by (seed, epoch, sample)
//   3. forward: output = the model's reconstruction of the noisy samples
//   4. loss against the clean images, and dL/dz of the *global* batch mean
//   5. backward: the micro-batch's gradient in the worker's flat gradient buffer
//   6. exact mode: rounded to 64-bit fixed point and added to the rank's integer accumulator
//      (ExactSum, shared with the linear probe; the workers lock a block of it at a time).
//      A model that runs layer by layer (the stacked model) instead runs the rank's
//      micro-batches in one pass, in lockstep, and adds each layer's gradient a chunk at a time
//      as soon as it is final, while it is in cache; the rank's threads as a team on one replica,
//      each with its share of every layer's features and chunks (tied weights: a replica and a
//      part of the micro-batches per thread) (runLockstepWorker); the bits are those of a pass
//      per micro-batch (StackedDenoiser.swift says how)
//   7. one integer allreduce of the accumulator over all ranks (with each
//      micro-batch's loss, the overflow count and the stop requests riding along); back to Float.
//      With several ranks, in two buckets: the decoder's gradients (the tail of the parameters)
//      are final once every worker has run its last micro-batch's decoder backward; the worker
//      that completes them starts their allreduce (non-blocking) and the workers' next layers
//      let it progress, so it travels while the encoder's backward still computes (the overlap)
//   8. Adam: the same update on every rank, one pass over the flat parameter buffer (the
//      conversion back to Float and 8 split among the rank's threads by parts of the buffer,
//      block by block). With --clip-grad-norm the conversion runs first over the whole buffer,
//      then the global norm (clipCoefficient), then Adam with the gradient scaled by it
// Only the phase's trainable slice of the parameters is accumulated, reduced and updated: all of
// them for the convolutional model, one layer's during a stacked model's pre-training phase.
// A stacked model's phases run one after another in TrainingRun's loop (`advancePhase`); each
// starts with a fresh Adam, as a new torch.optim.Adam over that layer's parameters would.
// Fast mode (--reduce fast) replaces 2-7 with one forward/backward per worker over its part of the
// rank's share of the batch, the workers' gradients summed in Float in worker order, and a float
// allreduce (the decoder's started during the encoder's backward, as in 7); on one rank Adam's
// kernel sums them as it reads them. The stacked model runs instead as a team: the rank's threads
// share one replica, each computing its part of every layer's features (Team.swift, runFastWorker).
// Workers, their threads (WorkerPool), buffers and the optimizer are built once; the loop itself
// allocates nothing. The reduced gradient is whole before the update stage runs Adam (exact mode
// fuses the conversion from fixed point into Adam's pass only when nothing needs the whole
// gradient first: with --clip-grad-norm it does not).

import Foundation
import Synchronization

public final class Trainer: @unchecked Sendable {
    public let config: TrainConfig
    public let data: Dataset
    /// What a sample is: a whole image of `data`, or a random crop of one (Patches.swift).
    public let samples: TrainingSamples
    public let communicator: Communicator
    public let params: FloatBuffer       // the one copy of the parameters (workers read it)
    public let grads: FloatBuffer        // the reduced gradient of the global batch mean loss (fast mode on one rank: unused, Adam sums the workers' buffers)
    public let optimizer: Adam
    public let layout: ParameterLayout
    let workers: [Worker]
    /// Exact mode's reduction: the rank's fixed-point accumulator, which is the buffer reduced
    /// over the ranks [a loss slot per micro-batch | overflow | stop | trainable params].
    let exactSum: ExactSum
    var order: [Int32] = []              // the image of each sample of the epoch, in visiting order
    var orderEpoch = 0                   // which epoch `order` holds
    public internal(set) var position = TrainingPosition()   // set by steps and by restore (TrainerState.swift)
    /// Polled once per step; any rank answering true stops every rank after that same step
    /// (the answers ride along in the step's allreduce). Wired to SIGTERM/SIGINT/SIGUSR1 by the CLI.
    public var stopRequested: @Sendable () -> Bool = { false }
    var stopAgreed = false
    /// What the workers do in the current step, and the closure that runs worker w (made once,
    /// so that a step allocates nothing).
    struct WorkerTask {
        var plan = StepPlan(first: 0, count: 1, microBatch: 1)
        var epoch = 0
        var microBatches = 0..<0
        var meanOver = 1
        var limit = 0.0
        var positions = 0..<0          // fast mode: the rank's share of the batch
    }
    var task = WorkerTask()
    let nextMicroBatch = Atomic<Int>(0)    // the next micro-batch of task.microBatches to take
    /// Overlap of the reduction with the backward (several ranks): reduce the decoder's gradients
    /// as soon as they are final, while the encoder's backward runs. In exact mode it changes no
    /// bit (integer sums); off, the step reduces everything in one allreduce at its end.
    public var overlapReduction = true
    /// This step's bucket split, relative to the trainable slice (nil: one bucket).
    var split: Int? = nil
    let decoderFinal = Atomic<Int>(0)      // workers whose share of the decoder's gradients is final
    let tailStarted = Atomic<Bool>(false)  // the decoder bucket's allreduce is in flight
    let inMPI = Atomic<Bool>(false)        // a worker is in MPI_Test (they take turns)
    var adamStep = Adam.StepConstants()
    /// The pool's jobs, made once: worker w's micro-batches, and part w of the conversion and
    /// update.
    var workerBody: (@Sendable (Int) -> Void)? = nil
    var updateBody: (@Sendable (Int) -> Void)? = nil
    var drainBody: (@Sendable (Int) -> Void)? = nil        // with clipping: the conversion alone
    var adamBody: (@Sendable (Int) -> Void)? = nil         // with clipping: Adam from `grads`
    var gatherAllBody: (@Sendable (Int) -> Void)? = nil    // fast mode, one rank, with clipping
    var fastWorkerBody: (@Sendable (Int) -> Void)? = nil
    var fastGatherBody: (@Sendable (Int) -> Void)? = nil
    var fastUpdateBody: (@Sendable (Int) -> Void)? = nil
    /// Fast mode: each worker's summed loss of the step, and the gradients of the workers that
    /// had samples in it (the first `busyWorkers` entries, in worker order), which one rank's Adam
    /// sums as it reads them.
    let workerLoss: UnsafeMutablePointer<Double>
    let busyGradients: UnsafeMutablePointer<UnsafePointer<Float>>
    var busyWorkers = 0
    /// A model that runs layer by layer (ModelSpec.runsLayerByLayer; in exact mode with untied
    /// weights) and several threads: the pool's threads run the one worker's replica together,
    /// each its part of every layer; nil: a replica per thread.
    let team: SpinBarrier?
    /// This rank's threads, the workers (each with single-threaded BLAS). The evaluator runs on
    /// the same pool between steps.
    public let pool: WorkerPool
    /// Where a step's time goes (`dae-dist bench --what phases`); nil, and free, in training.
    /// Meaningful with one worker thread, whose layers then time themselves too.
    public var profile: StepProfile? = nil {
        didSet { (workers[0].model as? ConvDenoiser)?.phaseSeconds = profile?.layers }
    }

    /// `threads` is this rank's share of the cores: its worker threads, each with single-threaded
    /// BLAS (in fast mode no more than the rank's share of the batch has samples).
    public init(config: TrainConfig, data: Dataset, communicator: Communicator = SingleProcess(), threads: Int = 1) throws(DAEError) {
        try config.validate()
        self.config = config
        self.data = data
        self.communicator = communicator
        let samples = TrainingSamples(data: data, patches: config.patches, seed: config.seed)
        self.samples = samples
        try samples.check()
        let size = communicator.size, perEpoch = samples.perEpoch
        let fullBatch = min(config.batchSize, perEpoch)
        let microBatch = min(config.microBatch, fullBatch)
        // enough micro-batches (exact) or samples (fast) per step for every rank; else advice that works
        if let problem = batchSplitProblem(ranks: size, batchSize: config.batchSize, microBatch: config.microBatch,
                                           samples: perEpoch, reduce: config.reduce) {
            throw problem
        }
        try config.model.check(height: samples.height, width: samples.width, channels: samples.channels, source: data.source)
        let layout = config.model.makeLayout()
        let params = FloatBuffer(count: layout.count)
        self.layout = layout
        self.params = params
        grads = FloatBuffer(count: layout.count)
        initializeParameters(params, layout: layout, seed: config.seed)
        // Rank 0's parameters are the starting point of every replica.
        communicator.broadcast(UnsafeMutableRawPointer(params.pointer), count: params.count * 4, root: 0)
        optimizer = Adam(parameterCount: layout.count, config: config.adam)

        // Our threads, not OpenBLAS's, share the cores in both modes: each calls single-threaded
        // OpenBLAS on its own share (of the samples, or of a team's layer features), so the
        // elementwise layers run in parallel too and no product waits for OpenBLAS's threads;
        // at these sizes that outran OpenBLAS's threading (docs/benchmarks.md).
        BLASThreads.set(1)
        let threadCount = max(1, threads)
        // the stacked model: a team of the rank's threads on one replica (fast mode; exact mode
        // unless its weights are tied: their micro-batches run one after another, a replica per thread)
        var untied = true
        if let spec = config.model.stackedSpec { untied = !spec.tied }
        let teamed = config.model.runsLayerByLayer && threadCount > 1 && (config.reduce == .fast || untied)
        switch config.reduce {
        case .exact:
            // a model that runs layer by layer takes a worker's (or the team's) micro-batches in
            // one pass (runLockstepWorker)
            let perRank = ((fullBatch + microBatch - 1) / microBatch + size - 1) / size
            let count = teamed ? 1 : threadCount
            let capacity = config.model.runsLayerByLayer ? microBatch * ((perRank + count - 1) / count) : microBatch
            workers = (0..<count).map { _ in
                Worker(spec: config.model, samples: samples, capacity: capacity, parameters: params)
            }
        case .fast:
            let share = (fullBatch + size - 1) / size
            let count = config.model.runsLayerByLayer ? 1 : min(threadCount, share)
            workers = (0..<count).map { _ in
                Worker(spec: config.model, samples: samples, capacity: (share + count - 1) / count, parameters: params)
            }
        }
        team = teamed ? SpinBarrier(parties: threadCount) : nil
        pool = WorkerPool(threads: team?.parties ?? workers.count)
        workerLoss = .allocate(capacity: pool.count)
        workerLoss.initialize(repeating: 0, count: pool.count)
        busyGradients = .allocate(capacity: workers.count)
        busyGradients.initialize(from: workers.map { UnsafePointer($0.model.grads.pointer) }, count: workers.count)
        exactSum = ExactSum(capacity: layout.count, extras: (fullBatch + microBatch - 1) / microBatch, workers: pool.count)
        order.reserveCapacity(perEpoch)
        let lockstep = config.model.runsLayerByLayer
        workerBody = { [unowned self] w in if lockstep { self.runLockstepWorker(w) } else { self.runWorker(w) } }
        updateBody = { [unowned self] w in self.convertAndUpdate(part: w) }
        drainBody = { [unowned self] w in self.convert(part: w) }
        adamBody = { [unowned self] w in self.update(part: w) }
        gatherAllBody = { [unowned self] w in
            self.sumWorkerGradients(alignedShare(self.trainable.count, part: w, of: self.pool.count), into: self.grads.pointer + self.trainable.lowerBound)
        }
        fastWorkerBody = { [unowned self] w in self.runFastWorker(w) }
        fastGatherBody = { [unowned self] w in self.gatherHead(part: w) }
        fastUpdateBody = { [unowned self] w in self.fastUpdate(part: w) }
        _ = advancePhase()
    }

    deinit { workerLoss.deallocate(); busyGradients.deallocate() }

    /// The parameters the current phase trains.
    public var trainable: Range<Int> { workers[0].model.trainable }
    /// True once every phase is done.
    public var finished: Bool { position.phase >= config.phaseEpochs.count }
    /// The epochs of the phase in progress.
    public var phaseEpochs: Int { finished ? 0 : config.phaseEpochs[position.phase] }

    /// Moves past finished (or empty) phases; entering a new phase starts a fresh optimizer and
    /// points the workers' networks at it. Returns true when a new phase began. Called at every
    /// epoch boundary by the training loop and after a restore, so that a resumed run takes the
    /// same path as an uninterrupted one.
    @discardableResult
    public func advancePhase() -> Bool {
        var moved = false
        while !finished && position.epoch > config.phaseEpochs[position.phase] {
            position.phase += 1
            position.epoch = 1
            position.stepInEpoch = 0
            position.epochLossSum = 0
            if !finished { optimizer.reset() }
            moved = true
        }
        if !finished { for worker in workers { worker.model.setPhase(position.phase) } }
        return moved
    }

    /// The noise and shuffle key for the phase's epoch: phase 0 keeps the plain epoch number, so
    /// the convolutional model's streams are those of (seed, epoch); later phases draw new ones.
    var randomEpoch: Int { position.phase << 20 + position.epoch }

    public var stepsPerEpoch: Int { (samples.perEpoch + config.batchSize - 1) / config.batchSize }
    /// Network replicas (one per worker thread, or one for a team).
    public var workerCount: Int { workers.count }
    /// Whether the rank's threads run one replica together (the stacked model; see `team`).
    public var runsAsTeam: Bool { team != nil }
    public var effectiveMicroBatch: Int { min(config.microBatch, min(config.batchSize, samples.perEpoch)) }

    /// Trains epoch `position.epoch` from where it stands (its start, or mid-epoch after a resume)
    /// to its end, or until a stop is agreed. `afterStep` runs after every step on every rank
    /// (checkpoints). Throws if the loss stops being finite.
    public func trainEpoch(afterStep: (Trainer) throws(DAEError) -> Void = { _ throws(DAEError) in }) throws(DAEError) -> EpochResult {
        let start = Date()
        let epoch = position.epoch, keyEpoch = randomEpoch, phase = position.phase
        let phaseName = config.phaseName(phase)
        var reduceSeconds = 0.0, samples = 0
        if orderEpoch != keyEpoch {
            self.samples.epochOrder(epoch: keyEpoch, into: &order)
            orderEpoch = keyEpoch
        }
        while position.stepInEpoch < stepsPerEpoch {
            try FaultInjection.current.beforeStep(rank: communicator.rank, step: position.globalStep + 1)
            let first = position.stepInEpoch * config.batchSize
            let plan = StepPlan(first: first, count: min(config.batchSize, self.samples.perEpoch - first), microBatch: effectiveMicroBatch)
            let batchLoss = try self.step(plan, epoch: keyEpoch, reduceSeconds: &reduceSeconds)
            guard batchLoss.isFinite else {
                throw .numeric("training diverged at \(phaseName)epoch \(epoch), step \(position.stepInEpoch + 1): loss is \(batchLoss); try a smaller --lr")
            }
            position.stepInEpoch += 1
            position.globalStep += 1
            position.samplesSeen += plan.count
            position.epochLossSum += batchLoss
            samples += plan.count
            try afterStep(self)
            if stopAgreed && position.stepInEpoch < stepsPerEpoch {
                return EpochResult(phase: phase, phaseName: phaseName, epoch: epoch, meanLoss: position.epochLossSum / Double(position.stepInEpoch), samples: samples,
                                   seconds: Date().timeIntervalSince(start), reduceSeconds: reduceSeconds, stopped: true)
            }
        }
        let result = EpochResult(phase: phase, phaseName: phaseName, epoch: epoch, meanLoss: position.epochLossSum / Double(stepsPerEpoch), samples: samples,
                                 seconds: Date().timeIntervalSince(start), reduceSeconds: reduceSeconds, stopped: stopAgreed)
        position.epoch += 1
        position.stepInEpoch = 0
        position.epochLossSum = 0
        return result
    }

    /// One optimizer step over the global batch `plan`: forward and backward of this rank's share
    /// on its threads (StepEngine.swift), the gradient reduced over the ranks
    /// (GradientReduction.swift), the update (UpdateStage.swift). Returns the batch loss (a
    /// per-value mean). `epoch` is the random key of the phase's epoch (see `randomEpoch`).
    func step(_ plan: StepPlan, epoch: Int, reduceSeconds: inout Double) throws(DAEError) -> Double {
        switch config.reduce {
        case .exact:
            let loss = try exactGradient(plan, epoch: epoch, reduceSeconds: &reduceSeconds)   // 2-7
            exactUpdate()                                                                      // 8
            return loss
        case .fast:
            let loss = fastGradient(plan, epoch: epoch, reduceSeconds: &reduceSeconds)
            fastUpdate()
            return loss
        }
    }

}
