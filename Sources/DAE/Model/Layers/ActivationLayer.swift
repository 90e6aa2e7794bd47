// An elementwise activation as a layer, in place on its input (the kernels: Activations.swift).
// Both backward passes need only the output, so no copy of the input is kept. A Sigmoid's
// backward is the loss's (it returns dL/dz before the Sigmoid): a Sigmoid layer ends the network.

public struct ActivationLayer: Layer {
    public let kind: OutputActivation

    public init(_ kind: OutputActivation) { self.kind = kind }

    public func outputShape(_ inputs: [TensorShape]) -> TensorShape {
        precondition(inputs.count == 1)
        return inputs[0]
    }

    public var inPlace: Bool { true }
    public var lossActivation: OutputActivation? { kind == .sigmoid ? .sigmoid : nil }

    /// x [c, n, h, w] -> y = act(x), the same memory
    public func forward(_ io: LayerIO) {
        switch kind {
        case .relu: ReLU.forward(io.y, count: io.input.count(io.n))
        case .sigmoid: Sigmoid.forward(io.y, count: io.input.count(io.n))
        case .identity: break
        }
    }

    /// dy -> dx = dy * (y > 0) in place (ReLU); nothing for the Sigmoid (the loss did it)
    public func backward(_ io: LayerIO) {
        if kind == .relu { ReLU.backward(y: io.y, grad: io.dy, count: io.input.count(io.n)) }
    }
}
