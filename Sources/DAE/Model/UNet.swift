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
// whole batch are contiguous, so s_k is stored right after u_k in one buffer, cat_k, and the fuse
// convolution reads cat_k as its 2 w_k-channel input; its input gradient likewise comes out as
// [du_k ; ds_k] in one buffer.
//
// The max-pool is ReLUMaxPool2d: s_{k-1} is a ReLU output (>= 0), so the fused ReLU changes no
// value, and its backward passes the gradient only where the window's maximum is above 0. Where
// it is 0, PyTorch's plain MaxPool2d routes the gradient to an s_{k-1} that is 0, whose ReLU's
// backward then removes it: the gradient reaching the convolution below is the same.
//
// `input`, `output` and `gradOutput` are sample-major [n, C, H, W] (the DenoisingNetwork
// contract); with one channel that is x's, y's and dy's own memory, with more they are copied in
// and out (transposePlanes), as in ConvDenoiser. Parameters and gradients are the two flat
// buffers; every activation, gradient and workspace is one arena allocated at init.

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

public final class UNet: DenoisingNetwork {
    typealias Pointer = UnsafeMutablePointer<Float>

    public let spec: UNetSpec
    public let height: Int, width: Int, capacity: Int
    public let layout: ParameterLayout
    /// The decoder (up, decoder, head) is the tail of the parameters; its backward runs first.
    public let decoderStart: Int?
    public let params: FloatBuffer
    public let grads: FloatBuffer

    let levels: Int
    let convA: [Conv2d], convB: [Conv2d]          // encoder.k.0, encoder.k.2 (k < L)
    let up: [ConvTranspose2d], fuse: [Conv2d]     // up.k, decoder.k.0 (k < L-1)
    let head: Conv2d
    let pool = ReLUMaxPool2d()

    // Forward activations and workspaces (index k: level k), views into `arena`.
    public let input: UnsafeMutablePointer<Float>     // [n, C, H, W]
    let x: Pointer                                // [C, n, H, W]
    let pooled: [Pointer]                         // p_k (k >= 1; index 0 unused)
    let colA: [Pointer], a: [Pointer]             // [cin_k*9, P_k], a_k
    let colB: [Pointer], s: [Pointer]             // [w_k*9, P_k], s_k (inside cat_k for k < L-1)
    let cat: [Pointer]                            // cat_k = [u_k ; s_k] (k < L-1)
    let colUp: [Pointer], colFuse: [Pointer]      // [w_k*4, P_{k+1}], [2w_k*9, P_k] (k < L-1)
    let d: [Pointer]                              // d_k (k < L-1), d_{L-1} = s_{L-1}
    let colHead: Pointer                          // [w_0, P_0]
    let y: Pointer                                // [C, n, H, W]
    public let output: UnsafeMutablePointer<Float>    // [n, C, H, W]
    // Backward.
    public let gradOutput: UnsafeMutablePointer<Float> // dL/dz before the sigmoid, [n, C, H, W]
    let dY: Pointer                               // [C, n, H, W]
    let dD: [Pointer]                             // dL/dd_k; dD[L-1] = dS[L-1]
    let dCat: [Pointer], dS: [Pointer]            // [du_k ; ds_k] (k < L-1); dS[L-1] its own buffer
    let dPool: [Pointer]                          // the pool's gradient into s_k, from level k+1 (k < L-1)
    let dA: [Pointer], dP: [Pointer]              // dL/da_k, dL/dp_k (k >= 1)
    let positions: [UnsafeMutablePointer<Int32>]  // the pools' maximum positions (k >= 1)
    let arena: Arena<Float>, indexArena: Arena<Int32>

    /// The parameter layout in the PyTorch UNet's state_dict order: encoder.k.{0,2}, up.k,
    /// decoder.k.0, head.
    public static func makeLayout(_ spec: UNetSpec) -> ParameterLayout {
        let w = spec.widths, levels = w.count
        var layout = ParameterLayout()
        for k in 0..<levels {
            _ = Conv2d.register(&layout, prefix: "encoder.\(k).0", inChannels: k == 0 ? spec.channels : w[k - 1], outChannels: w[k], kernel: 3)
            _ = Conv2d.register(&layout, prefix: "encoder.\(k).2", inChannels: w[k], outChannels: w[k], kernel: 3)
        }
        for k in 0..<levels - 1 {
            _ = ConvTranspose2d.register(&layout, prefix: "up.\(k)", inChannels: w[k + 1], outChannels: w[k], stride: 2)
        }
        for k in 0..<levels - 1 {
            _ = Conv2d.register(&layout, prefix: "decoder.\(k).0", inChannels: 2 * w[k], outChannels: w[k], kernel: 3)
        }
        _ = Conv2d.register(&layout, prefix: "head", inChannels: w[0], outChannels: spec.channels, kernel: 1)
        return layout
    }

    /// A U-Net for batches of up to `capacity` images of height x width (multiples of
    /// 2^(levels-1)). Parameters start at zero unless `sharedParameters` is given (as ConvDenoiser).
    public init(_ spec: UNetSpec, height: Int, width: Int, capacity: Int, sharedParameters: FloatBuffer? = nil) {
        let levels = spec.widths.count, multiple = 1 << (levels - 1)
        precondition((2...5).contains(levels) && spec.channels > 0 && capacity > 0)
        precondition(height > 0 && width > 0 && height % multiple == 0 && width % multiple == 0,
                     "UNet sides must be multiples of \(multiple), got \(height)x\(width)")
        self.spec = spec; self.levels = levels
        self.height = height; self.width = width; self.capacity = capacity
        let layout = Self.makeLayout(spec)
        self.layout = layout
        decoderStart = layout.slot(named: "up.0.weight")!.offset
        let params = sharedParameters ?? FloatBuffer(count: layout.count), grads = FloatBuffer(count: layout.count)
        precondition(params.count == layout.count)
        self.params = params; self.grads = grads
        func offsets(_ prefix: String) -> (weight: Int, bias: Int) {
            (layout.slot(named: prefix + ".weight")!.offset, layout.slot(named: prefix + ".bias")!.offset)
        }
        let w = spec.widths, C = spec.channels
        func cin(_ k: Int) -> Int { k == 0 ? C : w[k - 1] }
        convA = (0..<levels).map { k in
            Conv2d(inChannels: cin(k), outChannels: w[k], kernel: 3, padding: 1, offsets: offsets("encoder.\(k).0"), params: params, grads: grads)
        }
        convB = (0..<levels).map { k in
            Conv2d(inChannels: w[k], outChannels: w[k], kernel: 3, padding: 1, offsets: offsets("encoder.\(k).2"), params: params, grads: grads)
        }
        up = (0..<levels - 1).map { k in
            ConvTranspose2d(inChannels: w[k + 1], outChannels: w[k], stride: 2, offsets: offsets("up.\(k)"), params: params, grads: grads)
        }
        fuse = (0..<levels - 1).map { k in
            Conv2d(inChannels: 2 * w[k], outChannels: w[k], kernel: 3, padding: 1, offsets: offsets("decoder.\(k).0"), params: params, grads: grads)
        }
        head = Conv2d(inChannels: w[0], outChannels: C, kernel: 1, padding: 0, offsets: offsets("head"), params: params, grads: grads)

        // Offsets first (ArenaPlan), then one arena; index -1 marks a slice that does not exist.
        let P = (0..<levels).map { k in capacity * (height >> k) * (width >> k) }
        var plan = ArenaPlan()
        let last = levels - 1
        let xAt = C > 1 ? plan.reserve(C * P[0]) : -1
        let pooledAt = (0..<levels).map { k in k == 0 ? -1 : plan.reserve(w[k - 1] * P[k]) }
        let colAAt = (0..<levels).map { k in plan.reserve(cin(k) * 9 * P[k]) }
        let aAt = (0..<levels).map { k in plan.reserve(w[k] * P[k]) }
        let colBAt = (0..<levels).map { k in plan.reserve(w[k] * 9 * P[k]) }
        let catAt = (0..<levels).map { k in k == last ? -1 : plan.reserve(2 * w[k] * P[k]) }
        let bottomAt = plan.reserve(w[last] * P[last])                         // s_{L-1}
        let colUpAt = (0..<last).map { k in plan.reserve(w[k] * 4 * P[k + 1]) }
        let colFuseAt = (0..<last).map { k in plan.reserve(2 * w[k] * 9 * P[k]) }
        let dAt = (0..<last).map { k in plan.reserve(w[k] * P[k]) }
        let colHeadAt = plan.reserve(w[0] * P[0])
        let yAt = plan.reserve(C * P[0])
        let inputAt = plan.reserve(C * P[0])                                   // input (C > 1) or x
        let outputAt = C > 1 ? plan.reserve(C * P[0]) : -1
        let gradOutputAt = plan.reserve(C * P[0])                              // gradOutput, dY when C = 1
        let dYAt = C > 1 ? plan.reserve(C * P[0]) : -1
        let dDAt = (0..<last).map { k in plan.reserve(w[k] * P[k]) }
        let dCatAt = (0..<last).map { k in plan.reserve(2 * w[k] * P[k]) }
        let dBottomAt = plan.reserve(w[last] * P[last])                        // dS[L-1] = dD[L-1]
        let dPoolAt = (0..<last).map { k in plan.reserve(w[k] * P[k]) }
        let dAAt = (0..<levels).map { k in plan.reserve(w[k] * P[k]) }
        let dPAt = (0..<levels).map { k in k == 0 ? -1 : plan.reserve(w[k - 1] * P[k]) }
        let arena = Arena<Float>(capacity: plan.total, zero: 0)
        self.arena = arena
        func at(_ offset: Int) -> Pointer { arena.slice(at: max(offset, 0)) }   // -1: unused, never read
        input = at(inputAt)
        x = C > 1 ? at(xAt) : input
        pooled = pooledAt.map(at); colA = colAAt.map(at); a = aAt.map(at); colB = colBAt.map(at)
        cat = catAt.map(at)
        s = (0..<levels).map { k in k == last ? at(bottomAt) : at(catAt[k]) + w[k] * P[k] }
        colUp = colUpAt.map(at); colFuse = colFuseAt.map(at)
        d = dAt.map(at) + [at(bottomAt)]
        colHead = at(colHeadAt)
        y = at(yAt)
        output = C > 1 ? at(outputAt) : y
        gradOutput = at(gradOutputAt)
        dY = C > 1 ? at(dYAt) : gradOutput
        dCat = dCatAt.map(at)
        dS = (0..<levels).map { k in k == last ? at(dBottomAt) : at(dCatAt[k]) + w[k] * P[k] }
        dD = dDAt.map(at) + [at(dBottomAt)]
        dPool = dPoolAt.map(at)
        dA = dAAt.map(at); dP = dPAt.map(at)
        let indexCounts = (0..<levels).map { k in k == 0 ? 0 : w[k - 1] * P[k] }
        let indexArena = Arena<Int32>(capacity: indexCounts.reduce(0, +), zero: 0)
        self.indexArena = indexArena
        positions = indexCounts.map { indexArena.take($0) }
    }

    public var parameterCount: Int { layout.count }

    // DenoisingNetwork: one phase, images in and out, the bottleneck s_{L-1} as features.
    public var inputSize: Int { spec.channels * height * width }
    public var outputActivation: OutputActivation { .sigmoid }
    public var trainable: Range<Int> { 0 ..< layout.count }
    public func setPhase(_ phase: Int) {}
    public func setImageAutoencoder(afterPhase phase: Int) {}
    public func target(images: UnsafePointer<Float>, n: Int) -> UnsafePointer<Float> { images }
    public var codeShape: [Int] { [spec.widths[levels - 1], height >> (levels - 1), width >> (levels - 1)] }
    /// s_{L-1} is [w, n, h, w]: sample i's planes are n*h*w apart.
    public func copyCode(sample i: Int, n: Int, into out: UnsafeMutablePointer<Float>) {
        let plane = (height >> (levels - 1)) * (width >> (levels - 1))
        let code = s[levels - 1]
        for c in 0..<spec.widths[levels - 1] { (out + c * plane).update(from: code + (c * n + i) * plane, count: plane) }
    }

    public func initialize(seed: UInt64) {
        initializeParameters(params, layout: layout, seed: seed)
    }

    /// Runs the network on input[0 ..< n*C*H*W], leaving the reconstruction in output.
    public func forward(n: Int) {
        let C = spec.channels, w = spec.widths
        encode(n: n)
        for k in (0..<levels - 1).reversed() {
            let (h, wd) = (height >> k, width >> k)
            // u_k [w_k, n, h, wd] = ReLU(up_k(d_{k+1} [w_{k+1}, n, h/2, wd/2])), the first half of cat_k
            up[k].forward(x: d[k + 1], y: cat[k], col: colUp[k], n: n, h: h / 2, w: wd / 2, activation: .relu)
            // d_k [w_k, n, h, wd] = ReLU(fuse_k(cat_k [2 w_k, n, h, wd]))
            fuse[k].forward(x: cat[k], y: d[k], col: colFuse[k], n: n, h: h, w: wd)
            ReLU.forward(d[k], count: w[k] * n * h * wd)
        }
        // y [C, n, H, W] = Sigmoid(head(d_0 [w_0, n, H, W]))
        head.forward(x: d[0], y: y, col: colHead, n: n, h: height, w: width)
        Sigmoid.forward(y, count: C * n * height * width)
        if C > 1 { transposePlanes(y, output, outer: C, inner: n, plane: height * width) }
    }

    /// Runs only the encoder: s_0 .. s_{L-1}, the last (the bottleneck) being the code.
    public func encode(n: Int) {
        precondition(n > 0 && n <= capacity)
        let C = spec.channels, w = spec.widths
        if C > 1 { transposePlanes(input, x, outer: n, inner: C, plane: height * width) }
        for k in 0..<levels {
            let (h, wd) = (height >> k, width >> k)
            var from = UnsafePointer(x)
            if k > 0 {
                // p_k [w_{k-1}, n, h, wd] = MaxPool2d(2)(s_{k-1} [w_{k-1}, n, 2h, 2wd])
                pool.forward(x: s[k - 1], y: pooled[k], where: positions[k], planes: w[k - 1] * n, h: 2 * h, w: 2 * wd)
                from = UnsafePointer(pooled[k])
            }
            // a_k [w_k, n, h, wd] = ReLU(convA_k(from [cin_k, n, h, wd])); s_k = ReLU(convB_k(a_k))
            convA[k].forward(x: from, y: a[k], col: colA[k], n: n, h: h, w: wd)
            ReLU.forward(a[k], count: w[k] * n * h * wd)
            convB[k].forward(x: a[k], y: s[k], col: colB[k], n: n, h: h, w: wd)
            ReLU.forward(s[k], count: w[k] * n * h * wd)
        }
    }

    /// Given gradOutput = dL/dz (pre-sigmoid) for the last forward of n images, writes the
    /// gradient of every parameter into `grads` (overwriting). Each convolution's col is done with
    /// once its dW is computed, so it doubles as its dcol workspace.
    public func backward(n: Int) { backward(n: n, afterLayer: { _ in }) }

    /// backward(n:), calling afterLayer between layers (true once the decoder's gradients are final).
    public func backward(n: Int, afterLayer: (_ decoderDone: Bool) -> Void) {
        let C = spec.channels, w = spec.widths
        if C > 1 { transposePlanes(gradOutput, dY, outer: n, inner: C, plane: height * width) }
        // head: dY [C, n, H, W] -> dD_0 [w_0, n, H, W]
        head.backward(dy: dY, col: colHead, dx: dD[0], dcol: colHead, n: n, h: height, w: width)
        // decoder, level 0 up: dD_k -> ReLU -> fuse_k -> [du_k ; ds_k] -> ReLU -> up_k -> dD_{k+1}
        for k in 0..<levels - 1 {
            let (h, wd) = (height >> k, width >> k)
            ReLU.backward(y: d[k], grad: dD[k], count: w[k] * n * h * wd)
            fuse[k].backward(dy: dD[k], col: colFuse[k], dx: dCat[k], dcol: colFuse[k], n: n, h: h, w: wd)
            up[k].backward(dy: dCat[k], x: d[k + 1], dx: dD[k + 1], dcol: colUp[k], n: n, h: h / 2, w: wd / 2, reluOutput: cat[k])
            afterLayer(k == levels - 2)
        }
        // encoder, bottom up: dS_k (the skip's share, plus the pool's from level k+1) -> ReLU ->
        // convB_k -> ReLU -> convA_k -> the pool's backward into dPool_{k-1}
        for k in (0..<levels).reversed() {
            let (h, wd) = (height >> k, width >> k), count = w[k] * n * h * wd
            if k < levels - 1 {
                let ds = dS[k], dp = dPool[k]
                for i in 0..<count { ds[i] += dp[i] }
            }
            ReLU.backward(y: s[k], grad: dS[k], count: count)
            convB[k].backward(dy: dS[k], col: colB[k], dx: dA[k], dcol: colB[k], n: n, h: h, w: wd)
            afterLayer(true)
            ReLU.backward(y: a[k], grad: dA[k], count: count)
            if k > 0 {
                convA[k].backward(dy: dA[k], col: colA[k], dx: dP[k], dcol: colA[k], n: n, h: h, w: wd)
                pool.backward(dy: dP[k], y: pooled[k], where: positions[k], dx: dPool[k - 1], planes: w[k - 1] * n, h: 2 * h, w: 2 * wd)
            } else {
                convA[0].backward(dy: dA[0], col: colA[0], dx: nil, dcol: nil, n: n, h: h, w: wd)
            }
            afterLayer(true)
        }
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
        let side = sideMultiple
        let bytes = TileGeometry.arenaBytesPerPixel(side: side) { side in
            let probe = UNet(self, height: side, width: side, capacity: 1)
            return (probe.arena, probe.indexArena)
        }
        return TileGeometry(channels: channels, sideMultiple: side, halo: receptiveRadius, arenaBytesPerPixel: bytes)
    }
}
