// The one registry of the models dae-dist trains. A model's shape is a spec type conforming to
// ModelArchitecture (ConvSpec, UNetSpec, StackedSpec, each beside its network): its kind (the
// --model value, config.json's model_kind), its class (checkpoint metadata's "model", the PyTorch
// class of docs/pytorch-models.md), the flags that set it, its parameter layout, network, image
// geometry (side multiple, receptive field for tiling), metadata and one-line description.
// ModelSpec holds one of them; the rest of dae-dist asks ModelSpec and never lists the kinds.
//
// Adding a model: its spec type (conforming to ModelArchitecture) and network in one file, and
// its type in `ModelSpec.registry`.

import Foundation

/// What the train command's model flags say (nil: not given); each model takes the ones it
/// lists in `ModelArchitecture.flags` and is built from them by `init(flags:base:)`.
public struct ModelFlags: Sendable {
    public var widths: String? = nil        // --widths
    public var hidden: String? = nil        // --hidden (the stacked model's name for its widths)
    public var channels: Int? = nil         // --channels
    public var activation: String? = nil    // --activation
    public var tiedWeights = false          // --tied-weights
    public var depth: Int? = nil            // --depth
    public init() {}

    /// The flags given, by name, for the refusal of a flag the model does not take.
    public var given: [String] {
        [("--widths", widths != nil), ("--hidden", hidden != nil), ("--channels", channels != nil), ("--activation", activation != nil),
         ("--tied-weights", tiedWeights), ("--depth", depth != nil)].filter(\.1).map(\.0)
    }
}

public protocol ModelArchitecture: Sendable, Codable, Equatable {
    /// The --model value and config.json's model_kind, e.g. "unet".
    static var kind: String { get }
    /// The class name in checkpoint metadata ("model") and in docs/pytorch-models.md, e.g. "UNet".
    static var className: String { get }
    /// One line for --help: what the model is for.
    static var summary: String { get }
    /// The model flags it takes (ModelFlags.given's names); any other given is refused.
    static var flags: Set<String> { get }
    /// The flags that set its shape, for a resume's mismatch message.
    static var shapeFlags: String { get }
    /// The model the flags describe, on top of `base` (a resumed run's model of this kind).
    init(flags: ModelFlags, base: Self?) throws(DAEError)
    /// The model a file's metadata describes (its "model" key named this class).
    init(metadata: [String: String], path: String) throws(DAEError)

    /// Metadata keys describing the shape (without "model"), for weights files and checkpoints.
    var metadata: [String: String] { get }
    /// One line for logs, and the shape a resume must match: "UNet 3->32,64,128".
    var description: String { get }
    /// Channels of the images it takes and returns.
    var channels: Int { get }
    /// The model with what only the data tells (the stacked model's input size, the channels of
    /// an image model when --channels was not given).
    func completed(channels: Int, imageSize: Int) throws(DAEError) -> Self
    /// Image sides must be multiples of this.
    var sideMultiple: Int { get }
    /// How far an output pixel sees (ReceptiveField); 0 for a model that is never tiled.
    var receptiveRadius: Int { get }
    /// Rejects shapes dae-dist does not train, naming `flag`.
    func checkSize(flag: String) throws(DAEError)
    /// Checks that images of height x width fit (channels are checked by ModelSpec).
    func check(height: Int, width: Int, source: String) throws(DAEError)
    func makeLayout() -> ParameterLayout
    /// A network for batches of up to `capacity` images, reading `parameters`.
    func makeNetwork(height: Int, width: Int, capacity: Int, parameters: FloatBuffer) -> DenoisingNetwork
    /// How denoising tiles large images (nil: never tiled, whole images of one size only).
    func tileGeometry() -> TileGeometry?
    /// Whether its passes run layer by layer (see ModelSpec.runsLayerByLayer).
    var runsLayerByLayer: Bool { get }
    /// Whether its outputs are confined to [0,1] (a sigmoid's), which BCE needs.
    var outputInUnitRange: Bool { get }
}

extension ModelArchitecture {
    public var runsLayerByLayer: Bool { false }
    public var outputInUnitRange: Bool { true }
    func isEqual(to other: any ModelArchitecture) -> Bool { (other as? Self) == self }
}

/// Which model a run trains: one registered architecture. Stored in checkpoints and weights files
/// (`metadata`) and in config.json (Codable: {"kind": "unet", "channels": 1, "widths": [...]}).
public struct ModelSpec: Sendable, Equatable, Codable, CustomStringConvertible {
    public let architecture: any ModelArchitecture

    public init(_ architecture: any ModelArchitecture) { self.architecture = architecture }

    /// Every model dae-dist knows, in the order --help lists them.
    public static let registry: [any ModelArchitecture.Type] = [ConvSpec.self, UNetSpec.self, StackedSpec.self, DnCNNSpec.self]

    /// The registered architecture of a --model value or config.json's model_kind.
    public static func architecture(kind: String) -> (any ModelArchitecture.Type)? {
        registry.first { $0.kind == kind }
    }

    /// The --model values, e.g. "conv, unet or stacked".
    public static var kindsText: String {
        let kinds = registry.map { $0.kind }
        return kinds.count < 2 ? kinds.joined() : kinds.dropLast().joined(separator: ", ") + " or " + kinds.last!
    }

    public static func conv(_ spec: ConvSpec) -> ModelSpec { ModelSpec(spec) }
    public static func unet(_ spec: UNetSpec) -> ModelSpec { ModelSpec(spec) }
    public static func stacked(_ spec: StackedSpec) -> ModelSpec { ModelSpec(spec) }

    /// The reference ConvDenoiser: one channel, widths 32 and 64 (MNIST's model, and the model of
    /// every file written without channels and widths).
    public static let reference = ModelSpec.conv(ConvSpec())

    public static func == (lhs: ModelSpec, rhs: ModelSpec) -> Bool { lhs.architecture.isEqual(to: rhs.architecture) }

    /// The kind: the --model value ("conv").
    public var kind: String { type(of: architecture).kind }
    /// The model's class as its metadata names it ("ConvDenoiser").
    public var name: String { type(of: architecture).className }
    public var description: String { architecture.description }
    public var channels: Int { architecture.channels }
    public var sideMultiple: Int { architecture.sideMultiple }
    public var receptiveRadius: Int { architecture.receptiveRadius }
    /// Whether the model's passes run layer by layer (DenoisingNetwork's `groupSize`/team calls):
    /// the stacked model's fully connected layers. In fast mode a team of threads runs one replica,
    /// each thread a part of every layer's features (Team.swift); in exact mode each worker runs
    /// its micro-batches in lockstep, layer by layer. The convolutional models run a replica per
    /// thread, a micro-batch at a time.
    public var runsLayerByLayer: Bool { architecture.runsLayerByLayer }
    /// Whether the model's outputs are confined to [0,1] (BCE needs it).
    public var outputInUnitRange: Bool { architecture.outputInUnitRange }
    /// The flags that set the model's shape (for a resume's mismatch message).
    public var shapeFlags: String { type(of: architecture).shapeFlags }

    /// Whether denoising cuts large images into tiles (a model with a finite receptive field);
    /// the stacked model takes whole images of its one size.
    public var tiled: Bool { receptiveRadius > 0 }

    /// The stacked model's spec (its phases, pre-training and tying are its own), or nil.
    public var stackedSpec: StackedSpec? { architecture as? StackedSpec }

    public func makeLayout() -> ParameterLayout { architecture.makeLayout() }

    /// A network for batches of up to `capacity`, reading `parameters` (shared by all replicas).
    public func makeNetwork(height: Int, width: Int, capacity: Int, parameters: FloatBuffer) -> DenoisingNetwork {
        architecture.makeNetwork(height: height, width: width, capacity: capacity, parameters: parameters)
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

    /// The model with what only the data tells (see ModelArchitecture.completed).
    public func completed(channels: Int, imageSize: Int) throws(DAEError) -> ModelSpec {
        ModelSpec(try architecture.completed(channels: channels, imageSize: imageSize))
    }

    /// Checks that images of height x width with `channels` channels fit the model.
    public func check(height: Int, width: Int, channels: Int, source: String) throws(DAEError) {
        guard channels == self.channels else {
            throw DAEError.data(path: source, problem: "images have \(channels) channel\(channels == 1 ? "" : "s") but the model (\(description)) takes \(self.channels)")
        }
        try architecture.check(height: height, width: width, source: source)
    }

    /// Checks that gray images (one channel) of height x width fit the model.
    public func check(height: Int, width: Int, source: String) throws(DAEError) {
        try check(height: height, width: width, channels: 1, source: source)
    }

    /// The most parameters a model may have: 100 million (400 MB per copy; training keeps
    /// parameters, gradients, two Adam moments and integer accumulators).
    public static let maxParameters = 100_000_000

    /// Rejects shapes dae-dist does not train, naming `flag`.
    public func checkSize(flag: String = "--widths") throws(DAEError) { try architecture.checkSize(flag: flag) }

    /// Metadata keys describing the model, for weights files and checkpoints.
    public var metadata: [String: String] { architecture.metadata.merging(["model": name]) { $1 } }

    /// The model a weights file or checkpoint holds. Files without a model key are the reference
    /// convolutional model, which is all that dae-dist wrote before the stacked model.
    public init(metadata: [String: String], path: String) throws(DAEError) {
        let className = metadata["model"] ?? ConvSpec.className
        guard let type = Self.registry.first(where: { $0.className == className }) else {
            let known = Self.registry.map { $0.className }.joined(separator: ", ")
            throw DAEError.checkpoint(path: path, problem: "model '\(className)' is not one this dae-dist knows (\(known)); use the dae-dist that wrote it")
        }
        self.init(try type.init(metadata: metadata, path: path))
    }

    /// The model the train flags name: `kind` (nil: the base's, or conv) on top of `base`, a
    /// resumed run's model, whose settings carry over when the kind is the same. A given flag the
    /// kind does not take is refused rather than ignored (a forgotten --model, say).
    public static func fromFlags(kind: String?, _ flags: ModelFlags, base: ModelSpec?) throws(DAEError) -> ModelSpec {
        let kind = kind ?? base?.kind ?? ConvSpec.kind
        guard let type = architecture(kind: kind) else {
            throw DAEError.badFlag("--model", "'\(kind)' is not a model dae-dist knows; use \(kindsText)")
        }
        for flag in flags.given where !type.flags.contains(flag) {
            let takers = registry.filter { $0.flags.contains(flag) }.map { $0.kind }
            let models = takers.count == 1 ? "the \(takers[0]) model" : "the \(takers.dropLast().joined(separator: ", ")) and \(takers.last!) models"
            throw DAEError.badFlag(flag, "applies to \(models) only, not --model \(kind); add \(takers.map { "--model \($0)" }.joined(separator: " or "))")
        }
        return ModelSpec(try type.make(flags: flags, base: base?.kind == kind ? base?.architecture : nil))
    }

    // Codable: the kind, then the architecture's own keys, in one object.
    enum KindKey: String, CodingKey { case kind }

    public init(from decoder: Decoder) throws {
        let kind = try decoder.container(keyedBy: KindKey.self).decode(String.self, forKey: .kind)
        guard let type = Self.architecture(kind: kind) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath + [KindKey.kind],
                                                    debugDescription: "model kind '\(kind)' is not one this dae-dist knows (\(Self.kindsText))"))
        }
        self.init(try type.init(from: decoder))
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: KindKey.self)
        try container.encode(kind, forKey: .kind)
        try architecture.encode(to: encoder)
    }

    // Shared by the architectures' checks and parsers.

    /// The most channels an image may have.
    public static let maxChannels = 64
    /// The widest a convolutional layer may be.
    public static let maxWidth = 1024

    /// Parses layer widths "32,64,128" of a convolutional model: 1 to 5 widths between 1 and
    /// 1024 (each model checks its own count: ConvSpec.checkSize, UNetSpec.checkSize).
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

    /// The checks the image models share, naming `flag`: widths from 1 to maxWidth, 1 to
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

    /// A --channels value (1 gray or 3 RGB) for an image model.
    static func checkChannelsFlag(_ channels: Int?) throws(DAEError) {
        if let channels, channels != 1 && channels != 3 { throw .badFlag("--channels", "must be 1 (gray) or 3 (RGB), got \(channels)") }
    }

    /// A metadata "channels" value.
    static func channels(_ text: String, path: String) throws(DAEError) -> Int {
        guard let c = Int(text), (1...maxChannels).contains(c) else {
            throw DAEError.checkpoint(path: path, problem: "channels '\(text)' in its metadata is not a count from 1 to \(maxChannels)")
        }
        return c
    }

    /// An image model's sides: positive multiples of sideMultiple.
    static func checkSides(height: Int, width: Int, multiple m: Int, model: String, source: String) throws(DAEError) {
        guard height % m == 0, width % m == 0, height > 0, width > 0 else {
            throw DAEError.data(path: source, problem: "images are \(height)x\(width); \(model) needs sides that are multiples of \(m)")
        }
    }
}

extension ModelArchitecture {
    /// `init(flags:base:)` with a base of any architecture (one of this type, or nil).
    static func make(flags: ModelFlags, base: (any ModelArchitecture)?) throws(DAEError) -> Self {
        try Self(flags: flags, base: base as? Self)
    }
}
