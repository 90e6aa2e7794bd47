// A U-Net denoiser with L = 2...5 levels of widths w_0..w_{L-1}, layer for layer the PyTorch UNet
// of docs/pytorch-models.md (its state_dict names are this layout's names):
//
//   level 0:        s_0 = ReLU(conv3x3(ReLU(conv3x3(x))))                    encoder.0.0, encoder.0.2
//   level k >= 1:   s_k = ReLU(conv3x3(ReLU(conv3x3(MaxPool2d(2)(s_{k-1})))))  encoder.k.0, encoder.k.2
//   decoder, k = L-2 down to 0 (d_{L-1} = s_{L-1}):
//                   u_k = ReLU(ConvTranspose2d(w_{k+1}, w_k, 2, stride 2)(d_{k+1}))        up.k
//                   d_k = ReLU(conv3x3(cat([u_k, s_k], dim=1)))    (2 w_k -> w_k)     decoder.k.0
//   head:           y = Sigmoid(conv1x1(d_0))      (w_0 -> C)                         head
//
// Shapes for a batch of n images of H x W (sides multiples of 2^(L-1)), activations [C, n, h, w]
// with h_k = H / 2^k, w_k = W / 2^k and P_k = n * h_k * w_k pixels at level k:
//   x    [C, n, H, W]                       the input (`input` itself when C = 1)
//   p_k  [w_{k-1}, n, h_k, w_k]             the pooled s_{k-1} (k >= 1)
//   a_k  [w_k, n, h_k, w_k]                 the first convolution + ReLU
//   s_k  [w_k, n, h_k, w_k]                 the second convolution + ReLU: the skip
//   cat_k [2 w_k, n, h_k, w_k]              u_k's planes then s_k's (k < L-1)
//   d_k  [w_k, n, h_k, w_k]                 the decoder's output at level k (k < L-1)
//   y    [C, n, H, W]                       the reconstruction (`output` itself when C = 1)
//
// The concatenation costs nothing: in the [channels, n, h, w] layout a channel's planes for the
// whole batch are contiguous, so s_k is stored right after u_k in one buffer, cat_k (w_k * n*h*w
// floats in, for a batch of n), and the fuse convolution reads cat_k as its 2 w_k-channel input;
// its input gradient likewise comes out as [du_k ; ds_k] in one buffer (NetworkGraph.concat).
// s_k's gradient is then the sum of that share and the pool's from level k+1 (MemoryPlan).
//
// The max-pool is ReLUMaxPool2d: s_{k-1} is a ReLU output (>= 0), so the fused ReLU changes no
// value, and its backward passes the gradient only where the window's maximum is above 0. Where
// it is 0, PyTorch's plain MaxPool2d routes the gradient to an s_{k-1} that is 0, whose ReLU's
// backward then removes it: the gradient reaching the convolution below is the same.
//
// `input`, `output` and `gradOutput` are sample-major [n, C, H, W] (the DenoisingNetwork
// contract); with one channel that is x's, y's and dy's own memory, with more they are copied in
// and out (transposePlanes), as in ConvDenoiser. The model is a NetworkGraph (`graph(_:)`) run by
// ImageNetwork: parameters and gradients are the two flat buffers; every activation, gradient and
// workspace is one arena its MemoryPlan sizes at init.

/// The U-Net's shape: `channels` in and out, widths w_0..w_{L-1} of its L levels.
public struct UNetSpec: Sendable, Equatable {
    public var channels: Int
    public var widths: [Int]

    public init(channels: Int = 1, widths: [Int]) {
        self.channels = channels; self.widths = widths
    }

    public var levels: Int { widths.count }
    /// `train --model unet` without --widths.
    public static let defaultWidths = [32, 64, 128]

    /// Rejects shapes dae-dist does not train, naming `flag`: 2 to 5 widths from 1 to
    /// ModelSpec.maxWidth, 1 to ModelSpec.maxChannels channels, at most ModelSpec.maxParameters parameters.
    public func checkSize(flag: String = "--widths") throws(DAEError) {
        let text = ModelSpec.widthsText(widths)
        guard (2...5).contains(widths.count) else { throw DAEError.badFlag(flag, "'\(text)': the U-Net takes 2 to 5 widths, e.g. 32,64,128") }
        try ModelSpec.checkShape(widths: widths, channels: channels, parameters: { UNet.makeLayout(self).count }, model: "the U-Net", flag: flag)
    }
}

public final class UNet: ImageNetwork {
    public let spec: UNetSpec

    /// The layers in the PyTorch UNet's state_dict order (encoder.k.{0,2}, up.k, decoder.k.0,
    /// head), applied in forward order; shapes per batch of n at level k (h x w = H/2^k x W/2^k).
    public static func graph(_ spec: UNetSpec) -> NetworkGraph {
        let w = spec.widths, levels = w.count, C = spec.channels
        var g = NetworkGraph(channels: C)
        var convA: [NetworkGraph.LayerID] = [], convB: [NetworkGraph.LayerID] = []
        for k in 0..<levels {
            convA.append(g.declare(Conv2dLayer("encoder.\(k).0", inChannels: k == 0 ? C : w[k - 1], outChannels: w[k], kernel: 3)))
            convB.append(g.declare(Conv2dLayer("encoder.\(k).2", inChannels: w[k], outChannels: w[k], kernel: 3)))
        }
        // ConvTranspose2d followed by its ReLU, fused
        let up = (0..<levels - 1).map { k in g.declare(ConvTranspose2dLayer("up.\(k)", inChannels: w[k + 1], outChannels: w[k], activation: .relu)) }
        let fuse = (0..<levels - 1).map { k in g.declare(Conv2dLayer("decoder.\(k).0", inChannels: 2 * w[k], outChannels: w[k], kernel: 3)) }
        let head = g.declare(Conv2dLayer("head", inChannels: w[0], outChannels: C, kernel: 1))

        var s: [NetworkGraph.Tensor] = []
        for k in 0..<levels {
            var t = g.input                                                  // x [C, n, H, W]
            if k > 0 {
                // p_k [w_{k-1}, n, h, w] = MaxPool2d(2)(s_{k-1}). The backward reports progress twice
                // a level: after convB_k, and after this pool rather than convA_k, whose backward
                // this one's follows at once
                t = g.add(ReLUMaxPool2dLayer(), to: s[k - 1], name: "pool.\(k)", reports: true)
            }
            // a_k [w_k, n, h, w] = ReLU(convA_k(t)); s_k [w_k, n, h, w] = ReLU(convB_k(a_k))
            t = g.apply(convA[k], to: t, name: "encoder.\(k).0", reports: k == 0)
            t = g.add(ActivationLayer(.relu), to: t, name: "encoder.\(k).1")
            t = g.apply(convB[k], to: t, name: "encoder.\(k).2")
            s.append(g.add(ActivationLayer(.relu), to: t, name: "encoder.\(k).3"))
        }
        g.code = s[levels - 1]
        // the decoder reports once a level, after up_k: the last report, true, comes when the
        // decoder's gradients are final
        var d = s[levels - 1]                                                // d_{L-1} = s_{L-1}
        for k in (0..<levels - 1).reversed() {
            // u_k [w_k, n, h, w] = ReLU(up_k(d_{k+1} [w_{k+1}, n, h/2, w/2]))
            let u = g.apply(up[k], to: d, name: "up.\(k)")
            // d_k [w_k, n, h, w] = ReLU(fuse_k(cat_k [2 w_k, n, h, w] = [u_k ; s_k]))
            let cat = g.concat(u, s[k])
            d = g.apply(fuse[k], to: cat, name: "decoder.\(k).0", reports: false)
            d = g.add(ActivationLayer(.relu), to: d, name: "decoder.\(k).1")
        }
        // y [C, n, H, W] = Sigmoid(head(d_0 [w_0, n, H, W]))
        let y = g.apply(head, to: d, name: "head", reports: false)
        g.output = g.add(ActivationLayer(.sigmoid), to: y, name: "sigmoid")
        // up, decoder and head are the tail of the parameters; their backward runs first
        g.decoderStart = "up.0.weight"
        return g
    }

    /// The parameter layout in the PyTorch UNet's state_dict order: encoder.k.{0,2}, up.k,
    /// decoder.k.0, head.
    public static func makeLayout(_ spec: UNetSpec) -> ParameterLayout {
        graph(spec).makeLayout()
    }

    /// A U-Net for batches of up to `capacity` images of height x width (multiples of
    /// 2^(levels-1)); see ImageNetwork.init for `sharedParameters`.
    public init(_ spec: UNetSpec, height: Int, width: Int, capacity: Int, sharedParameters: FloatBuffer? = nil) {
        let levels = spec.widths.count, multiple = 1 << (levels - 1)
        precondition((2...5).contains(levels) && spec.channels > 0 && capacity > 0)
        precondition(height > 0 && width > 0 && height % multiple == 0 && width % multiple == 0,
                     "UNet sides must be multiples of \(multiple), got \(height)x\(width)")
        self.spec = spec
        super.init(graph: Self.graph(spec), height: height, width: width, capacity: capacity, sharedParameters: sharedParameters)
    }
}

extension UNetSpec: ModelArchitecture {
    public static let kind = "unet"
    public static let className = "UNet"
    public static let summary = "skip connections, 2 to 5 levels; for photos and scans"
    public static let flags: Set<String> = ["--widths", "--channels"]
    public static let shapeFlags = "--widths or --channels"

    public init(flags: ModelFlags, base: UNetSpec?) throws(DAEError) {
        try ModelSpec.checkChannelsFlag(flags.channels)
        self = base ?? UNetSpec(widths: Self.defaultWidths)
        if let widths = flags.widths { self.widths = try ModelSpec.parseWidths(widths, flag: "--widths") }
        if let channels = flags.channels { self.channels = channels }
        try checkSize(flag: "--widths")
    }

    public init(metadata: [String: String], path: String) throws(DAEError) {
        guard let channelsText = metadata["channels"], let widthsText = metadata["widths"] else {
            throw DAEError.checkpoint(path: path, problem: "a UNet file needs channels and widths in its metadata")
        }
        self.init(channels: try ModelSpec.channels(channelsText, path: path), widths: try ModelSpec.parseWidths(widthsText, flag: path))
        do { try checkSize(flag: "widths") } catch { throw DAEError.checkpoint(path: path, problem: "its UNet \(error)") }
    }

    public var metadata: [String: String] { ["channels": String(channels), "widths": ModelSpec.widthsText(widths)] }
    public var description: String { "\(Self.className) \(channels)->\(ModelSpec.widthsText(widths))" }
    public func completed(channels: Int, imageSize: Int) -> UNetSpec { UNetSpec(channels: channels, widths: widths) }
    /// One 2x2 pool per level below the first.
    public var sideMultiple: Int { 1 << (widths.count - 1) }
    public var receptiveRadius: Int { ReceptiveField.unet(levels: widths.count) }
    public func check(height: Int, width: Int, source: String) throws(DAEError) {
        try ModelSpec.checkSides(height: height, width: width, multiple: sideMultiple,
                                 model: "the U-Net with \(widths.count) levels", source: source)
    }
    public func makeLayout() -> ParameterLayout { UNet.makeLayout(self) }
    public func makeNetwork(height: Int, width: Int, capacity: Int, parameters: FloatBuffer) -> DenoisingNetwork {
        UNet(self, height: height, width: width, capacity: capacity, sharedParameters: parameters)
    }
    /// The per-pixel receptive radius as the halo (safe: an aligned block needs no more than its
    /// farthest pixel), tiles aligned to the deepest pooling.
    public func tileGeometry() -> TileGeometry? {
        TileGeometry.measured(channels: channels, sideMultiple: sideMultiple, halo: receptiveRadius, probeSide: sideMultiple) { side in
            UNet(self, height: side, width: side, capacity: 1)
        }
    }
}
