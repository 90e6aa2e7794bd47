// Adam exactly as torch.optim.Adam (defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight
// decay, not amsgrad), one pass over the flat parameter buffer. Per element, at step t >= 1:
//
//   m = m + (1 - beta1) * (g - m)              (torch: exp_avg.lerp_(grad, 1 - beta1))
//   v = beta2 * v + (1 - beta2) * g * g        (torch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2))
//   denom = sqrt(v) / sqrt(1 - beta2^t) + eps  (eps added after the square root)
//   p = p - lr / (1 - beta1^t) * m / denom
//
// The bias corrections are computed in Double, as PyTorch does with Python floats, and rounded to
// Float once per step.

public struct AdamConfig: Sendable, Equatable {
    public var lr: Float = 1e-3
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public init(lr: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8) {
        self.lr = lr; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps
    }
}

public final class Adam {
    public let config: AdamConfig
    public let m: FloatBuffer          // first moment, same layout as the parameters
    public let v: FloatBuffer          // second moment
    public private(set) var step = 0   // number of updates taken so far

    public init(parameterCount: Int, config: AdamConfig) {
        self.config = config
        m = FloatBuffer(count: parameterCount)
        v = FloatBuffer(count: parameterCount)
    }

    /// Sets the step count alone (the moments were filled in place, e.g. by a broadcast).
    public func restore(step: Int) { self.step = step }

    /// Restores the state saved in a checkpoint.
    public func restore(step: Int, m: [Float], v: [Float]) {
        precondition(m.count == self.m.count && v.count == self.v.count)
        self.step = step
        m.withUnsafeBufferPointer { self.m.pointer.update(from: $0.baseAddress!, count: $0.count) }
        v.withUnsafeBufferPointer { self.v.pointer.update(from: $0.baseAddress!, count: $0.count) }
    }

    /// A fresh optimizer, as a new torch.optim.Adam: moments zero, step 0 (a stacked model's next
    /// pre-training phase starts this way).
    public func reset() {
        step = 0
        m.pointer.update(repeating: 0, count: m.count)
        v.pointer.update(repeating: 0, count: v.count)
    }

    /// One update of `params` from `grads` (both flat, same layout).
    public func update(params: FloatBuffer, grads: FloatBuffer) {
        update(params: params, grads: grads, range: 0 ..< params.count)
    }

    /// One update of the elements in `range` only (the parameters the current phase trains).
    public func update(params: FloatBuffer, grads: FloatBuffer, range: Range<Int>) {
        apply(beginStep(), params: params, grads: grads, range: range)
    }

    /// The per-step constants of one update, shared by the parts of a parameter range that
    /// threads update side by side (`beginStep` once, then `apply` on each part).
    public struct StepConstants: Sendable {
        var stepSize: Float = 0, correction2: Float = 1
    }

    /// Counts the step and computes its bias corrections.
    public func beginStep() -> StepConstants {
        step += 1
        let t = Double(step)
        let biasCorrection1 = 1 - pow(Double(config.beta1), t)
        let biasCorrection2Sqrt = (1 - pow(Double(config.beta2), t)).squareRoot()
        return StepConstants(stepSize: Float(Double(config.lr) / biasCorrection1), correction2: Float(biasCorrection2Sqrt))
    }

    /// The update of the elements in `range` for a step begun with `beginStep`.
    public func apply(_ constants: StepConstants, params: FloatBuffer, grads: FloatBuffer, range: Range<Int>) {
        precondition(params.count == m.count && grads.count == m.count && range.upperBound <= m.count)
        let stepSize = constants.stepSize, correction2 = constants.correction2
        let oneMinusBeta1 = 1 - config.beta1, beta2 = config.beta2, oneMinusBeta2 = 1 - config.beta2
        let eps = config.eps
        let p = params.pointer, g = grads.pointer, m = m.pointer, v = v.pointer
        for i in range {
            let gi = g[i]
            m[i] = m[i] + oneMinusBeta1 * (gi - m[i])
            v[i] = v[i] * beta2 + oneMinusBeta2 * gi * gi
            let denom = v[i].squareRoot() / correction2 + eps
            p[i] = p[i] + -stepSize * m[i] / denom      // torch: param.addcdiv_(m, denom, value=-step_size)
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
