// The reference convolutional denoising autoencoder, layer for layer the PyTorch ConvDenoiser
// (docs/pytorch-models.md), for C channels and widths (w0, w1) (the reference: 1, (32, 64)):
//
//   encoder = Sequential(Conv2d(C,w0,3,padding=1), ReLU, MaxPool2d(2,2),     # encoder.0 .1 .2
//                        Conv2d(w0,w1,3,padding=1), ReLU, MaxPool2d(2,2))    # encoder.3 .4 .5
//   decoder = Sequential(ConvTranspose2d(w1,w0,2,stride=2), ReLU,            # decoder.0 .1
//                        ConvTranspose2d(w0,C,2,stride=2), Sigmoid)          # decoder.2 .3
//
// For an H x W image (28 x 28 for MNIST) and a batch of n, activations are [C, n, h, w]:
//   x [C,n,H,W] -conv1-> a1 [w0,n,H,W] -ReLU+pool-> p1 [w0,n,H/2,W/2] -conv2-> a2 [w1,n,H/2,W/2]
//   -ReLU+pool-> code [w1,n,H/4,W/4] -deconv1-> a3 [w0,n,H/2,W/2] -deconv2-> y [C,n,H,W]
// Each encoder ReLU is fused with the max-pool after it (ReLUMaxPool2d), so a1 and a2 hold the
// convolutions' outputs before the ReLU.
//
// `input`, `output` and `gradOutput` are sample-major, [n, C, H, W], as the data and the loss lay
// them out. With one channel that is x's (and y's) own memory; with more, x is copied from
// `input` at the start of the encoder, `output` from y at the end, and dy from `gradOutput` at the
// start of the backward pass (transposePlanes), so that the layers keep one GEMM per batch.
//
// The model is a NetworkGraph (`graph(_:)`) run by ImageNetwork: parameters and gradients are two
// flat buffers (see Parameters.swift); activations and workspaces are one arena its MemoryPlan
// sizes for a maximum batch `capacity`, so forward and backward allocate nothing. Any batch
// n <= capacity can run.

/// The convolutional model's shape: `channels` in and out, widths (conv1's, conv2's) in the encoder
/// and mirrored in the decoder.
public struct ConvSpec: Sendable, Equatable {
    public var channels: Int
    public var widths: [Int]

    public init(channels: Int = 1, widths: [Int] = [32, 64]) {
        self.channels = channels; self.widths = widths
    }

    /// Rejects shapes dae-dist does not train, naming `flag`: exactly two widths from 1 to
    /// ModelSpec.maxWidth, 1 to ModelSpec.maxChannels channels, at most ModelSpec.maxParameters parameters.
    public func checkSize(flag: String = "--widths") throws(DAEError) {
        let text = ModelSpec.widthsText(widths)
        guard widths.count == 2 else { throw DAEError.badFlag(flag, "'\(text)': the convolutional model takes exactly 2 widths, e.g. 32,64") }
        try ModelSpec.checkShape(widths: widths, channels: channels, parameters: { ConvDenoiser.makeLayout(self).count }, model: "the convolutional model", flag: flag)
    }
}

public final class ConvDenoiser: ImageNetwork {
    public let spec: ConvSpec

    /// The layers, forward order, with shapes for a batch of n of H x W (activations [C, n, h, w]).
    /// The encoder's ReLUs are fused into the pools after them (ReLUMaxPool2d), the decoder's ReLU
    /// and Sigmoid into the transposed convolutions before them. conv2 runs Winograd F(2x2, 3x3)
    /// (its sides, H/2 x W/2, are even); conv1 direct: with one (or three) input channels its
    /// Winograd GEMMs are that shallow and the transforms cost more than they save (`dae-dist
    /// bench --what conv`, measured for one; docs/benchmarks.md).
    public static func graph(_ spec: ConvSpec = ConvSpec()) -> NetworkGraph {
        let (c, h1, h2) = (spec.channels, spec.widths[0], spec.widths[1])
        var g = NetworkGraph(channels: c)
        // x [C, n, H, W] -> a1 [w0, n, H, W] (before its ReLU)
        var t = g.add(Conv2dLayer("encoder.0", inChannels: c, outChannels: h1, kernel: 3), to: g.input, name: "conv1")
        // -> p1 [w0, n, H/2, W/2]
        t = g.add(ReLUMaxPool2dLayer(), to: t, name: "relu+pool1")
        // -> a2 [w1, n, H/2, W/2] (before its ReLU)
        t = g.add(Conv2dLayer("encoder.3", inChannels: h1, outChannels: h2, kernel: 3, winograd: true), to: t, name: "conv2")
        // -> code [w1, n, H/4, W/4]
        t = g.add(ReLUMaxPool2dLayer(), to: t, name: "relu+pool2")
        g.code = t
        // -> a3 [w0, n, H/2, W/2] after its ReLU
        t = g.add(ConvTranspose2dLayer("decoder.0", inChannels: h2, outChannels: h1, activation: .relu), to: t, name: "deconv1")
        // -> y [C, n, H, W] after the Sigmoid
        t = g.add(ConvTranspose2dLayer("decoder.2", inChannels: h1, outChannels: c, activation: .sigmoid), to: t, name: "deconv2")
        g.output = t
        // the decoder is the tail of the parameters; its backward runs first
        g.decoderStart = "decoder.0.weight"
        return g
    }

    /// The parameter layout (PyTorch's state_dict names and order) of a convolutional model.
    public static func makeLayout(_ spec: ConvSpec = ConvSpec()) -> ParameterLayout {
        graph(spec).makeLayout()
    }

    /// A model for batches of up to `capacity` images of height x width (multiples of 4); see
    /// ImageNetwork.init for `sharedParameters`.
    public init(_ spec: ConvSpec = ConvSpec(), height: Int = 28, width: Int = 28, capacity: Int, sharedParameters: FloatBuffer? = nil) {
        precondition(height % 4 == 0 && width % 4 == 0 && capacity > 0 && spec.widths.count == 2 && spec.channels > 0)
        self.spec = spec
        super.init(graph: Self.graph(spec), height: height, width: width, capacity: capacity, sharedParameters: sharedParameters)
    }

    /// The encoder's output, [w1, n, H/4, W/4].
    public var code: UnsafeMutablePointer<Float> { value(codeTensor, capacity) }
    var conv1: Conv2d { (layer(named: "conv1") as! Conv2dLayer).conv! }
    var conv2: Conv2d { (layer(named: "conv2") as! Conv2dLayer).conv! }

    // Per-layer timing for the benchmark (launch/bench): ImageNetwork.phaseSeconds's slots, the
    // graph's layers forward then backward.
    public static let phaseNames = ["conv1 fwd", "relu+pool1 fwd", "conv2 fwd", "relu+pool2 fwd", "deconv1 fwd", "deconv2 fwd",
                                    "deconv2 bwd", "deconv1 bwd", "relu+pool2 bwd", "conv2 bwd", "relu+pool1 bwd", "conv1 bwd"]
    /// Floating-point operations per sample in each slot of `phaseNames` (a multiply-add counts
    /// 2), for the benchmark's share of the arithmetic peak. Only the GEMMs count: the pools and
    /// activations do no multiply-adds. Backward: weight and input gradients, each the forward's
    /// cost, except conv1, whose input (the noisy image) needs no gradient.
    public static func phaseFlops(_ spec: ConvSpec = ConvSpec(), height: Int = 28, width: Int = 28) -> [Double] {
        let (c, h1, h2) = (Double(spec.channels), Double(spec.widths[0]), Double(spec.widths[1]))
        let full = Double(height * width), half = full / 4, quarter = full / 16
        let conv1 = 2 * full * c * 9 * h1, conv2 = 2 * half * h1 * 9 * h2
        let deconv1 = 2 * quarter * h2 * h1 * 4, deconv2 = 2 * half * h1 * c * 4
        return [conv1, 0, conv2, 0, deconv1, deconv2, 2 * deconv2, 2 * deconv1, 0, 2 * conv2, 0, conv1]
    }
}

/// Seconds on the monotonic clock.
@inline(__always) public func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension ConvSpec: ModelArchitecture {
    public static let kind = "conv"
    public static let className = "ConvDenoiser"
    public static let summary = "the reference convolutional denoiser, MNIST's model"
    public static let flags: Set<String> = ["--widths", "--channels"]
    public static let shapeFlags = "--widths or --channels"

    public init(flags: ModelFlags, base: ConvSpec?) throws(DAEError) {
        try ModelSpec.checkChannelsFlag(flags.channels)
        self = base ?? ConvSpec()
        if let widths = flags.widths { self.widths = try ModelSpec.parseWidths(widths, flag: "--widths") }
        if let channels = flags.channels { self.channels = channels }
        try checkSize(flag: "--widths")
    }

    /// ConvDenoiser files without channels and widths are the reference model.
    public init(metadata: [String: String], path: String) throws(DAEError) {
        self.init(channels: try ModelSpec.channels(metadata["channels"] ?? "1", path: path),
                  widths: try ModelSpec.parseWidths(metadata["widths"] ?? "32,64", flag: path))
        do { try checkSize(flag: "widths") } catch { throw DAEError.checkpoint(path: path, problem: "its ConvDenoiser \(error)") }
    }

    public var metadata: [String: String] { ["channels": String(channels), "widths": ModelSpec.widthsText(widths)] }
    public var description: String { "\(Self.className) \(channels)->\(ModelSpec.widthsText(widths))" }
    public func completed(channels: Int, imageSize: Int) -> ConvSpec { ConvSpec(channels: channels, widths: widths) }
    /// Two 2x2 pools.
    public var sideMultiple: Int { 4 }
    public var receptiveRadius: Int { ReceptiveField.convDenoiser }
    public func check(height: Int, width: Int, source: String) throws(DAEError) {
        try ModelSpec.checkSides(height: height, width: width, multiple: 4, model: "the convolutional model", source: source)
    }
    public func makeLayout() -> ParameterLayout { ConvDenoiser.makeLayout(self) }
    public func makeNetwork(height: Int, width: Int, capacity: Int, parameters: FloatBuffer) -> DenoisingNetwork {
        ConvDenoiser(self, height: height, width: width, capacity: capacity, sharedParameters: parameters)
    }
    /// The reference analysis (TileGeometry.conv): a halo of 3 on tiles aligned to 4.
    public func tileGeometry() -> TileGeometry? {
        TileGeometry.measured(channels: channels, sideMultiple: 4, halo: 3, probeSide: 4) { side in
            ConvDenoiser(self, height: side, width: side, capacity: 1)
        }
    }
}
