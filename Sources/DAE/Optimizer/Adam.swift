// Adam exactly as torch.optim.Adam (defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight
// decay, not amsgrad), or with a weight decay as torch.optim.AdamW (decoupled: the parameters
// shrink by 1 - lr * weight_decay before the update), one pass over the flat parameter buffer.
// Per element, at step t >= 1:
//
//   g = g * clip                               (gradient clipping's coefficient, 1 without it)
//   p = p * (1 - lr * weight_decay)            (AdamW only; torch: param.mul_(1 - lr * weight_decay))
//   m = m + (1 - beta1) * (g - m)              (torch: exp_avg.lerp_(grad, 1 - beta1))
//   v = beta2 * v + (1 - beta2) * g * g        (torch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2))
//   denom = sqrt(v) / sqrt(1 - beta2^t) + eps  (eps added after the square root)
//   p = p - lr / (1 - beta1^t) * m / denom
//
// The bias corrections are computed in Double, as PyTorch does with Python floats, and rounded to
// Float once per step.
//
// The learning rate may follow a schedule over a phase's steps (LRSchedule): the step's lr is
// computed in Double, as torch.optim.lr_scheduler sets a Python float, before the bias correction.

import CKernels

public struct AdamConfig: Sendable, Equatable {
    public var lr: Float = 1e-3
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    /// Decoupled weight decay (torch.optim.AdamW's weight_decay); 0: plain Adam.
    public var weightDecay: Float = 0
    public init(lr: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0) {
        self.lr = lr; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }
}

/// How the learning rate moves over a training phase's T optimizer steps.
public enum LRSchedule: String, Sendable, CaseIterable {
    /// lr at every step (PyTorch: no scheduler).
    case constant
    /// From lr down towards 0 along half a cosine: step s (1-based) runs at
    /// lr * (1 + cos(pi * (s - 1) / T)) / 2, the closed form of torch.optim.lr_scheduler.
    /// CosineAnnealingLR with T_max = T and eta_min = 0, stepped once after every optimizer step
    /// (PyTorch updates the lr recursively, which follows the closed form to rounding). Large steps
    /// while far from a minimum, small ones at the end: the last epochs settle.
    case cosine

    /// The factor of lr at optimizer step `step` (1-based) of `total`.
    public func factor(step: Int, of total: Int) -> Double {
        switch self {
        case .constant: return 1
        case .cosine:
            guard total > 0 else { return 1 }
            // (1 + cos x) / 2 = cos^2(x / 2), which keeps its precision near the end, where x -> pi
            let half = cos(Double.pi * Double(min(step - 1, total)) / Double(total) / 2)
            return half * half
        }
    }
}

/// torch.nn.utils.clip_grad_norm_ (L2): the gradient is scaled by min(1, maxNorm / (norm + 1e-6)),
/// norm the L2 norm over all the parameters' gradients. The norm's squares are summed in Double in
/// index order (PyTorch sums per tensor in Float, then the tensors' norms): the coefficient agrees
/// to Float rounding, and depends on nothing but the values.
public enum GradientClipping {
    public static func coefficient(_ g: UnsafePointer<Float>, count: Int, maxNorm: Float) -> Float {
        var squares = 0.0
        for i in 0..<count { let x = Double(g[i]); squares += x * x }
        return Float(min(1, Double(maxNorm) / (squares.squareRoot() + 1e-6)))
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
    public func update(params: FloatBuffer, grads: FloatBuffer, range: Range<Int>, lrFactor: Double = 1) {
        apply(beginStep(lrFactor: lrFactor), params: params, grads: grads, range: range)
    }

    /// The per-step constants of one update, shared by the parts of a parameter range that
    /// threads update side by side (`beginStep` once, then `apply` on each part).
    public struct StepConstants: Sendable {
        var stepSize: Float = 0, correction2: Float = 1
        /// The parameters' factor before the update: AdamW's 1 - lr * weight_decay (1: none).
        var decay: Float = 1
        /// The gradient's factor: gradient clipping's coefficient, set once the norm is known (1: none).
        public var gradScale: Float = 1
    }

    /// Counts the step and computes its bias corrections; the step runs at lr * `lrFactor`
    /// (a schedule's factor, LRSchedule.factor).
    public func beginStep(lrFactor: Double = 1) -> StepConstants {
        step += 1
        let t = Double(step)
        let biasCorrection1 = 1 - pow(Double(config.beta1), t)
        let biasCorrection2Sqrt = (1 - pow(Double(config.beta2), t)).squareRoot()
        // lrFactor 1 keeps the constant-lr bits: Double(lr) * 1 is exact
        let lr = Double(config.lr) * lrFactor
        // AdamW's factor with the step's lr, in Double as PyTorch computes it from Python floats
        let decay = config.weightDecay == 0 ? 1 : Float(1 - lr * Double(config.weightDecay))
        return StepConstants(stepSize: Float(lr / biasCorrection1), correction2: Float(biasCorrection2Sqrt), decay: decay)
    }

    /// The update of the elements in `range` for a step begun with `beginStep`.
    public func apply(_ constants: StepConstants, params: FloatBuffer, grads: FloatBuffer, range: Range<Int>) {
        precondition(grads.count == m.count)
        withUnsafePointer(to: UnsafePointer(grads.pointer)) { apply(constants, params: params, summing: $0, count: 1, range: range) }
    }

    /// The same update from the gradient g[0] + g[1] + ... + g[count-1], summed in that order
    /// element by element (fast mode's worker gradients; buffers in the parameters' layout).
    public func apply(_ constants: StepConstants, params: FloatBuffer, summing g: UnsafePointer<UnsafePointer<Float>>, count: Int,
                      range: Range<Int>) {
        precondition(params.count == m.count && range.upperBound <= m.count && count >= 1)
        var step = DaeAdamStep(one_minus_beta1: 1 - config.beta1, beta2: config.beta2, one_minus_beta2: 1 - config.beta2,
                               eps: config.eps, step_size: constants.stepSize, correction2: constants.correction2,
                               grad_scale: constants.gradScale, decay: constants.decay)
        let begin = Int64(range.lowerBound), end = Int64(range.upperBound)
        // a C kernel (Sources/CKernels/update.c: twice the speed of the same loop in Swift SIMD
        // types), AVX2 where the CPU has it; every version does the operations above in the same
        // order, so the same bits
        let table = UnsafeRawPointer(g).assumingMemoryBound(to: UnsafePointer<Float>?.self)
        if UpdateKernels.avx2 {
            dae_adam_avx2(&step, params.pointer, table, Int32(count), m.pointer, v.pointer, begin, end)
        } else {
            dae_adam(&step, params.pointer, table, Int32(count), m.pointer, v.pointer, begin, end)
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
