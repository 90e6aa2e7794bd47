// The steps of training, data-parallel (TrainingRun.swift drives them: epochs, phases, evaluation,
// checkpoints). Follow one optimizer step through `step(...)`:
//   1. its samples: positions first ..< first+n of the epoch's order keyed by (seed, epoch) (a
//      permutation of the images, or with patches the images their crops come from: Patches.swift),
//      cut into micro-batches that do not depend on the world size (StepPlan); this rank takes a
//      contiguous run of them, and each of its worker threads takes the next one not yet taken
//   2. per micro-batch, on a worker: assemble clean samples (whole images or crops, x/255) and
//      their corrupted copies, the noise keyed by (seed, epoch, sample)
//   3. forward: output = sigmoid(decoder(encoder(noisy)))
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
// allocates nothing.

import Foundation
import Synchronization

/// One thread's replica: reads the shared parameters, owns its activations and gradients. Workers
/// only write their own memory, their micro-batches' loss slots and (under its block locks) the
/// rank's integer accumulator.
final class Worker: @unchecked Sendable {
    let model: DenoisingNetwork
    /// The same network's layer-by-layer passes (a team, micro-batches in lockstep) for a model
    /// that runs layer by layer (the stacked model); nil for the others.
    let layered: LayerByLayerNetwork?
    let clean: FloatBuffer                          // [capacity, C, H, W] clean samples

    init(spec: ModelSpec, samples: TrainingSamples, capacity: Int, parameters: FloatBuffer) {
        model = spec.makeNetwork(height: samples.height, width: samples.width, capacity: capacity, parameters: parameters)
        layered = model as? LayerByLayerNetwork
        precondition(spec.runsLayerByLayer == (layered != nil), "\(spec.name): runsLayerByLayer and LayerByLayerNetwork disagree")
        clean = FloatBuffer(count: capacity * samples.sampleSize)
    }
}

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

    /// One optimizer step over the global batch `plan`; returns the batch loss (a per-value mean).
    /// `epoch` is the random key of the phase's epoch (see `randomEpoch`).
    func step(_ plan: StepPlan, epoch: Int, reduceSeconds: inout Double) throws(DAEError) -> Double {
        let pixelsPerBatch = plan.count * workers[0].model.inputSize
        let range = trainable, count = range.count
        let loss: Double
        switch config.reduce {
        case .exact:
            let mine = plan.microBatches(rank: communicator.rank, size: communicator.size)
            let m = plan.microBatches
            let limit = FixedPoint.limit(terms: m)
            // 2-6: the workers take this rank's micro-batches one at a time, whichever is free next
            // (see runWorker: the integer sums do not depend on who took which)
            task = WorkerTask(plan: plan, epoch: epoch, microBatches: mine, meanOver: pixelsPerBatch, limit: limit)
            nextMicroBatch.store(0, ordering: .relaxed)
            // micro-batches of other ranks contribute 0 to their loss slots (begin zeroes them)
            exactSum.begin(count: count, extras: m)
            split = overlapSplit(range)
            decoderFinal.store(0, ordering: .relaxed)
            tailStarted.store(false, ordering: .relaxed)
            pool.run(workerBody!)
            // 7: the rank's integer sum over the ranks; the loss slots, the overflow count and the
            // stop requests ride along (with the overlap, this is the head: the decoder's tail is
            // already on its way)
            let reduceStart = Date()
            exactSum.allreduce(over: communicator, stop: stopRequested(), headValues: split)
            reduceSeconds += Date().timeIntervalSince(reduceStart)
            stopAgreed = exactSum.stopRequested
            if exactSum.overflows != 0 {
                throw .numeric("a gradient exceeded the exact reduction's range (|g| <= \(limit)) at epoch \(epoch): training has diverged; lower --lr, or use --reduce fast")
            }
            // back to Float and 8: Adam, each thread a part of the parameters
            adamStep = optimizer.beginStep(lrFactor: lrFactorOfNextStep)
            let t = profile == nil ? 0 : monotonicSeconds()
            if let maxNorm = config.clipGradNorm {
                // the whole reduced gradient first, for its norm; then Adam (the fusion needs
                // Adam to start before the gradient is whole)
                pool.run(drainBody!)
                adamStep.gradScale = clipCoefficient(maxNorm: maxNorm)
                pool.run(adamBody!)
            } else {
                pool.run(updateBody!)
            }
            if let profile { profile.update += monotonicSeconds() - t }
            loss = exactSum.sumOfExtras() / Double(pixelsPerBatch)
        case .fast:
            // the workers' forward/backward, each over its part of this rank's share; with the
            // overlap, the last of them past the decoder sums the decoder's tail and starts its
            // float allreduce while the encoder's backward runs (runFastWorker)
            let positions = plan.positions(rank: communicator.rank, size: communicator.size)
            task = WorkerTask(plan: plan, epoch: epoch, meanOver: pixelsPerBatch, positions: positions)
            busyWorkers = 0
            for w in workers.indices where !fastPositions(worker: w).isEmpty {
                busyGradients[busyWorkers] = UnsafePointer(workers[w].model.grads.pointer)
                busyWorkers += 1
            }
            split = overlapSplit(range)
            decoderFinal.store(0, ordering: .relaxed)
            tailStarted.store(false, ordering: .relaxed)
            pool.run(fastWorkerBody!)
            var sum = 0.0
            for w in 0..<pool.count { sum += workerLoss[w] }
            var lossAndStop = (sum, stopRequested() ? 1.0 : 0.0)
            let reduceStart = Date()
            if communicator.size > 1 {
                // the head (all of it without the overlap): the workers' sum, then over the ranks
                pool.run(fastGatherBody!)
                communicator.allreduceSum(grads.pointer + range.lowerBound, count: split ?? count)
            }
            withUnsafeMutablePointer(to: &lossAndStop) {
                $0.withMemoryRebound(to: Double.self, capacity: 2) { communicator.allreduceSum($0, count: 2) }
            }
            communicator.finishPending()
            reduceSeconds += Date().timeIntervalSince(reduceStart)
            stopAgreed = lossAndStop.1 != 0
            loss = lossAndStop.0 / Double(pixelsPerBatch)
            // 8: the same update on every rank, each of the rank's threads a part of the parameters
            adamStep = optimizer.beginStep(lrFactor: lrFactorOfNextStep)
            if let maxNorm = config.clipGradNorm {
                // the workers' sum in `grads` (one rank: Adam would sum them as it reads), its norm
                if communicator.size == 1 { pool.run(gatherAllBody!) }
                adamStep.gradScale = clipCoefficient(maxNorm: maxNorm)
            }
            let t = profile == nil ? 0 : monotonicSeconds()
            pool.run(fastUpdateBody!)
            if let profile { profile.update += monotonicSeconds() - t }
        }
        return loss
    }

    /// The learning-rate schedule's factor for the optimizer's next step: the schedule spans the
    /// current phase's steps (a stacked model's phases each start a fresh Adam and schedule).
    var lrFactorOfNextStep: Double {
        config.lrSchedule.factor(step: optimizer.step + 1, of: phaseEpochs * stepsPerEpoch)
    }

    /// One worker's share of the current step: the next micro-batch of this rank's run not yet
    /// taken, until none is left. A worker slowed down (by the machine's other load, say) takes
    /// fewer; the bits do not change, since every micro-batch goes into an integer sum.
    func runWorker(_ w: Int) {
        let worker = workers[w], task = task
        let range = worker.model.trainable, split = split
        let grads = worker.model.grads.pointer + range.lowerBound
        var decoderMarked = false
        while true {
            let j = task.microBatches.lowerBound + nextMicroBatch.add(1, ordering: .relaxed).oldValue
            if j >= task.microBatches.upperBound { break }
            var tailAdded = false
            let sum = forwardBackward(worker, positions: task.plan.positions(ofMicroBatch: j),
                                      epoch: task.epoch, meanOver: task.meanOver) { decoderDone in
                guard let split, decoderDone else { return }
                if tailAdded { progressTail(); return }
                // this micro-batch's decoder gradients into the accumulator now; if no micro-batch
                // is left to take, they were this worker's last
                tailAdded = true
                exactSum.add(worker: w, values: grads + split, count: range.count - split, limit: task.limit, at: split)
                if nextMicroBatch.load(ordering: .relaxed) >= task.microBatches.count {
                    decoderMarked = true
                    markDecoderFinal(split)
                }
            }
            exactSum.setExtra(j, sum)                     // this micro-batch's loss slot
            let t = profile == nil ? 0 : monotonicSeconds()
            exactSum.add(worker: w, values: grads, count: split ?? range.count, limit: task.limit)
            if let profile { profile.fixedPoint += monotonicSeconds() - t }
        }
        if let split, !decoderMarked { markDecoderFinal(split) }
    }

    /// Exact mode with a model that runs layer by layer (the stacked model): the rank's
    /// micro-batches (without a team, worker w's contiguous part of them) in one pass, in
    /// lockstep (each layer over all of them before the next; the same products, so the same
    /// bits, as a pass per micro-batch). Each layer's gradient of a micro-batch goes into the accumulator a chunk at a
    /// time as soon as it is final, read from cache, and the chunk's part of the accumulator
    /// stays in cache over the micro-batches: the fixed-point pass over the whole gradient per
    /// micro-batch, from memory, cost a third of the stacked model's step (docs/benchmarks.md).
    /// With a team (untied weights), thread w of it on the one replica over all of the rank's
    /// micro-batches: its share of them through the forward and the input gradients, and its
    /// share of every layer's chunks over all of them, so that each chunk of the accumulator is
    /// read and written by one thread once per step, without locks.
    func runLockstepWorker(_ w: Int) {
        let task = task
        var micro = task.microBatches, part = TeamPart.alone
        if let team {
            part = TeamPart(index: w, of: team)
        } else {
            let mine = evenShare(micro.count, part: w, of: workers.count)
            micro = micro.lowerBound + mine.lowerBound ..< micro.lowerBound + mine.upperBound
        }
        guard !micro.isEmpty else { return }
        let worker = workers[team == nil ? w : 0], trainable = worker.model.trainable, first = micro.lowerBound
        let positions = task.plan.positions(ofMicroBatch: first).lowerBound ..< task.plan.positions(ofMicroBatch: micro.upperBound - 1).upperBound
        let grads = UnsafePointer(worker.model.grads.pointer), exclusive = team != nil || pool.count == 1
        // where this thread alone adds (a team's chunks, or the only worker), the model may add
        // its weight gradients to the accumulator itself, as they are computed
        let direct = exclusive ? exactSum.directTarget(worker: w, limit: task.limit, first: trainable.lowerBound) : nil
        _ = forwardBackward(worker, positions: positions, epoch: task.epoch, meanOver: task.meanOver, team: part,
                            groupSize: task.plan.microBatch,
                            groupLoss: { g, sum in exactSum.setExtra(first + g, sum) }, fixedPoint: direct,
                            weightsFinal: { r in
                                let t = profile == nil ? 0 : monotonicSeconds()
                                exactSum.add(worker: w, values: grads + r.lowerBound, count: r.count, limit: task.limit,
                                             at: r.lowerBound - trainable.lowerBound, exclusive: exclusive)
                                if let profile { profile.fixedPoint += monotonicSeconds() - t }
                            })
    }

    /// The step's bucket split (relative to `range`), or nil for one bucket: with the overlap on,
    /// several ranks, a communicator that can overlap and a model whose decoder is the tail (not
    /// a team: the stacked model has no decoder tail, and runFastWorker's team path hands none over).
    func overlapSplit(_ range: Range<Int>) -> Int? {
        guard overlapReduction, communicator.size > 1, communicator.overlapsReductions, team == nil,
              let start = workers[0].model.decoderStart, range.contains(start), start > range.lowerBound else { return nil }
        return start - range.lowerBound
    }

    /// A worker's contributions to the decoder's gradients are final (exact mode: in the
    /// accumulator); the last of the workers to say so starts their allreduce (fast mode: of the
    /// workers' tails summed into `grads`). No other worker can be in MPI then: progressTail calls
    /// MPI only once `tailStarted` is set, which happens after the start.
    func markDecoderFinal(_ split: Int) {
        guard decoderFinal.add(1, ordering: .acquiringAndReleasing).newValue == workers.count else { return }
        switch config.reduce {
        case .exact:
            exactSum.startTail(from: split, over: communicator)
        case .fast:
            let range = trainable
            sumWorkerGradients(split ..< range.count, into: grads.pointer + range.lowerBound)
            communicator.startAllreduceSum(grads.pointer + range.lowerBound + split, count: range.count - split)
        }
        tailStarted.store(true, ordering: .releasing)
    }

    /// Lets the decoder's allreduce progress (MPI moves it only inside MPI calls), unless another
    /// worker is doing so.
    func progressTail() {
        guard tailStarted.load(ordering: .acquiring),
              inMPI.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return }
        communicator.progressPending()
        inMPI.store(false, ordering: .releasing)
    }

    /// Fast mode, worker w: forward and backward over its part of the rank's share (none when the
    /// share has fewer samples than there are workers: its loss is 0 and its gradient not summed).
    /// With a team, thread w's part of every layer of the one replica, over the whole share.
    func runFastWorker(_ w: Int) {
        if let team {
            // thread w of the team on the one replica (no decoder tail: see overlapSplit)
            workerLoss[w] = task.positions.isEmpty ? 0
                : forwardBackward(workers[0], positions: task.positions, epoch: task.epoch, meanOver: task.meanOver,
                                  team: TeamPart(index: w, of: team))
            return
        }
        let task = task, positions = fastPositions(worker: w), split = split
        var marked = false
        workerLoss[w] = 0
        if !positions.isEmpty {
            workerLoss[w] = forwardBackward(workers[w], positions: positions, epoch: task.epoch, meanOver: task.meanOver) { decoderDone in
                guard let split, decoderDone else { return }
                if marked { progressTail(); return }
                marked = true
                markDecoderFinal(split)
            }
        }
        if let split, !marked { markDecoderFinal(split) }
    }

    /// Fast mode: worker w's positions, its near-equal contiguous part of the rank's share.
    func fastPositions(worker w: Int) -> Range<Int> {
        let share = task.positions, mine = evenShare(share.count, part: w, of: workers.count)
        return share.lowerBound + mine.lowerBound ..< share.lowerBound + mine.upperBound
    }

    /// `values` (relative to the trainable slice) of the gradients of the workers that had
    /// samples, summed in Float in worker order (as Adam sums them on one rank), into `out`
    /// (indexed as the slice); zeros if none had.
    func sumWorkerGradients(_ values: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let first = trainable.lowerBound + values.lowerBound, n = values.count
        let target = out + values.lowerBound
        guard busyWorkers > 0 else { target.update(repeating: 0, count: n); return }
        target.update(from: busyGradients[0] + first, count: n)
        for k in 1..<busyWorkers { addFloats(busyGradients[k] + first, into: target, count: n) }
    }

    /// Fast mode with several ranks, part w of the head of the trainable values (all of them
    /// without the overlap): the workers' gradients summed into `grads` for the allreduce.
    func gatherHead(part w: Int) {
        let head = split ?? trainable.count, part = alignedShare(head, part: w, of: pool.count)
        sumWorkerGradients(part, into: grads.pointer + trainable.lowerBound)
    }

    /// Fast mode's Adam, part w of the trainable values: from the reduced `grads` (several
    /// ranks), or from the workers' gradients, summed as it reads them (one rank: no pass of its own).
    func fastUpdate(part w: Int) {
        let range = trainable, part = alignedShare(range.count, part: w, of: pool.count)
        let values = range.lowerBound + part.lowerBound ..< range.lowerBound + part.upperBound
        if communicator.size > 1 || config.clipGradNorm != nil {
            optimizer.apply(adamStep, params: params, grads: grads, range: values)
        } else {
            optimizer.apply(adamStep, params: params, summing: busyGradients, count: busyWorkers, range: values)
        }
    }

    /// The clipping coefficient of the reduced gradient in `grads` (the trainable slice): it
    /// depends on the gradient's values only, so in exact mode it is the same on any world size
    /// and thread count.
    func clipCoefficient(maxNorm: Float) -> Float {
        GradientClipping.coefficient(UnsafePointer(grads.pointer + trainable.lowerBound), count: trainable.count, maxNorm: maxNorm)
    }

    /// Part w of the trainable values, the reduced integers back to Float gradients (with
    /// clipping, before any of Adam runs).
    func convert(part w: Int) {
        let values = exactSum.part(w, of: pool.count)
        exactSum.toFloat(values, into: grads.pointer + trainable.lowerBound)
    }

    /// Part w of the trainable values through Adam, from `grads`.
    func update(part w: Int) {
        let range = trainable, values = exactSum.part(w, of: pool.count)
        optimizer.apply(adamStep, params: params, grads: grads, range: range.lowerBound + values.lowerBound ..< range.lowerBound + values.upperBound)
    }

    /// Part w of the trainable values: the reduced integers back to Float gradients, and Adam, a
    /// block at a time so that Adam reads each block's gradients from cache, not memory.
    func convertAndUpdate(part w: Int) {
        let range = trainable, values = exactSum.part(w, of: pool.count)
        var start = values.lowerBound
        while start < values.upperBound {
            let block = start ..< min(start + 4096, values.upperBound)
            exactSum.toFloat(block, into: grads.pointer + range.lowerBound)
            optimizer.apply(adamStep, params: params, grads: grads,
                            range: range.lowerBound + block.lowerBound ..< range.lowerBound + block.upperBound)
            start = block.upperBound
        }
    }

    /// Forward and backward of the samples at `positions` of the epoch order on `worker`: leaves
    /// their gradient (of a loss averaged over `meanOver` values) in the worker's gradient buffer
    /// and returns their summed loss. With a team (the stacked model), every thread of it calls
    /// this with its part: it assembles and corrupts its share of the samples (in exact mode, of
    /// the micro-batches), computes its share of every layer, and returns the loss of its share.
    /// With `groupSize` (exact mode, a model that runs layer by layer), the samples are
    /// consecutive micro-batches of that many run in lockstep: `groupLoss(g, sum)` gets micro-batch
    /// g's summed loss, and `weightsFinal` the gradient ranges as they become final, those the
    /// model does not add to `fixedPoint` itself (DenoisingNetwork's groups). `afterLayer`:
    /// called between the backward's layers (see DenoisingNetwork.backward(n:afterLayer:)).
    func forwardBackward(_ worker: Worker, positions: Range<Int>, epoch: Int, meanOver: Int, team: TeamPart = .alone,
                         afterLayer: (_ decoderDone: Bool) -> Void = { _ in },
                         groupSize: Int? = nil, groupLoss: (Int, Double) -> Void = { _, _ in },
                         fixedPoint: FixedPointTarget? = nil, weightsFinal: (Range<Int>) -> Void = { _ in }) -> Double {
        let model = worker.model, pixels = samples.sampleSize, n = positions.count
        let rows = groupSize.map { team.share(n, inUnitsOf: $0) } ?? team.share(n)
        var t = profile == nil ? 0 : monotonicSeconds()
        // clean samples (images or crops); the phase's clean target (the samples, or a stacked
        // model's codes of them from the frozen layers below); its corrupted copy as the input
        for i in rows {
            let position = positions.lowerBound + i
            samples.fill(position: position, image: Int(order[position]), epoch: epoch, into: worker.clean.pointer + i * pixels)
        }
        team.sync()
        // a team and groups only ever run a layer-by-layer model (see `team`, runLockstepWorker)
        let layered = worker.layered
        let target = layered.map { layered in
            groupSize.map { layered.target(images: worker.clean.pointer, n: n, groupSize: $0, team: team) }
                ?? layered.target(images: worker.clean.pointer, n: n, team: team)
        } ?? model.target(images: worker.clean.pointer, n: n)
        let size = model.inputSize
        for i in rows {
            let position = positions.lowerBound + i
            config.noise.corrupt(target + i * size, into: model.input + i * size, count: size, seed: config.seed, epoch: epoch,
                                 sampleIndex: samples.noiseKey(position: position, image: Int(order[position])))
        }
        team.sync()
        if let profile { profile.assembly += monotonicSeconds() - t }
        if let layered {
            if let groupSize { layered.forward(n: n, groupSize: groupSize, team: team) } else { layered.forward(n: n, team: team) }
        } else {
            model.forward(n: n)
        }
        team.sync()
        if profile != nil { t = monotonicSeconds() }
        let loss = Self.loss(config.loss, for: model), first = rows.lowerBound * size
        var sum = 0.0
        if let groupSize {
            // one sum per micro-batch, each over its values in order (as a pass per micro-batch sums)
            for start in stride(from: rows.lowerBound, to: rows.upperBound, by: groupSize) {
                let values = (min(start + groupSize, n) - start) * size
                let groupSum = loss.sum(output: model.output + start * size, target: target + start * size, count: values)
                groupLoss(start / groupSize, groupSum)
                sum += groupSum
            }
        } else {
            sum = loss.sum(output: model.output + first, target: target + first, count: rows.count * size)
        }
        loss.backward(output: model.output + first, target: target + first, gradient: model.gradOutput + first,
                      count: rows.count * size, meanOver: meanOver, activation: model.outputActivation)
        team.sync()
        if let profile { profile.loss += monotonicSeconds() - t }
        if let layered, let groupSize {
            layered.backward(n: n, groupSize: groupSize, team: team, fixedPoint: fixedPoint, weightsFinal: weightsFinal)
        } else if let layered, team.count > 1 {
            layered.backward(n: n, team: team)     // a team's model has no decoder tail to hand over
        } else {
            model.backward(n: n, afterLayer: afterLayer)
        }
        return sum
    }

    /// The loss of the current phase: the configured one, except that a ReLU output (a stacked
    /// model's upper layer with ReLU units) is trained with MSE.
    static func loss(_ configured: LossKind, for model: DenoisingNetwork) -> LossKind {
        model.outputActivation == .relu ? .mse : configured
    }
}
