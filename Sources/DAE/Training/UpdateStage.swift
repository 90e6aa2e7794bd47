// The update stage of a step (Trainer.swift's step 8): the reduced gradient (scaled by the
// clipping coefficient with --clip-grad-norm) through Adam or AdamW (Optimizer/Adam.swift), the
// same on every rank, each of the rank's threads a part of the flat parameter buffer. In exact mode
// without clipping the conversion from fixed point is fused with Adam, block by block, so that
// Adam reads each block's gradient from cache.

import Foundation

extension Trainer {
    /// Exact mode, 8: the reduced integers back to Float and Adam, each of the rank's threads a
    /// part of the parameters; fused block by block, or with clipping the whole gradient first
    /// (for its norm), then Adam.
    func exactUpdate() {
        adamStep = optimizer.beginStep(lrFactor: lrFactorOfNextStep)
        let t = profile == nil ? 0 : monotonicSeconds()
        if let maxNorm = config.clipGradNorm {
            pool.run(drainBody!)
            adamStep.gradScale = clipCoefficient(maxNorm: maxNorm)
            pool.run(adamBody!)
        } else {
            pool.run(updateBody!)
        }
        if let profile { profile.update += monotonicSeconds() - t }
    }

    /// Fast mode, 8: the same update on every rank, each of the rank's threads a part of the
    /// parameters; with clipping, the workers' sum in `grads` first (one rank: Adam would sum them
    /// as it reads them) for its norm.
    func fastUpdate() {
        adamStep = optimizer.beginStep(lrFactor: lrFactorOfNextStep)
        if let maxNorm = config.clipGradNorm {
            if communicator.size == 1 { pool.run(gatherAllBody!) }
            adamStep.gradScale = clipCoefficient(maxNorm: maxNorm)
        }
        let t = profile == nil ? 0 : monotonicSeconds()
        pool.run(fastUpdateBody!)
        if let profile { profile.update += monotonicSeconds() - t }
    }

    /// The learning-rate schedule's factor for the optimizer's next step: the schedule spans the
    /// current phase's steps (a stacked model's phases each start a fresh Adam and schedule).
    var lrFactorOfNextStep: Double {
        config.lrSchedule.factor(step: optimizer.step + 1, of: phaseEpochs * stepsPerEpoch)
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
}
