// The stacked denoising autoencoder's shape and its entry in the model registry
// (ModelRegistry.swift); the network is StackedDenoiser.swift.

/// The stacked denoising autoencoder's shape: inputSize -> hidden[0] -> ... -> hidden[L-1].
public struct StackedSpec: Sendable, Equatable {
    public enum Activation: String, Sendable, CaseIterable, Codable { case sigmoid, relu }
    public var inputSize: Int
    public var hidden: [Int]
    public var activation: Activation
    public var tied: Bool

    public init(inputSize: Int, hidden: [Int], activation: Activation = .sigmoid, tied: Bool = false) {
        self.inputSize = inputSize; self.hidden = hidden; self.activation = activation; self.tied = tied
    }

    public static let maxInputSize = 1 << 24
    /// The most parameters a stacked model may have (ModelSpec.maxParameters).
    public static let maxParameters = ModelSpec.maxParameters

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

extension StackedSpec: ModelArchitecture {
    public static let kind = "stacked"
    public static let className = "StackedDenoiser"
    public static let summary = "fully connected, trained layer by layer as in Vincent et al."
    public static let flags: Set<String> = ["--widths", "--hidden", "--activation", "--tied-weights"]
    public static let shapeFlags = "--hidden, --activation or --tied-weights"

    public init(flags: ModelFlags, base: StackedSpec?) throws(DAEError) {
        if flags.widths != nil && flags.hidden != nil { throw .badFlag("--hidden", "is the same as --widths; give one of them") }
        let layers = try (flags.widths ?? flags.hidden).map { text throws(DAEError) in
            try Self.parseHidden(text, flag: flags.widths != nil ? "--widths" : "--hidden")
        } ?? base?.hidden ?? [1000, 1000, 1000]
        var activation = base?.activation ?? .sigmoid
        if let text = flags.activation {
            guard let given = Activation(rawValue: text.lowercased()) else {
                throw .badFlag("--activation", "'\(text)' is not one of sigmoid, relu")
            }
            activation = given
        }
        self.init(inputSize: base?.inputSize ?? 0, hidden: layers, activation: activation, tied: flags.tiedWeights || (base?.tied ?? false))
    }

    public init(metadata: [String: String], path: String) throws(DAEError) {
        guard let inputs = metadata["input_size"].flatMap({ Int($0) }), (1...Self.maxInputSize).contains(inputs),
              let hiddenText = metadata["hidden"], let activationText = metadata["activation"],
              let activation = Activation(rawValue: activationText) else {
            throw DAEError.checkpoint(path: path, problem: "a StackedDenoiser file needs input_size, hidden and activation in its metadata")
        }
        self.init(inputSize: inputs, hidden: try Self.parseHidden(hiddenText, flag: path), activation: activation,
                  tied: metadata["tied_weights"] == "true")
        do { try checkSize() } catch { throw DAEError.checkpoint(path: path, problem: "its stacked model is larger than dae-dist accepts") }
    }

    public var metadata: [String: String] {
        ["input_size": String(inputSize), "hidden": hidden.map(String.init).joined(separator: ","),
         "activation": activation.rawValue, "tied_weights": tied ? "true" : "false"]
    }
    /// Gray images only.
    public var channels: Int { 1 }
    /// Its input size is the data's pixels.
    public func completed(channels: Int, imageSize: Int) throws(DAEError) -> StackedSpec {
        var spec = self
        spec.inputSize = imageSize
        try spec.checkSize()
        return spec
    }
    /// It takes whole images of one size.
    public var sideMultiple: Int { 1 }
    /// Every output depends on every input: never tiled.
    public var receptiveRadius: Int { 0 }
    public func checkSize(flag: String) throws(DAEError) { try checkSize() }
    public func check(height: Int, width: Int, source: String) throws(DAEError) {
        guard height * width == inputSize else {
            throw DAEError.data(path: source, problem: "images are \(height)x\(width) (\(height * width) pixels) but the stacked model takes \(inputSize) inputs")
        }
    }
    public func makeLayout() -> ParameterLayout { StackedDenoiser.makeLayout(self) }
    public func makeNetwork(height: Int, width: Int, capacity: Int, parameters: FloatBuffer) -> DenoisingNetwork {
        StackedDenoiser(self, capacity: capacity, sharedParameters: parameters)
    }
    public func tileGeometry() -> TileGeometry? { nil }
    /// Fully connected layers, run layer by layer (by a team, or micro-batches in lockstep).
    public var runsLayerByLayer: Bool { true }
}

import Foundation
