// ConvTranspose2d(in, out, kernel s, stride s) as a layer (the kernel: ConvTranspose2d.swift),
// parameters `prefix`.weight [in, out, s, s] and `prefix`.bias [out], with the activation after
// it fused: ReLU (its backward fused into the gather) or Sigmoid (whose backward is the loss's,
// so a Sigmoid layer ends the network). The workspace is the col matrix, reused as the
// backward's gather buffer dcol.

public struct ConvTranspose2dLayer: Layer {
    public let prefix: String
    public let inChannels: Int, outChannels: Int, stride: Int
    public let activation: OutputActivation?
    public private(set) var deconv: ConvTranspose2d?

    public init(_ prefix: String, inChannels: Int, outChannels: Int, stride: Int = 2, activation: OutputActivation? = nil) {
        self.prefix = prefix; self.inChannels = inChannels; self.outChannels = outChannels
        self.stride = stride; self.activation = activation
    }

    public func register(_ layout: inout ParameterLayout) {
        _ = ConvTranspose2d.register(&layout, prefix: prefix, inChannels: inChannels, outChannels: outChannels, stride: stride)
    }

    public mutating func bind(_ layout: ParameterLayout, params: FloatBuffer, grads: FloatBuffer) {
        deconv = ConvTranspose2d(inChannels: inChannels, outChannels: outChannels, stride: stride,
                                 offsets: parameterOffsets(layout, prefix), params: params, grads: grads)
    }

    public func outputShape(_ inputs: [TensorShape]) -> TensorShape {
        precondition(inputs.count == 1 && inputs[0].channels == inChannels, "\(prefix) takes \(inChannels) channels, got \(inputs)")
        return TensorShape(channels: outChannels, height: inputs[0].height * stride, width: inputs[0].width * stride)
    }

    public func workspaceSize(_ input: TensorShape, n: Int) -> Int { outChannels * stride * stride * n * input.plane }

    public var lossActivation: OutputActivation? { activation == .sigmoid ? .sigmoid : nil }

    /// x [in, n, h, w] -> activation(y) [out, n, s*h, s*w]; workspace: col [out*s*s, n*h*w]
    public func forward(_ io: LayerIO) {
        deconv!.forward(x: io.x, y: io.y, col: io.workspace, n: io.n, h: io.input.height, w: io.input.width, activation: activation)
    }

    /// dy [out, n, s*h, s*w] (through the ReLU, in place, when one is fused) -> dW, db, dx [in, n, h, w]
    public func backward(_ io: LayerIO) {
        deconv!.backward(dy: io.dy, x: io.x, dx: io.dx!, dcol: io.workspace, n: io.n, h: io.input.height, w: io.input.width,
                         reluOutput: activation == .relu ? UnsafePointer(io.y) : nil)
    }
}
