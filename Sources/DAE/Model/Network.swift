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

    /// The shape of one sample's feature vector (the encoder's output), e.g. [64, 7, 7].
    var codeShape: [Int] { get }
    /// Runs the whole encoder on clean images in `input` (after `setImageAutoencoder`).
    func encode(n: Int)
    /// Copies sample i's code (of the last `encode` of n samples) into `out`, codeShape in C order.
    func copyCode(sample i: Int, n: Int, into out: UnsafeMutablePointer<Float>)
}

/// Which model a run trains; stored in checkpoints and weights files.
public enum ModelSpec: Sendable, Equatable {
    case conv
    case stacked(StackedSpec)

    public var name: String {
        switch self {
        case .conv: return "ConvDenoiser"
        case .stacked: return "StackedDenoiser"
        }
    }

    /// One line for logs and the settings a checkpoint must share with the run that resumes it.
    public var description: String {
        switch self {
        case .conv: return "ConvDenoiser"
        case .stacked(let s): return s.description
        }
    }

    public func makeLayout() -> ParameterLayout {
        switch self {
        case .conv: return ConvDenoiser.makeLayout()
        case .stacked(let s): return StackedDenoiser.makeLayout(s)
        }
    }

    /// A network for batches of up to `capacity`, reading `parameters` (shared by all replicas).
    public func makeNetwork(height: Int, width: Int, capacity: Int, parameters: FloatBuffer) -> DenoisingNetwork {
        switch self {
        case .conv: return ConvDenoiser(height: height, width: width, capacity: capacity, sharedParameters: parameters)
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

    /// Checks that images of height x width fit the model.
    public func check(height: Int, width: Int, source: String) throws(DAEError) {
        switch self {
        case .conv:
            guard height % 4 == 0, width % 4 == 0 else {
                throw DAEError.data(path: source, problem: "images are \(height)x\(width); the convolutional model needs sides that are multiples of 4")
            }
        case .stacked(let s):
            guard height * width == s.inputSize else {
                throw DAEError.data(path: source, problem: "images are \(height)x\(width) (\(height * width) pixels) but the stacked model takes \(s.inputSize) inputs")
            }
        }
    }

    /// Metadata keys describing the model, for weights files and checkpoints.
    public var metadata: [String: String] {
        switch self {
        case .conv: return ["model": name]
        case .stacked(let s):
            return ["model": name, "input_size": String(s.inputSize), "hidden": s.hidden.map(String.init).joined(separator: ","),
                    "activation": s.activation.rawValue, "tied_weights": s.tied ? "true" : "false"]
        }
    }

    /// The model a weights file or checkpoint holds (files without a model key are the
    /// convolutional model, which is all that dae-dist wrote before the stacked model).
    public init(metadata: [String: String], path: String) throws(DAEError) {
        switch metadata["model"] {
        case nil, "ConvDenoiser":
            self = .conv
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
            throw DAEError.checkpoint(path: path, problem: "model '\(other)' is not one dae-dist knows (ConvDenoiser, StackedDenoiser)")
        }
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
