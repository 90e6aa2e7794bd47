// The training loop, data-parallel. Follow one optimizer step through `step(...)`:
//   1. its samples: positions first ..< first+n of the epoch's permutation keyed by (seed, epoch),
//      cut into micro-batches that do not depend on the world size (StepPlan); this rank takes a
//      contiguous run of them, and its worker threads take turns within that run
//   2. per micro-batch, on a worker: assemble clean images (x/255) and their corrupted copies, the
//      noise keyed by (seed, epoch, sample index)
//   3. forward: output = sigmoid(decoder(encoder(noisy)))
//   4. loss against the clean images, and dL/dz of the *global* batch mean
//   5. backward: the micro-batch's gradient in the worker's flat gradient buffer
//   6. exact mode: rounded to 64-bit fixed point and added to the worker's integer accumulator
//   7. workers' accumulators summed, then one integer allreduce over all ranks (with each
//      micro-batch's loss riding along in its own slot); back to Float
//   8. Adam: the same update on every rank, one pass over the flat parameter buffer
// Fast mode (--reduce fast) replaces 2-7 with one forward/backward over the rank's share of the
// batch and a float allreduce. Nothing in the loop allocates: workers, buffers and the optimizer
// are built once.

import Foundation

public enum ReduceMode: String, Sendable, CaseIterable {
    /// Fixed-point sums over fixed micro-batches: bitwise the same on any number of ranks/threads.
    case exact
    /// One forward/backward per rank and a float allreduce: results vary with the world size.
    case fast
}

public struct TrainConfig: Sendable, Equatable {
    public var epochs = 20
    public var batchSize = 20
    public var adam = AdamConfig()
    public var noise = NoiseKind.gaussian(factor: 0.5)
    public var loss = LossKind.mse
    public var seed: UInt64 = 0
    public var limit: Int? = nil
    public var microBatch = 5
    public var reduce = ReduceMode.exact
    public init() {}

    /// Rejects values no run could use; each error names its flag.
    public func validate() throws(DAEError) {
        guard epochs >= 1 else { throw .badFlag("--epochs", "must be at least 1, got \(epochs)") }
        guard batchSize >= 1 else { throw .badFlag("--batch-size", "must be at least 1, got \(batchSize)") }
        guard batchSize <= 65_536 else { throw .badFlag("--batch-size", "\(batchSize) is larger than the 65536 supported") }
        guard adam.lr.isFinite, adam.lr > 0 else { throw .badFlag("--lr", "must be a positive number, got \(adam.lr)") }
        guard microBatch >= 1 else { throw .badFlag("--micro-batch", "must be at least 1, got \(microBatch)") }
        if let limit { guard limit >= 1 else { throw .badFlag("--limit", "must be at least 1, got \(limit)") } }
    }
}

/// What one epoch did, for the progress line and the metrics.
public struct EpochResult: Sendable {
    public var epoch: Int           // 1-based
    public var meanLoss: Double     // mean of the batch losses (each a per-pixel mean)
    public var samples: Int
    public var seconds: Double
    public var reduceSeconds: Double   // time in the gradient allreduce (waiting for peers included)
    public var samplesPerSecond: Double { Double(samples) / max(seconds, 1e-9) }
}

/// One thread's replica: reads the shared parameters, owns its activations, gradients and
/// integer gradient accumulator. Workers only write their own memory and their own loss slots.
final class Worker: @unchecked Sendable {
    let model: ConvDenoiser
    let clean: FloatBuffer                          // [capacity, H, W] loss targets
    let accumulator: UnsafeMutablePointer<Int64>    // fixed-point gradient sum of its micro-batches
    var overflow = false

    init(height: Int, width: Int, capacity: Int, parameters: FloatBuffer) {
        model = ConvDenoiser(height: height, width: width, capacity: capacity, sharedParameters: parameters)
        clean = FloatBuffer(count: capacity * height * width)
        accumulator = .allocate(capacity: parameters.count)
        accumulator.initialize(repeating: 0, count: parameters.count)
    }

    deinit { accumulator.deallocate() }
}

public final class Trainer: @unchecked Sendable {
    public let config: TrainConfig
    public let data: Dataset
    public let communicator: Communicator
    public let params: FloatBuffer       // the one copy of the parameters (workers read it)
    public let grads: FloatBuffer        // the reduced gradient of the global batch mean loss
    public let optimizer: Adam
    public let layout: ParameterLayout
    let workers: [Worker]
    let reduceBuffer: UnsafeMutablePointer<Int64>   // [params | one loss slot per micro-batch | overflow]
    let lossSlots: Int
    var order: [Int32] = []              // the epoch's permutation of sample indices
    let failures = FailureInjection()
    public private(set) var globalStep = 0

    /// `threads` is this rank's share of the cores: worker threads in exact mode (each with
    /// single-threaded BLAS), BLAS threads in fast mode.
    public init(config: TrainConfig, data: Dataset, communicator: Communicator = SingleProcess(), threads: Int = 1) throws(DAEError) {
        try config.validate()
        self.config = config
        self.data = data
        self.communicator = communicator
        let size = communicator.size
        let fullBatch = min(config.batchSize, data.count)
        let microBatch = min(config.microBatch, fullBatch)
        switch config.reduce {
        case .exact:
            let m = (fullBatch + microBatch - 1) / microBatch
            guard size <= m else {
                throw .badFlag("--micro-batch", "\(size) ranks need at least \(size) micro-batches per step, but a batch of \(fullBatch) in micro-batches of \(microBatch) has \(m); use --micro-batch \(max(1, fullBatch / size)) or less, or a larger --batch-size")
            }
        case .fast:
            guard size <= fullBatch else {
                throw .badFlag("--batch-size", "\(size) ranks but only \(fullBatch) samples per step; use at least \(size)")
            }
        }
        let layout = ConvDenoiser.makeLayout()
        let params = FloatBuffer(count: layout.count)
        self.layout = layout
        self.params = params
        grads = FloatBuffer(count: layout.count)
        initializeParameters(params, layout: layout, seed: config.seed)
        // Rank 0's parameters are the starting point of every replica.
        communicator.broadcast(UnsafeMutableRawPointer(params.pointer), count: params.count * 4, root: 0)
        optimizer = Adam(parameterCount: layout.count, config: config.adam)

        let threadCount = max(1, threads)
        switch config.reduce {
        case .exact:
            BLASThreads.set(1)
            workers = (0..<threadCount).map { _ in
                Worker(height: data.height, width: data.width, capacity: microBatch, parameters: params)
            }
        case .fast:
            BLASThreads.set(threadCount)
            workers = [Worker(height: data.height, width: data.width, capacity: (fullBatch + size - 1) / size, parameters: params)]
        }
        lossSlots = (fullBatch + microBatch - 1) / microBatch
        reduceBuffer = .allocate(capacity: layout.count + lossSlots + 1)
        reduceBuffer.initialize(repeating: 0, count: layout.count + lossSlots + 1)
        order.reserveCapacity(data.count)
    }

    deinit { reduceBuffer.deallocate() }

    public var stepsPerEpoch: Int { (data.count + config.batchSize - 1) / config.batchSize }
    public var workerCount: Int { workers.count }
    public var effectiveMicroBatch: Int { min(config.microBatch, min(config.batchSize, data.count)) }

    /// Trains one epoch (1-based). Throws if the loss stops being finite.
    public func trainEpoch(_ epoch: Int) throws(DAEError) -> EpochResult {
        let start = Date()
        var reduceSeconds = 0.0
        epochPermutation(count: data.count, seed: config.seed, epoch: epoch, into: &order)
        var lossSum = 0.0
        for step in 0..<stepsPerEpoch {
            globalStep += 1
            try failures.check(rank: communicator.rank, step: globalStep)
            let first = step * config.batchSize
            let plan = StepPlan(first: first, count: min(config.batchSize, data.count - first), microBatch: effectiveMicroBatch)
            let batchLoss = try self.step(plan, epoch: epoch, reduceSeconds: &reduceSeconds)
            guard batchLoss.isFinite else {
                throw .numeric("training diverged at epoch \(epoch), step \(step + 1): loss is \(batchLoss); try a smaller --lr")
            }
            lossSum += batchLoss
        }
        return EpochResult(epoch: epoch, meanLoss: lossSum / Double(stepsPerEpoch), samples: data.count,
                           seconds: Date().timeIntervalSince(start), reduceSeconds: reduceSeconds)
    }

    /// One optimizer step over the global batch `plan`; returns the batch loss (a per-pixel mean).
    func step(_ plan: StepPlan, epoch: Int, reduceSeconds: inout Double) throws(DAEError) -> Double {
        let pixelsPerBatch = plan.count * data.imageSize
        let loss: Double
        switch config.reduce {
        case .exact:
            let mine = plan.microBatches(rank: communicator.rank, size: communicator.size)
            let m = plan.microBatches
            let limit = FixedPoint.limit(terms: m)
            // 2-6: each worker takes every W-th micro-batch of this rank's run
            let runWorker: @Sendable (Int) -> Void = { w in
                let worker = self.workers[w]
                worker.accumulator.update(repeating: 0, count: self.params.count)
                worker.overflow = false
                var j = mine.lowerBound + w
                while j < mine.upperBound {
                    let sum = self.forwardBackward(worker, positions: plan.positions(ofMicroBatch: j),
                                                   epoch: epoch, meanOver: pixelsPerBatch)
                    self.reduceBuffer[self.params.count + j] = Int64(bitPattern: sum.bitPattern)
                    if !FixedPoint.accumulate(worker.model.grads.pointer, into: worker.accumulator,
                                              count: self.params.count, limit: limit) {
                        worker.overflow = true
                    }
                    j += self.workers.count
                }
            }
            // micro-batches of other ranks contribute 0 to their loss slots
            for j in 0..<m where !mine.contains(j) { reduceBuffer[params.count + j] = 0 }
            if workers.count == 1 { runWorker(0) } else { DispatchQueue.concurrentPerform(iterations: workers.count, execute: runWorker) }
            // 7: sum the workers' integers, then over ranks; the loss slots and the overflow count ride along
            reduceBuffer.update(from: workers[0].accumulator, count: params.count)
            for worker in workers.dropFirst() {
                for i in 0..<params.count { reduceBuffer[i] &+= worker.accumulator[i] }
            }
            let overflowSlot = params.count + m
            reduceBuffer[overflowSlot] = Int64(workers.filter(\.overflow).count)
            let reduceStart = Date()
            communicator.allreduceSum(reduceBuffer, count: overflowSlot + 1)
            reduceSeconds += Date().timeIntervalSince(reduceStart)
            if reduceBuffer[overflowSlot] != 0 {
                throw .numeric("a gradient exceeded the exact reduction's range (|g| <= \(limit)) at epoch \(epoch): training has diverged; lower --lr, or use --reduce fast")
            }
            FixedPoint.toFloat(reduceBuffer, into: grads.pointer, count: params.count)
            var total = 0.0
            for j in 0..<m { total += Double(bitPattern: UInt64(bitPattern: reduceBuffer[params.count + j])) }
            loss = total / Double(pixelsPerBatch)
        case .fast:
            let worker = workers[0]
            let positions = plan.positions(rank: communicator.rank, size: communicator.size)
            var sum = forwardBackward(worker, positions: positions, epoch: epoch, meanOver: pixelsPerBatch)
            grads.copy(from: worker.model.grads)
            let reduceStart = Date()
            communicator.allreduceSum(grads.pointer, count: grads.count)
            communicator.allreduceSum(&sum, count: 1)
            reduceSeconds += Date().timeIntervalSince(reduceStart)
            loss = sum / Double(pixelsPerBatch)
        }
        // 8: the same update on every rank
        optimizer.update(params: params, grads: grads)
        return loss
    }

    /// Forward and backward of the samples at `positions` of the epoch order on `worker`: leaves
    /// their gradient (of a loss averaged over `meanOver` values) in the worker's gradient buffer
    /// and returns their summed loss.
    func forwardBackward(_ worker: Worker, positions: Range<Int>, epoch: Int, meanOver: Int) -> Double {
        let model = worker.model, pixels = data.imageSize, n = positions.count
        // assemble clean targets and noisy inputs
        for (i, position) in positions.enumerated() {
            let index = Int(order[position])
            let target = worker.clean.pointer + i * pixels
            data.image(index, into: target)
            config.noise.corrupt(target, into: model.input + i * pixels, count: pixels,
                                 seed: config.seed, epoch: epoch, sampleIndex: index)
        }
        model.forward(n: n)
        let sum = config.loss.sum(output: model.output, target: worker.clean.pointer, count: n * pixels)
        config.loss.backward(output: model.output, target: worker.clean.pointer, gradient: model.gradOutput,
                             count: n * pixels, meanOver: meanOver)
        model.backward(n: n)
        return sum
    }

    /// The final weights, named as the reference PyTorch model's state_dict.
    public func saveWeights(to path: String) throws(DAEError) {
        try Weights.save(params, layout: layout, to: path, metadata: [
            "format": "dae-dist weights",
            "model": "ConvDenoiser",
            "epochs": String(config.epochs),
            "seed": String(config.seed),
            "noise": config.noise.description,
            "loss": config.loss.rawValue,
        ])
    }
}
