// The gradient reduction of a step (Trainer.swift's steps 6-7): exact mode's fixed-point sums over
// the ranks (ExactSum: one integer allreduce, or two buckets with the decoder's started while the
// encoder's backward runs), or fast mode's float allreduce (the same overlap). Either way the
// reduced gradient of the global batch mean is whole when this returns (exact mode: still in
// fixed point, until the update stage converts it).

import Foundation

extension Trainer {
    /// Exact mode, 2-7: the workers take this rank's micro-batches one at a time, whichever is
    /// free next (see runWorker: the integer sums do not depend on who took which), then the
    /// rank's integer sum goes over the ranks. Returns the batch loss.
    func exactGradient(_ plan: StepPlan, epoch: Int, reduceSeconds: inout Double) throws(DAEError) -> Double {
        let pixelsPerBatch = plan.count * workers[0].model.inputSize
        let range = trainable, count = range.count
        let mine = plan.microBatches(rank: communicator.rank, size: communicator.size)
        let m = plan.microBatches
        let limit = FixedPoint.limit(terms: m)
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
        return exactSum.sumOfExtras() / Double(pixelsPerBatch)
    }

    /// Fast mode: the workers' forward/backward, each over its part of this rank's share; with
    /// the overlap, the last of them past the decoder sums the decoder's tail and starts its
    /// float allreduce while the encoder's backward runs (runFastWorker); then the head and the
    /// loss over the ranks. Returns the batch loss.
    func fastGradient(_ plan: StepPlan, epoch: Int, reduceSeconds: inout Double) -> Double {
        let pixelsPerBatch = plan.count * workers[0].model.inputSize
        let range = trainable, count = range.count
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
        return lossAndStop.0 / Double(pixelsPerBatch)
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
}
