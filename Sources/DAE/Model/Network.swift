// What the trainer, the evaluator and the feature commands need from a model, so that the
// convolutional denoiser and the stacked (layer-wise) one share one training loop.
//
// A model trains in phases. The convolutional denoiser has one. The stacked denoiser with L layers
// has L pre-training phases (phase k trains layer k+1 alone as a denoising autoencoder of the
// clean codes below it) and, when fine-tuning is asked for, phase L trains the whole stack as one
// deep autoencoder. In each phase the network's `input` holds the corrupted version of what that
// phase reconstructs (`target(images:n:)`), and only the `trainable` slice of the flat parameter
// buffer changes.

/// The activation in front of the loss: the loss's backward returns dL/dz for its input z.
public enum OutputActivation: Sendable, Equatable {
    case sigmoid
    case relu
    /// None: the output is the last layer's own (a residual network's input minus its prediction).
    case identity
}

public protocol DenoisingNetwork: AnyObject {
    var layout: ParameterLayout { get }
    var params: FloatBuffer { get }
    var grads: FloatBuffer { get }
    var capacity: Int { get }
    /// Values per sample of the current phase's input, target and output.
    var inputSize: Int { get }
    /// The corrupted input of the current phase, [n, inputSize] (for images: [n, H, W]).
    var input: UnsafeMutablePointer<Float> { get }
    /// The reconstruction, [n, inputSize], after `forward`.
    var output: UnsafeMutablePointer<Float> { get }
    /// dL/dz for the output's pre-activation z: written by the loss, read by `backward`.
    var gradOutput: UnsafeMutablePointer<Float> { get }
    var outputActivation: OutputActivation { get }
    /// The parameters the current phase trains (a contiguous slice of the flat buffer).
    var trainable: Range<Int> { get }

    /// Selects a training phase (0-based).
    func setPhase(_ phase: Int)
    /// Selects the image-to-image autoencoder made of what phases 0...phase have trained (for
    /// evaluation, grids and denoising: `input` and `output` are then images).
    func setImageAutoencoder(afterPhase phase: Int)
    /// The clean values the current phase reconstructs, for clean images [n, H*W]: the images
    /// themselves, or the codes the frozen layers below compute from them.
    func target(images: UnsafePointer<Float>, n: Int) -> UnsafePointer<Float>
    func forward(n: Int)
    /// Writes the gradient of the trainable parameters (overwriting) from `gradOutput`.
    func backward(n: Int)
    /// The same, calling `afterLayer(decoderDone)` between layers; decoderDone is true from the
    /// first call at which the gradients of [decoderStart, trainable.upperBound) are final. The
    /// trainer starts reducing those then, and lets the reduction progress at the later calls.
    func backward(n: Int, afterLayer: (_ decoderDone: Bool) -> Void)
    /// Where the decoder's parameters start, when they are the tail of the current phase's
    /// trainable slice and their gradients are final before the encoder's backward runs (so
    /// their allreduce can overlap it); nil when there is no such tail.
    var decoderStart: Int? { get }

    /// The shape of one sample's feature vector (the encoder's output), e.g. [64, 7, 7].
    var codeShape: [Int] { get }
    /// Runs the whole encoder on clean images in `input` (after `setImageAutoencoder`).
    func encode(n: Int)
    /// Copies sample i's code (of the last `encode` of n samples) into `out`, codeShape in C order.
    func copyCode(sample i: Int, n: Int, into out: UnsafeMutablePointer<Float>)
}

extension DenoisingNetwork {
    /// No tail to reduce early: one call, after the whole backward.
    public func backward(n: Int, afterLayer: (_ decoderDone: Bool) -> Void) {
        backward(n: n)
        afterLayer(true)
    }
    public var decoderStart: Int? { nil }
}

/// A network whose passes also run layer by layer (ModelSpec.runsLayerByLayer: the stacked
/// model's fully connected layers; StackedDenoiser+LayerByLayer.swift), which the trainer calls
/// instead of DenoisingNetwork's `target`, `forward` and `backward`, in two ways:
/// - by a team of threads splitting features (fast mode; Team.swift): every thread of the team
///   calls them with its part, after syncing on complete inputs (images, `input`, `gradOutput`);
///   they return before a final sync. Alone (`TeamPart.alone`) they are the plain calls.
/// - over groups (exact mode's micro-batches in lockstep): the n rows are consecutive groups of
///   `groupSize` rows, every layer runs over the groups before the next, every value the bits a
///   pass over its group alone would give, and the backward reports each range of the flat
///   gradient buffer as soon as one group's gradient there is final (`weightsFinal`, before the
///   next group overwrites it), or adds some of it to `fixedPoint` itself, when given (where only
///   this thread adds to those values), and reports only the rest. The bits depend only on the
///   groups, not on the team or on how many groups one call holds. Every thread of a team calls
///   target and forward after syncing on complete inputs, and syncs before reading their outputs
///   (target's are complete on return); the backward is called after a sync on complete
///   `gradOutput` and returns before a final sync. Each thread writes its own groups' inputs and
///   loss gradients: `TeamPart.share(n, inUnitsOf: groupSize)`.
/// The other models have no such passes: the trainer runs a replica of them per thread.
public protocol LayerByLayerNetwork: DenoisingNetwork {
    func target(images: UnsafePointer<Float>, n: Int, team: TeamPart) -> UnsafePointer<Float>
    func forward(n: Int, team: TeamPart)
    func backward(n: Int, team: TeamPart)
    func target(images: UnsafePointer<Float>, n: Int, groupSize: Int, team: TeamPart) -> UnsafePointer<Float>
    func forward(n: Int, groupSize: Int, team: TeamPart)
    func backward(n: Int, groupSize: Int, team: TeamPart, fixedPoint: FixedPointTarget?, weightsFinal: (Range<Int>) -> Void)
}

/// How far an output pixel sees. Every layer maps an interval of pixel positions (along one axis)
/// at its output to the interval of its input that the output depends on: a 3x3 convolution
/// (padding 1) widens it by 1 on each side, a 1x1 convolution keeps it, a 2x2 max-pool from level
/// k-1 to level k maps [a, b] to [2a, 2b+1] one level up in resolution, and a kernel-2 stride-2
/// transposed convolution maps [a, b] to [floor(a/2), floor(b/2)] one level down. Following an
/// output pixel's interval back to the input through every path (for the U-Net: the skip and the
/// upsampled one at every level) gives its input interval; the radius is the largest distance from
/// the pixel to either end, over the pixel's positions within one period of the pools (2^(levels-1)).
/// Zero padding at the image borders only removes dependencies, so this bounds them everywhere.
enum ReceptiveField {
    typealias Span = (lo: Int, hi: Int)

    /// 6 for the convolutional model: y's code pixel q = floor(y/4) pools conv2 rows 2q..2q+1,
    /// which see pool1 rows 2q-1..2q+2, that is conv1 rows 4q-2..4q+5 and input rows 4q-3..4q+6.
    static var convDenoiser: Int {
        radius(period: 4) { y in
            let q = floorDiv(floorDiv(y, 2), 2)                   // the two transposed convolutions
            var s: Span = (q, q)                                   // code, level 2
            s = widen(pool(s), 1); s = widen(pool(s), 1)          // pool2 + conv2, pool1 + conv1
            return s
        }
    }

    /// The U-Net with `levels` levels: 8, 20, 44 and 92 for 2, 3, 4 and 5 levels.
    static func unet(levels: Int) -> Int {
        // inputs of an interval of s_k: two 3x3 convolutions, then the pool from s_{k-1}
        func skip(_ k: Int, _ span: Span) -> Span {
            let s = widen(span, 2)
            return k == 0 ? s : skip(k - 1, pool(s))
        }
        // inputs of an interval of d_k (d_{L-1} = s_{L-1}): the 3x3 convolution over [u_k, s_k]
        func decoded(_ k: Int, _ span: Span) -> Span {
            if k == levels - 1 { return skip(k, span) }
            let s = widen(span, 1)
            let a = skip(k, s), b = decoded(k + 1, (floorDiv(s.lo, 2), floorDiv(s.hi, 2)))
            return (min(a.lo, b.lo), max(a.hi, b.hi))
        }
        return radius(period: 1 << (levels - 1)) { y in decoded(0, (y, y)) }   // the 1x1 head keeps it
    }

    static func widen(_ s: Span, _ r: Int) -> Span { (s.lo - r, s.hi + r) }
    static func pool(_ s: Span) -> Span { (2 * s.lo, 2 * s.hi + 1) }
    static func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
    static func radius(period: Int, _ inputs: (Int) -> Span) -> Int {
        (0..<period).map { y in let s = inputs(y); return max(y - s.lo, s.hi - y) }.max()!
    }
}

import Foundation
