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

    /// `target`, `forward` and `backward` layer by layer, for the models whose
    /// ModelSpec.runsLayerByLayer is true (StackedDenoiser.swift), in two ways:
    /// - by a team of threads splitting features (fast mode; Team.swift): every thread of the
    ///   team calls them with its part, after syncing on complete inputs (images, `input`,
    ///   `gradOutput`); they return before a final sync. Alone (`TeamPart.alone`) they are the
    ///   calls above.
    /// - over groups (exact mode's micro-batches in lockstep): the n rows are consecutive groups
    ///   of `groupSize` rows, every layer runs over the groups before the next, every value the
    ///   bits a pass over its group alone would give, and the backward reports each range of
    ///   the flat gradient buffer as soon as one group's gradient there is final (`weightsFinal`,
    ///   before the next group overwrites it), or adds some of it to `fixedPoint` itself, when
    ///   given (where only this thread adds to those values), and reports only the rest. The
    ///   bits depend only on the groups, not on the team or on how many groups one call holds.
    ///   Every thread of a team calls target and forward after syncing on complete inputs, and
    ///   syncs before reading their outputs (target's are complete on return); the backward is
    ///   called after a sync on complete `gradOutput` and returns before a final sync. Each
    ///   thread writes its own groups' inputs and loss gradients: `TeamPart.share(n, inUnitsOf:
    ///   groupSize)`.
    func target(images: UnsafePointer<Float>, n: Int, team: TeamPart) -> UnsafePointer<Float>
    func forward(n: Int, team: TeamPart)
    func backward(n: Int, team: TeamPart)
    func target(images: UnsafePointer<Float>, n: Int, groupSize: Int, team: TeamPart) -> UnsafePointer<Float>
    func forward(n: Int, groupSize: Int, team: TeamPart)
    func backward(n: Int, groupSize: Int, team: TeamPart, fixedPoint: FixedPointTarget?, weightsFinal: (Range<Int>) -> Void)

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

    public func target(images: UnsafePointer<Float>, n: Int, team: TeamPart) -> UnsafePointer<Float> {
        precondition(team.count == 1, "\(Self.self) does not run as a team")
        return target(images: images, n: n)
    }
    public func forward(n: Int, team: TeamPart) {
        precondition(team.count == 1, "\(Self.self) does not run as a team")
        forward(n: n)
    }
    public func backward(n: Int, team: TeamPart) {
        precondition(team.count == 1, "\(Self.self) does not run as a team")
        backward(n: n)
    }
    public func target(images: UnsafePointer<Float>, n: Int, groupSize: Int, team: TeamPart) -> UnsafePointer<Float> {
        precondition(groupSize >= n && team.count == 1, "\(Self.self) does not run micro-batches in lockstep")
        return target(images: images, n: n)
    }
    public func forward(n: Int, groupSize: Int, team: TeamPart) {
        precondition(groupSize >= n && team.count == 1, "\(Self.self) does not run micro-batches in lockstep")
        forward(n: n)
    }
    public func backward(n: Int, groupSize: Int, team: TeamPart, fixedPoint: FixedPointTarget?, weightsFinal: (Range<Int>) -> Void) {
        precondition(groupSize >= n && team.count == 1, "\(Self.self) does not run micro-batches in lockstep")
        backward(n: n)
        weightsFinal(trainable)
    }
}

/// Which model a run trains; stored in checkpoints and weights files.
public enum ModelSpec: Sendable, Equatable {
    /// The convolutional denoiser (ConvDenoiser.swift): two convolutions and pools, two transposed convolutions.
    case conv(ConvSpec)
    /// The U-Net (UNet.swift): 2 to 5 levels with skip connections.
    case unet(UNetSpec)
    /// The stacked fully connected denoiser (StackedDenoiser.swift), trained layer by layer.
    case stacked(StackedSpec)

    /// The reference ConvDenoiser: one channel, widths 32 and 64 (MNIST's model, and the model of
    /// every file written without channels and widths).
    public static let reference = ModelSpec.conv(ConvSpec())

    /// The model's kind as its metadata names it.
    public var name: String {
        switch self {
        case .conv: return "ConvDenoiser"
        case .unet: return "UNet"
        case .stacked: return "StackedDenoiser"
        }
    }

    /// One line for logs and the settings a checkpoint must share with the run that resumes it,
    /// e.g. "ConvDenoiser 1->32,64" or "UNet 3->32,64,128".
    public var description: String {
        switch self {
        case .conv(let s): return "\(name) \(s.channels)->\(Self.widthsText(s.widths))"
        case .unet(let s): return "\(name) \(s.channels)->\(Self.widthsText(s.widths))"
        case .stacked(let s): return s.description
        }
    }

    /// Channels per pixel of the images the model takes and returns (1 for the stacked model).
    public var channels: Int {
        switch self {
        case .conv(let s): return s.channels
        case .unet(let s): return s.channels
        case .stacked: return 1
        }
    }

    /// Whether the model's passes run layer by layer (DenoisingNetwork's `groupSize`/team calls):
    /// the stacked model's fully connected layers. In fast mode a team of threads runs one replica,
    /// each thread a part of every layer's features (Team.swift); in exact mode each worker runs
    /// its micro-batches in lockstep, layer by layer. The convolutional models run a replica per
    /// thread, a micro-batch at a time.
    public var runsLayerByLayer: Bool {
        if case .stacked = self { return true }
        return false
    }

    /// Image sides must be multiples of this: 4 for the convolutional model (two 2x2 pools),
    /// 2^(levels-1) for the U-Net, 1 for the stacked model (which takes one fixed size).
    public var sideMultiple: Int {
        switch self {
        case .conv: return 4
        case .unet(let s): return 1 << (s.widths.count - 1)
        case .stacked: return 1
        }
    }

    /// The largest distance in pixels, along either axis, from an output pixel to an input pixel
    /// it depends on: a tile of an image computed with this much context on each side gives the
    /// same output as the whole image (away from the image's own borders). 0 for the stacked model,
    /// whose every output depends on every input (it is never tiled). See `ReceptiveField`.
    public var receptiveRadius: Int {
        switch self {
        case .conv: return ReceptiveField.convDenoiser
        case .unet(let s): return ReceptiveField.unet(levels: s.widths.count)
        case .stacked: return 0
        }
    }

    public func makeLayout() -> ParameterLayout {
        switch self {
        case .conv(let s): return ConvDenoiser.makeLayout(s)
        case .unet(let s): return UNet.makeLayout(s)
        case .stacked(let s): return StackedDenoiser.makeLayout(s)
        }
    }

    /// A network for batches of up to `capacity`, reading `parameters` (shared by all replicas).
    public func makeNetwork(height: Int, width: Int, capacity: Int, parameters: FloatBuffer) -> DenoisingNetwork {
        switch self {
        case .conv(let s): return ConvDenoiser(s, height: height, width: width, capacity: capacity, sharedParameters: parameters)
        case .unet(let s): return UNet(s, height: height, width: width, capacity: capacity, sharedParameters: parameters)
        case .stacked(let s): return StackedDenoiser(s, capacity: capacity, sharedParameters: parameters)
        }
    }

    /// The image-to-image autoencoder (pixels in, pixels out) for evaluation, sampling, features
    /// and denoising: all of the model, or for a stacked checkpoint saved during pre-training the
    /// layers trained up to `afterPhase` (see `Weights.trainedPhase`).
    public func makeImageAutoencoder(height: Int, width: Int, capacity: Int, parameters: FloatBuffer,
                                     afterPhase: Int = Int.max) -> DenoisingNetwork {
        let network = makeNetwork(height: height, width: width, capacity: capacity, parameters: parameters)
        network.setImageAutoencoder(afterPhase: afterPhase)
        return network
    }

    /// Checks that images of height x width with `channels` channels fit the model.
    public func check(height: Int, width: Int, channels: Int, source: String) throws(DAEError) {
        guard channels == self.channels else {
            throw DAEError.data(path: source, problem: "images have \(channels) channel\(channels == 1 ? "" : "s") but the model (\(description)) takes \(self.channels)")
        }
        switch self {
        case .conv, .unet:
            let m = sideMultiple
            guard height % m == 0, width % m == 0, height > 0, width > 0 else {
                let model = name == "UNet" ? "the U-Net with \(sideMultiple.trailingZeroBitCount + 1) levels" : "the convolutional model"
                throw DAEError.data(path: source, problem: "images are \(height)x\(width); \(model) needs sides that are multiples of \(m)")
            }
        case .stacked(let s):
            guard height * width == s.inputSize else {
                throw DAEError.data(path: source, problem: "images are \(height)x\(width) (\(height * width) pixels) but the stacked model takes \(s.inputSize) inputs")
            }
        }
    }

    /// Checks that gray images (one channel) of height x width fit the model.
    public func check(height: Int, width: Int, source: String) throws(DAEError) {
        try check(height: height, width: width, channels: 1, source: source)
    }

    /// The most parameters a model may have: 100 million (400 MB per copy; training keeps
    /// parameters, gradients, two Adam moments and integer accumulators).
    public static let maxParameters = StackedSpec.maxParameters

    /// Rejects shapes dae-dist does not train (widths count and range, channels, more than
    /// `maxParameters` parameters), naming `flag`.
    public func checkSize(flag: String = "--widths") throws(DAEError) {
        switch self {
        case .conv(let s): try s.checkSize(flag: flag)
        case .unet(let s): try s.checkSize(flag: flag)
        case .stacked(let s): try s.checkSize()
        }
    }

    /// Metadata keys describing the model, for weights files and checkpoints.
    public var metadata: [String: String] {
        switch self {
        case .conv(let s):
            return ["model": name, "channels": String(s.channels), "widths": Self.widthsText(s.widths)]
        case .unet(let s):
            return ["model": name, "channels": String(s.channels), "widths": Self.widthsText(s.widths)]
        case .stacked(let s):
            return ["model": name, "input_size": String(s.inputSize), "hidden": s.hidden.map(String.init).joined(separator: ","),
                    "activation": s.activation.rawValue, "tied_weights": s.tied ? "true" : "false"]
        }
    }

    /// The model a weights file or checkpoint holds. Files without a model key are the reference
    /// convolutional model, which is all that dae-dist wrote before the stacked model, and
    /// ConvDenoiser files without channels and widths are the reference model too.
    public init(metadata: [String: String], path: String) throws(DAEError) {
        switch metadata["model"] {
        case nil, "ConvDenoiser":
            let channels = try Self.channels(metadata["channels"] ?? "1", path: path)
            let widths = try Self.parseWidths(metadata["widths"] ?? "32,64", flag: path)
            let spec = ConvSpec(channels: channels, widths: widths)
            do { try spec.checkSize(flag: "widths") } catch { throw DAEError.checkpoint(path: path, problem: "its ConvDenoiser \(error)") }
            self = .conv(spec)
        case "UNet":
            guard let channelsText = metadata["channels"], let widthsText = metadata["widths"] else {
                throw DAEError.checkpoint(path: path, problem: "a UNet file needs channels and widths in its metadata")
            }
            let spec = UNetSpec(channels: try Self.channels(channelsText, path: path), widths: try Self.parseWidths(widthsText, flag: path))
            do { try spec.checkSize(flag: "widths") } catch { throw DAEError.checkpoint(path: path, problem: "its UNet \(error)") }
            self = .unet(spec)
        case "StackedDenoiser":
            guard let inputs = metadata["input_size"].flatMap({ Int($0) }), (1...StackedSpec.maxInputSize).contains(inputs),
                  let hiddenText = metadata["hidden"], let activationText = metadata["activation"],
                  let activation = StackedSpec.Activation(rawValue: activationText) else {
                throw DAEError.checkpoint(path: path, problem: "a StackedDenoiser file needs input_size, hidden and activation in its metadata")
            }
            let hidden = try StackedSpec.parseHidden(hiddenText, flag: path)
            let spec = StackedSpec(inputSize: inputs, hidden: hidden, activation: activation, tied: metadata["tied_weights"] == "true")
            do { try spec.checkSize() } catch { throw DAEError.checkpoint(path: path, problem: "its stacked model is larger than dae-dist accepts") }
            self = .stacked(spec)
        case let other?:
            throw DAEError.checkpoint(path: path, problem: "model '\(other)' is not one dae-dist knows (ConvDenoiser, UNet, StackedDenoiser)")
        }
    }

    /// The most channels an image may have.
    public static let maxChannels = 64
    /// The widest a convolutional or U-Net layer may be.
    public static let maxWidth = 1024

    /// Parses layer widths "32,64,128" of the convolutional model or the U-Net: 2 to 5 widths
    /// between 1 and 1024 (the convolutional model takes exactly 2: see ConvSpec.checkSize).
    public static func parseWidths(_ text: String, flag: String = "--widths") throws(DAEError) -> [Int] {
        var widths: [Int] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let w = Int(part.trimmingCharacters(in: .whitespaces)), (1...maxWidth).contains(w) else {
                throw DAEError.badFlag(flag, "'\(text)': give layer widths between 1 and \(maxWidth), comma-separated, e.g. 32,64,128")
            }
            widths.append(w)
        }
        guard (2...5).contains(widths.count) else { throw DAEError.badFlag(flag, "'\(text)': give 2 to 5 layer widths") }
        return widths
    }

    static func widthsText(_ widths: [Int]) -> String { widths.map(String.init).joined(separator: ",") }

    /// The checks ConvSpec and UNetSpec share, naming `flag`: widths from 1 to maxWidth, 1 to
    /// maxChannels channels, at most maxParameters parameters (`parameters`: the layout's count).
    static func checkShape(widths: [Int], channels: Int, parameters: () -> Int, model: String, flag: String) throws(DAEError) {
        let text = widthsText(widths)
        guard widths.allSatisfy({ (1...maxWidth).contains($0) }) else {
            throw DAEError.badFlag(flag, "'\(text)': give layer widths between 1 and \(maxWidth)")
        }
        guard (1...maxChannels).contains(channels) else {
            throw DAEError.badFlag(flag, "\(channels) channels: \(model) takes 1 to \(maxChannels)")
        }
        let parameters = parameters()     // counted once the widths are known to be sane
        guard parameters <= maxParameters else {
            throw DAEError.badFlag(flag, "\(text) on \(channels) channels makes \(parameters) parameters, more than the \(maxParameters) supported; use narrower layers")
        }
    }

    static func channels(_ text: String, path: String) throws(DAEError) -> Int {
        guard let c = Int(text), (1...maxChannels).contains(c) else {
            throw DAEError.checkpoint(path: path, problem: "channels '\(text)' in its metadata is not a count from 1 to \(maxChannels)")
        }
        return c
    }
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

/// The stacked denoising autoencoder's shape: inputSize -> hidden[0] -> ... -> hidden[L-1].
public struct StackedSpec: Sendable, Equatable {
    public enum Activation: String, Sendable, CaseIterable { case sigmoid, relu }
    public var inputSize: Int
    public var hidden: [Int]
    public var activation: Activation
    public var tied: Bool

    public init(inputSize: Int, hidden: [Int], activation: Activation = .sigmoid, tied: Bool = false) {
        self.inputSize = inputSize; self.hidden = hidden; self.activation = activation; self.tied = tied
    }

    public static let maxInputSize = 1 << 24
    /// The most parameters a stacked model may have: 100 million (400 MB per copy; training
    /// keeps parameters, gradients, two Adam moments and integer accumulators).
    public static let maxParameters = 100_000_000

    /// Rejects models too large to train here, naming --hidden.
    public func checkSize() throws(DAEError) {
        let count = StackedDenoiser.makeLayout(self).count
        guard count <= Self.maxParameters else {
            throw DAEError.badFlag("--hidden", "\(hidden.map(String.init).joined(separator: ",")) on \(inputSize) inputs makes \(count) parameters, more than the \(Self.maxParameters) supported; use narrower layers")
        }
    }

    /// Widths from the input up: [inputSize, hidden...].
    public var widths: [Int] { [inputSize] + hidden }

    public var description: String {
        "StackedDenoiser \(widths.map(String.init).joined(separator: "-")) \(activation.rawValue)\(tied ? " tied" : "")"
    }

    /// Parses "1000,1000,1000": 1 to 8 layers of 1 to 16384 units.
    public static func parseHidden(_ text: String, flag: String = "--hidden") throws(DAEError) -> [Int] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        var widths: [Int] = []
        for part in parts {
            guard let w = Int(part.trimmingCharacters(in: .whitespaces)), (1...16_384).contains(w) else {
                throw DAEError.badFlag(flag, "'\(text)': give layer widths between 1 and 16384, comma-separated, e.g. 1000,1000,1000")
            }
            widths.append(w)
        }
        guard (1...8).contains(widths.count) else { throw DAEError.badFlag(flag, "'\(text)': give 1 to 8 layer widths") }
        return widths
    }
}

import Foundation
