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
// Parameters and gradients are two flat buffers (see Parameters.swift); activations and
// workspaces are one arena allocated for a maximum batch `capacity`, so forward and backward
// allocate nothing. Any batch n <= capacity can run.

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

public final class ConvDenoiser: DenoisingNetwork {
    public let spec: ConvSpec
    public let height: Int, width: Int, capacity: Int
    public let layout: ParameterLayout
    /// The decoder (decoder.0, decoder.2) is the tail of the parameters; its backward runs first.
    public let decoderStart: Int?
    public let params: FloatBuffer
    public let grads: FloatBuffer

    let conv1: Conv2d, conv2: Conv2d
    let deconv1: ConvTranspose2d, deconv2: ConvTranspose2d
    let pool = ReLUMaxPool2d()

    // Activations (forward) and their gradients (backward), views into `arena`.
    public let input: UnsafeMutablePointer<Float>     //      [n, C, H, W]: the (noisy) batch
    let x: UnsafeMutablePointer<Float>                // x    [C, n, H, W]: input itself when C = 1
    let col1: UnsafeMutablePointer<Float>             //      [C*9, n*H*W]
    let a1: UnsafeMutablePointer<Float>               //      [w0, n, H, W]  conv1 (before its ReLU)
    let p1: UnsafeMutablePointer<Float>               //      [w0, n, H/2, W/2]
    let col2: UnsafeMutablePointer<Float>             //      conv2's Winograd workspace
    let a2: UnsafeMutablePointer<Float>               //      [w1, n, H/2, W/2] conv2 (before its ReLU)
    public let code: UnsafeMutablePointer<Float>      //      [w1, n, H/4, W/4] the encoder's output
    let col3: UnsafeMutablePointer<Float>             //      [w0*4, n*H/4*W/4]
    let a3: UnsafeMutablePointer<Float>               //      [w0, n, H/2, W/2] deconv1 + ReLU
    let col4: UnsafeMutablePointer<Float>             //      [C*4, n*H/2*W/2]
    let y: UnsafeMutablePointer<Float>                // y    [C, n, H, W] deconv2 + Sigmoid
    public let output: UnsafeMutablePointer<Float>    //      [n, C, H, W]: y itself when C = 1
    public let gradOutput: UnsafeMutablePointer<Float> // dL/dz before the sigmoid, [n, C, H, W]
    let dY: UnsafeMutablePointer<Float>               //      [C, n, H, W]: gradOutput itself when C = 1
    let dA3: UnsafeMutablePointer<Float>, dCode: UnsafeMutablePointer<Float>
    let dA2: UnsafeMutablePointer<Float>, dP1: UnsafeMutablePointer<Float>, dA1: UnsafeMutablePointer<Float>
    let where1: UnsafeMutablePointer<Int32>, where2: UnsafeMutablePointer<Int32>   // pools' maximum positions
    let arena: Arena<Float>, indexArena: Arena<Int32>

    /// The parameter layout (PyTorch's state_dict names and order) of a convolutional model.
    public static func makeLayout(_ spec: ConvSpec = ConvSpec()) -> ParameterLayout {
        let (c, h1, h2) = (spec.channels, spec.widths[0], spec.widths[1])
        var layout = ParameterLayout()
        _ = Conv2d.register(&layout, prefix: "encoder.0", inChannels: c, outChannels: h1, kernel: 3)
        _ = Conv2d.register(&layout, prefix: "encoder.3", inChannels: h1, outChannels: h2, kernel: 3)
        _ = ConvTranspose2d.register(&layout, prefix: "decoder.0", inChannels: h2, outChannels: h1, stride: 2)
        _ = ConvTranspose2d.register(&layout, prefix: "decoder.2", inChannels: h1, outChannels: c, stride: 2)
        return layout
    }

    /// A model for batches of up to `capacity` images of height x width (multiples of 4).
    /// Parameters start at zero (call `initialize(seed:)` or load weights), unless `sharedParameters`
    /// is given: then this model is a replica that reads those parameters and owns only its
    /// activations and gradients (one per worker thread).
    public init(_ spec: ConvSpec = ConvSpec(), height: Int = 28, width: Int = 28, capacity: Int, sharedParameters: FloatBuffer? = nil) {
        precondition(height % 4 == 0 && width % 4 == 0 && capacity > 0 && spec.widths.count == 2 && spec.channels > 0)
        self.spec = spec
        self.height = height; self.width = width; self.capacity = capacity
        let layout = Self.makeLayout(spec)
        self.layout = layout
        decoderStart = layout.slot(named: "decoder.0.weight")!.offset
        let params = sharedParameters ?? FloatBuffer(count: layout.count), grads = FloatBuffer(count: layout.count)
        precondition(params.count == layout.count)
        self.params = params
        self.grads = grads
        func offsets(_ prefix: String) -> (weight: Int, bias: Int) {
            (layout.slot(named: prefix + ".weight")!.offset, layout.slot(named: prefix + ".bias")!.offset)
        }
        let (c, h1, h2) = (spec.channels, spec.widths[0], spec.widths[1])
        conv1 = Conv2d(inChannels: c, outChannels: h1, kernel: 3, padding: 1, offsets: offsets("encoder.0"), params: params, grads: grads)
        // conv2 by Winograd F(2x2, 3x3) (its sides, H/2 x W/2, are even); conv1 direct: with one
        // (or three) input channels its Winograd GEMMs are that shallow and the transforms cost
        // more than they save (`dae-dist bench --what conv`, measured for one; docs/benchmarks.md)
        conv2 = Conv2d(inChannels: h1, outChannels: h2, kernel: 3, padding: 1, winograd: true, offsets: offsets("encoder.3"), params: params, grads: grads)
        deconv1 = ConvTranspose2d(inChannels: h2, outChannels: h1, stride: 2, offsets: offsets("decoder.0"), params: params, grads: grads)
        deconv2 = ConvTranspose2d(inChannels: h1, outChannels: c, stride: 2, offsets: offsets("decoder.2"), params: params, grads: grads)

        let full = capacity * height * width, half = full / 4, quarter = full / 16
        // Sizes in the order of the takes below; the arena holds their sum and traps if the takes
        // ask for more (it cannot tell a reordering: keep the two lists in step).
        let sizes = [c * full, c * 9 * full, h1 * full,                  // x, col1, a1
                     h1 * half, conv2.workspaceSize(n: capacity, h: height / 2, w: width / 2), h2 * half, h2 * quarter,  // p1, col2, a2, code
                     h1 * 4 * quarter, h1 * half, c * 4 * half,          // col3, a3, col4
                     c * full, c * full,                                 // y, dY
                     h1 * half, h2 * quarter, h2 * half, h1 * half, h1 * full]  // dA3, dCode, dA2, dP1, dA1
            + (c > 1 ? [c * full, c * full, c * full] : [])              // input, output, gradOutput
        arena = Arena(capacity: sizes.reduce(0, +), zero: 0)
        x = arena.take(c * full); col1 = arena.take(c * 9 * full); a1 = arena.take(h1 * full)
        p1 = arena.take(h1 * half); col2 = arena.take(conv2.workspaceSize(n: capacity, h: height / 2, w: width / 2)); a2 = arena.take(h2 * half)
        code = arena.take(h2 * quarter); col3 = arena.take(h1 * 4 * quarter); a3 = arena.take(h1 * half)
        col4 = arena.take(c * 4 * half); y = arena.take(c * full); dY = arena.take(c * full)
        dA3 = arena.take(h1 * half); dCode = arena.take(h2 * quarter); dA2 = arena.take(h2 * half)
        dP1 = arena.take(h1 * half); dA1 = arena.take(h1 * full)
        if c > 1 {
            input = arena.take(c * full); output = arena.take(c * full); gradOutput = arena.take(c * full)
        } else {
            input = x; output = y; gradOutput = dY
        }
        indexArena = Arena(capacity: h1 * full / 4 + h2 * half / 4, zero: 0)
        where1 = indexArena.take(h1 * full / 4); where2 = indexArena.take(h2 * half / 4)
    }

    public var parameterCount: Int { layout.count }

    // DenoisingNetwork: one phase, images in and out, the encoder's code as features.
    public var inputSize: Int { spec.channels * height * width }
    public var outputActivation: OutputActivation { .sigmoid }
    public var trainable: Range<Int> { 0 ..< layout.count }
    public func setPhase(_ phase: Int) {}
    public func setImageAutoencoder(afterPhase phase: Int) {}
    public func target(images: UnsafePointer<Float>, n: Int) -> UnsafePointer<Float> { images }
    public var codeShape: [Int] { [spec.widths[1], height / 4, width / 4] }
    /// code is [C, n, h, w]: sample i's planes are n*h*w apart.
    public func copyCode(sample i: Int, n: Int, into out: UnsafeMutablePointer<Float>) {
        let plane = height / 4 * width / 4
        for c in 0..<spec.widths[1] { (out + c * plane).update(from: code + (c * n + i) * plane, count: plane) }
    }

    // Optional per-phase timing for the benchmark (launch/bench): when `phaseSeconds` is set, each
    // layer's forward and backward adds its wall time to its slot (see `phaseNames`).
    public static let phaseNames = ["conv1 fwd", "relu+pool1 fwd", "conv2 fwd", "relu+pool2 fwd", "deconv1 fwd", "deconv2 fwd",
                                    "deconv2 bwd", "deconv1 bwd", "relu+pool2 bwd", "conv2 bwd", "relu+pool1 bwd", "conv1 bwd"]
    public var phaseSeconds: UnsafeMutablePointer<Double>? = nil
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
    var phaseStart = 0.0
    @inline(__always) func tick(_ phase: Int) {
        guard let slots = phaseSeconds else { return }
        let now = monotonicSeconds()
        if phase >= 0 { slots[phase] += now - phaseStart }
        phaseStart = now
    }

    public func initialize(seed: UInt64) {
        initializeParameters(params, layout: layout, seed: seed)
    }

    /// Runs the network on input[0 ..< n*C*H*W], leaving the reconstruction in output.
    public func forward(n: Int) {
        let (H, W, C) = (height, width, spec.channels)
        encode(n: n)
        deconv1.forward(x: code, y: a3, col: col3, n: n, h: H / 4, w: W / 4, activation: .relu);  tick(4)
        deconv2.forward(x: a3, y: y, col: col4, n: n, h: H / 2, w: W / 2, activation: .sigmoid);  tick(5)
        if C > 1 { transposePlanes(y, output, outer: C, inner: n, plane: H * W) }
    }

    /// Runs only the encoder: code[0 ..< w1*n*H/4*W/4] in [C, n, h, w] layout.
    public func encode(n: Int) {
        precondition(n > 0 && n <= capacity)
        let (H, W, C) = (height, width, spec.channels)
        let (h1, h2) = (spec.widths[0], spec.widths[1])
        if C > 1 { transposePlanes(input, x, outer: n, inner: C, plane: H * W) }
        tick(-1)
        conv1.forward(x: x, y: a1, col: col1, n: n, h: H, w: W);                              tick(0)
        pool.forward(x: a1, y: p1, where: where1, planes: h1 * n, h: H, w: W);                 tick(1)
        conv2.forward(x: p1, y: a2, col: col2, n: n, h: H / 2, w: W / 2);                     tick(2)
        pool.forward(x: a2, y: code, where: where2, planes: h2 * n, h: H / 2, w: W / 2);       tick(3)
    }

    /// Given gradOutput = dL/dz (pre-sigmoid) for the last forward of n images, writes the
    /// gradient of every parameter into `grads` (overwriting).
    public func backward(n: Int) { backward(n: n, afterLayer: { _ in }) }

    /// backward(n:), calling afterLayer between layers (true once the decoder's gradients are final).
    public func backward(n: Int, afterLayer: (_ decoderDone: Bool) -> Void) {
        let (H, W, C) = (height, width, spec.channels)
        let (h1, h2) = (spec.widths[0], spec.widths[1])
        if C > 1 { transposePlanes(gradOutput, dY, outer: n, inner: C, plane: H * W) }
        tick(-1)
        // decoder, last layer first; col4 and col3 are reused as the gather workspaces
        deconv2.backward(dy: dY, x: a3, dx: dA3, dcol: col4, n: n, h: H / 2, w: W / 2);        tick(6)
        afterLayer(false)
        deconv1.backward(dy: dA3, x: code, dx: dCode, dcol: col3, n: n, h: H / 4, w: W / 4, reluOutput: a3); tick(7)
        afterLayer(true)
        // encoder
        pool.backward(dy: dCode, y: code, where: where2, dx: dA2, planes: h2 * n, h: H / 2, w: W / 2); tick(8)
        // col2 is conv2's Winograd workspace (it needs no dcol)
        conv2.backward(dy: dA2, col: col2, dx: dP1, dcol: nil, n: n, h: H / 2, w: W / 2);     tick(9)
        afterLayer(true)
        pool.backward(dy: dP1, y: p1, where: where1, dx: dA1, planes: h1 * n, h: H, w: W);     tick(10)
        conv1.backward(dy: dA1, col: col1, dx: nil, dcol: nil, n: n, h: H, w: W);              tick(11)
        afterLayer(true)
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
        let bytes = TileGeometry.arenaBytesPerPixel(side: 4) { side in
            let probe = ConvDenoiser(self, height: side, width: side, capacity: 1)
            return (probe.arena, probe.indexArena)
        }
        return TileGeometry(channels: channels, sideMultiple: 4, halo: 3, arenaBytesPerPixel: bytes)
    }
}
