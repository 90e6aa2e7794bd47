// DnCNN (Zhang, Zuo, Chen, Meng and Zhang, "Beyond a Gaussian Denoiser", 2017), layer for layer
// the PyTorch DnCNN of docs/pytorch-models.md (its state_dict names are this layout's names):
//
//   body = Sequential(Conv2d(C, w, 3, padding=1), ReLU,                 # body.0 .1
//                     [Conv2d(w, w, 3, padding=1), ReLU] x (depth - 2), # body.2 .3, ..., body.2(depth-2)
//                     Conv2d(w, C, 3, padding=1))                       # body.2(depth-1)
//   y = x - body(x)                                                     residual learning
//
// The network predicts the noise and the output is the input minus it: no sigmoid, no clamp (as
// the PyTorch class), so its outputs may leave [0,1] (denoise clamps when it writes pixels, eval
// scores the values as they are) and it trains with MSE only. Batch normalisation, which the
// paper puts after every inner convolution, is left out: its batch statistics would make the
// result depend on how a step's samples are split over ranks, threads and micro-batches, and
// dae-dist's results do not (the paper's own Figure 2 shows residual learning, not BN, doing
// most of the work at these depths).
//
// Shapes for a batch of n images of H x W (any sides: no pooling), activations [C, n, H, W]:
//   x [C, n, H, W] -> a_1 .. a_{depth-1} [w, n, H, W] (conv + ReLU) -> r [C, n, H, W] -> y = x - r

/// DnCNN's shape: `channels` in and out, `depth` 3x3 convolutions, `width` channels between them.
public struct DnCNNSpec: Sendable, Equatable, Codable {
    public var channels: Int
    public var depth: Int
    public var width: Int

    public init(channels: Int = 1, depth: Int = 17, width: Int = 64) {
        self.channels = channels; self.depth = depth; self.width = width
    }
}

public final class DnCNN: ImageNetwork {
    public let spec: DnCNNSpec

    /// The layers in forward (and state_dict) order, shapes per batch of n of H x W.
    public static func graph(_ spec: DnCNNSpec) -> NetworkGraph {
        let (c, w) = (spec.channels, spec.width)
        var g = NetworkGraph(channels: c)
        var t = g.input                                                            // x [C, n, H, W]
        for k in 0..<spec.depth - 1 {
            // a_{k+1} [w, n, H, W] = ReLU(conv(a_k)), a_0 = x
            t = g.add(Conv2dLayer("body.\(2 * k)", inChannels: k == 0 ? c : w, outChannels: w, kernel: 3), to: t, name: "conv\(k + 1)")
            t = g.add(ActivationLayer(.relu), to: t, name: "relu\(k + 1)")
        }
        g.code = t                                                                 // the last features, [w, n, H, W]
        // r [C, n, H, W] = conv(a_{depth-1}): the predicted noise
        let r = g.add(Conv2dLayer("body.\(2 * (spec.depth - 1))", inChannels: w, outChannels: c, kernel: 3), to: t, name: "conv\(spec.depth)")
        // y [C, n, H, W] = x - r
        g.output = g.add(SubtractLayer(), to: g.input, r, name: "residual")
        return g                                                                   // no decoder tail: decoderStart nil
    }

    public static func makeLayout(_ spec: DnCNNSpec) -> ParameterLayout { graph(spec).makeLayout() }

    /// A DnCNN for batches of up to `capacity` images of height x width; see ImageNetwork.init.
    public init(_ spec: DnCNNSpec, height: Int, width: Int, capacity: Int, sharedParameters: FloatBuffer? = nil) {
        self.spec = spec
        super.init(graph: Self.graph(spec), height: height, width: width, capacity: capacity, sharedParameters: sharedParameters)
    }
}

extension DnCNNSpec: ModelArchitecture {
    public static let kind = "dncnn"
    public static let className = "DnCNN"
    public static let summary = "residual denoiser, --depth 3x3 convolutions of --widths channels predicting the noise (Zhang et al. 2017)"
    public static let flags: Set<String> = ["--widths", "--channels", "--depth"]
    public static let shapeFlags = "--depth, --widths or --channels"
    public static let maxDepth = 64

    public init(flags: ModelFlags, base: DnCNNSpec?) throws(DAEError) {
        try ModelSpec.checkChannelsFlag(flags.channels)
        self = base ?? DnCNNSpec()
        if let text = flags.widths {
            guard let w = Int(text.trimmingCharacters(in: .whitespaces)), (1...ModelSpec.maxWidth).contains(w) else {
                throw .badFlag("--widths", "'\(text)': DnCNN takes one width between 1 and \(ModelSpec.maxWidth), e.g. 64")
            }
            width = w
        }
        if let depth = flags.depth { self.depth = depth }
        if let channels = flags.channels { self.channels = channels }
        try checkSize(flag: flags.depth != nil ? "--depth" : "--widths")
    }

    public init(metadata: [String: String], path: String) throws(DAEError) {
        guard let depth = metadata["depth"].flatMap({ Int($0) }), let width = metadata["widths"].flatMap({ Int($0) }) else {
            throw DAEError.checkpoint(path: path, problem: "a DnCNN file needs depth and widths in its metadata")
        }
        self.init(channels: try ModelSpec.channels(metadata["channels"] ?? "1", path: path), depth: depth, width: width)
        do { try checkSize(flag: "depth") } catch { throw DAEError.checkpoint(path: path, problem: "its DnCNN \(error)") }
    }

    public var metadata: [String: String] { ["channels": String(channels), "depth": String(depth), "widths": String(width)] }
    public var description: String { "\(Self.className) \(channels)->\(depth)x\(width)" }
    public func completed(channels: Int, imageSize: Int) -> DnCNNSpec { DnCNNSpec(channels: channels, depth: depth, width: width) }
    /// No pooling: any side.
    public var sideMultiple: Int { 1 }
    /// Each 3x3 convolution sees one pixel further.
    public var receptiveRadius: Int { depth }
    /// Its output is the input minus a prediction, not confined to [0,1]: MSE only.
    public var outputInUnitRange: Bool { false }

    public func checkSize(flag: String) throws(DAEError) {
        guard (3...Self.maxDepth).contains(depth) else {
            throw .badFlag("--depth", "\(depth): DnCNN takes 3 to \(Self.maxDepth) layers (the paper's: 17 for gray, 20 for colour)")
        }
        try ModelSpec.checkShape(widths: [width], channels: channels, parameters: { DnCNN.makeLayout(self).count }, model: "DnCNN", flag: flag)
    }

    public func check(height: Int, width: Int, source: String) throws(DAEError) {
        try ModelSpec.checkSides(height: height, width: width, multiple: 1, model: "DnCNN", source: source)
    }

    public func makeLayout() -> ParameterLayout { DnCNN.makeLayout(self) }
    public func makeNetwork(height: Int, width: Int, capacity: Int, parameters: FloatBuffer) -> DenoisingNetwork {
        DnCNN(self, height: height, width: width, capacity: capacity, sharedParameters: parameters)
    }
    /// A halo of its receptive radius, tiles of any side.
    public func tileGeometry() -> TileGeometry? {
        TileGeometry.measured(channels: channels, sideMultiple: 1, halo: depth, probeSide: 4) { side in
            DnCNN(self, height: side, width: side, capacity: 1)
        }
    }
}
