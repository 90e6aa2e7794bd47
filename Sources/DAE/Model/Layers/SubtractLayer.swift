// y = x - x2: a two-input layer, the output of a residual denoiser (DnCNN: the noisy input minus
// the noise its convolutions predict). No parameters, no workspace, no activation after it.

public struct SubtractLayer: Layer {
    public init() {}

    public func outputShape(_ inputs: [TensorShape]) -> TensorShape {
        precondition(inputs.count == 2 && inputs[0] == inputs[1], "subtract takes two tensors of one shape, got \(inputs)")
        return inputs[0]
    }

    /// x, x2 [c, n, h, w] -> y = x - x2 [c, n, h, w]
    public func forward(_ io: LayerIO) {
        let x2 = io.x2!
        for i in 0..<io.input.count(io.n) { io.y[i] = io.x[i] - x2[i] }
    }

    /// dy [c, n, h, w] -> dx = dy (when x needs a gradient: not the network's input), dx2 = -dy
    public func backward(_ io: LayerIO) {
        let count = io.input.count(io.n)
        if let dx = io.dx { dx.update(from: io.dy, count: count) }
        if let dx2 = io.dx2 { for i in 0..<count { dx2[i] = -io.dy[i] } }
    }
}
