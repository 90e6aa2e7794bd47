// A layer of an image network (ImageNetwork.swift): what it stores in the flat parameter buffer,
// what shape it makes of its input, how much workspace it needs, and its forward and backward
// side by side. The computational kernels are the structs beside this file (Conv2d,
// ConvTranspose2d, ReLUMaxPool2d, ReLU, Sigmoid); a layer wraps one kernel with the arguments a
// model used to pass by hand, so a network written as layers calls the same kernels with the same
// arguments in the same order.
//
// Activations are [channels, n, height, width] (Conv2d.swift says why). A layer sees pointers only:
// the memory plan (MemoryPlan.swift) sizes every activation, gradient and workspace once, at a
// network's init, for its batch capacity; a step allocates nothing.

/// One sample's activation: `channels` planes of height x width. A batch of n is
/// [channels, n, height, width], count(n) floats.
public struct TensorShape: Sendable, Equatable, CustomStringConvertible {
    public var channels: Int, height: Int, width: Int

    public init(channels: Int, height: Int, width: Int) {
        self.channels = channels; self.height = height; self.width = width
    }

    public var plane: Int { height * width }
    public func count(_ n: Int) -> Int { channels * n * height * width }
    public var description: String { "[\(channels), n, \(height), \(width)]" }
}

/// The memory one call of a layer's forward or backward works on, for a batch of n. Forward reads
/// x (and x2) and writes y; backward reads dy (and x, y, the workspace the forward filled) and
/// writes the parameter gradients and dx (dx2), which are nil when that input needs no gradient
/// (the network's input). Layers computing in place get y == x and dy == dx.
public struct LayerIO {
    public var n: Int
    /// The (first) input's shape per sample.
    public var input: TensorShape
    public var x: UnsafeMutablePointer<Float>
    /// The second input of a two-input layer (e.g. a residual's subtrahend), else nil.
    public var x2: UnsafeMutablePointer<Float>?
    public var y: UnsafeMutablePointer<Float>
    public var dx: UnsafeMutablePointer<Float>?
    public var dx2: UnsafeMutablePointer<Float>?
    /// dL/dy; only meaningful in backward.
    public var dy: UnsafeMutablePointer<Float>
    /// workspaceSize(input, n: capacity) floats, the same for forward and the backward after it.
    public var workspace: UnsafeMutablePointer<Float>
    /// indexWorkspaceSize(input, n: capacity) integers, likewise.
    public var indices: UnsafeMutablePointer<Int32>
}

public protocol Layer {
    /// Adds this layer's tensors to `layout` (PyTorch's state_dict names and shapes). A network
    /// registers its layers in the order they were declared, which is the state_dict's.
    func register(_ layout: inout ParameterLayout)
    /// Points the layer's kernel at its slices of the flat buffers (laid out by `register`).
    mutating func bind(_ layout: ParameterLayout, params: FloatBuffer, grads: FloatBuffer)
    /// The output's shape per sample for the inputs' (one, or two for a two-input layer); traps on
    /// shapes the layer cannot take.
    func outputShape(_ inputs: [TensorShape]) -> TensorShape
    /// Floats of workspace for a batch of n of `input`.
    func workspaceSize(_ input: TensorShape, n: Int) -> Int
    /// Int32s of workspace for a batch of n of `input` (a max-pool's positions).
    func indexWorkspaceSize(_ input: TensorShape, n: Int) -> Int
    /// Whether the output is the input's own memory (and its gradient the input's gradient).
    var inPlace: Bool { get }
    /// The activation this layer ends with whose backward it leaves to the loss (the loss returns
    /// dL/dz before it): only the network's last layer may have one.
    var lossActivation: OutputActivation? { get }
    func forward(_ io: LayerIO)
    func backward(_ io: LayerIO)
}

extension Layer {
    public func register(_ layout: inout ParameterLayout) {}
    public mutating func bind(_ layout: ParameterLayout, params: FloatBuffer, grads: FloatBuffer) {}
    public func workspaceSize(_ input: TensorShape, n: Int) -> Int { 0 }
    public func indexWorkspaceSize(_ input: TensorShape, n: Int) -> Int { 0 }
    public var inPlace: Bool { false }
    public var lossActivation: OutputActivation? { nil }
}

/// The (weight, bias) offsets of the tensors `prefix`.weight and `prefix`.bias in `layout`.
func parameterOffsets(_ layout: ParameterLayout, _ prefix: String) -> (weight: Int, bias: Int) {
    guard let weight = layout.slot(named: prefix + ".weight"), let bias = layout.slot(named: prefix + ".bias") else {
        preconditionFailure("\(prefix) is not registered in this layout")
    }
    return (weight.offset, bias.offset)
}
