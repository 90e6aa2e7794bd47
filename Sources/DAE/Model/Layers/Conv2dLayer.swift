// Conv2d(in, out, k, padding p) as a layer (the kernel: Conv2d.swift), parameters `prefix`.weight
// [out, in, k, k] and `prefix`.bias [out]. Padding keeps the sides (k = 2p + 1), as in every model
// here. The workspace is the im2col matrix (or Winograd's), which the backward reuses as its dcol:
// once dW is computed from col, col is no longer needed.

public struct Conv2dLayer: Layer {
    public let prefix: String
    public let inChannels: Int, outChannels: Int, kernel: Int
    /// Winograd F(2x2, 3x3) (3x3 only): chosen per layer by measurement (`dae-dist bench --what conv`).
    public let winograd: Bool
    /// The kernel, once bound to the buffers.
    public private(set) var conv: Conv2d?

    public init(_ prefix: String, inChannels: Int, outChannels: Int, kernel: Int, winograd: Bool = false) {
        precondition(kernel % 2 == 1, "Conv2dLayer keeps the sides: odd kernels only")
        self.prefix = prefix; self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.winograd = winograd
    }

    public func register(_ layout: inout ParameterLayout) {
        _ = Conv2d.register(&layout, prefix: prefix, inChannels: inChannels, outChannels: outChannels, kernel: kernel)
    }

    public mutating func bind(_ layout: ParameterLayout, params: FloatBuffer, grads: FloatBuffer) {
        conv = Conv2d(inChannels: inChannels, outChannels: outChannels, kernel: kernel, padding: kernel / 2, winograd: winograd,
                      offsets: parameterOffsets(layout, prefix), params: params, grads: grads)
    }

    public func outputShape(_ inputs: [TensorShape]) -> TensorShape {
        precondition(inputs.count == 1 && inputs[0].channels == inChannels, "\(prefix) takes \(inChannels) channels, got \(inputs)")
        precondition(!winograd || (inputs[0].height % 2 == 0 && inputs[0].width % 2 == 0), "\(prefix): Winograd needs even sides")
        return TensorShape(channels: outChannels, height: inputs[0].height, width: inputs[0].width)
    }

    public func workspaceSize(_ input: TensorShape, n: Int) -> Int {
        Conv2d.workspaceSize(inChannels: inChannels, outChannels: outChannels, kernel: kernel, winograd: winograd,
                             n: n, h: input.height, w: input.width)
    }

    /// x [in, n, h, w] -> y [out, n, h, w]; workspace: col
    public func forward(_ io: LayerIO) {
        conv!.forward(x: io.x, y: io.y, col: io.workspace, n: io.n, h: io.input.height, w: io.input.width)
    }

    /// dy [out, n, h, w] -> dW, db, and dx [in, n, h, w] when asked; col doubles as dcol (Winograd
    /// needs none: its workspace has room for everything).
    public func backward(_ io: LayerIO) {
        let dcol = io.dx == nil || winograd ? nil : io.workspace
        conv!.backward(dy: io.dy, col: io.workspace, dx: io.dx, dcol: dcol, n: io.n, h: io.input.height, w: io.input.width)
    }
}
