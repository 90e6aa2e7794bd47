// The step engine (Trainer.swift's steps 2-6): a rank's threads computing the gradient of its
// share of a step, each with a replica of the model (a micro-batch at a time in exact mode, its
// part of the share in fast mode), or, for a model that runs layer by layer (the stacked model),
// as a team on one replica (Team.swift) or over its micro-batches in lockstep. Each thread
// assembles and corrupts its samples, runs forward, loss and backward, and hands its gradient to
// the reduction (GradientReduction.swift) as it becomes final.

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

extension Trainer {
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
