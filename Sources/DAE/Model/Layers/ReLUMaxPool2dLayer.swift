// ReLU then MaxPool2d(2, 2) as one layer (the kernel and why it is fused: ReLUMaxPool2d.swift).
// No parameters; its index workspace holds each window's maximum position for the backward.

public struct ReLUMaxPool2dLayer: Layer {
    let pool = ReLUMaxPool2d()

    public init() {}

    public func outputShape(_ inputs: [TensorShape]) -> TensorShape {
        precondition(inputs.count == 1 && inputs[0].height % 2 == 0 && inputs[0].width % 2 == 0, "ReLUMaxPool2d needs even sides, got \(inputs)")
        return TensorShape(channels: inputs[0].channels, height: inputs[0].height / 2, width: inputs[0].width / 2)
    }

    public func indexWorkspaceSize(_ input: TensorShape, n: Int) -> Int { input.count(n) / 4 }

    /// x [c, n, h, w] -> y [c, n, h/2, w/2]; indices: the maximum's position in each window
    public func forward(_ io: LayerIO) {
        pool.forward(x: io.x, y: io.y, where: io.indices, planes: io.input.channels * io.n, h: io.input.height, w: io.input.width)
    }

    /// dy [c, n, h/2, w/2] -> dx [c, n, h, w] (every value written)
    public func backward(_ io: LayerIO) {
        pool.backward(dy: io.dy, y: io.y, where: io.indices, dx: io.dx!, planes: io.input.channels * io.n, h: io.input.height, w: io.input.width)
    }
}
