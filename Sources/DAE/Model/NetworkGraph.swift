// The description of an image network: its layers, the order they run in, which tensors they
// read and write, and how some tensors share memory (a concatenation's parts are stored inside
// it). It holds no memory and knows no image size, so a model's parameter layout comes from it
// alone (ConvDenoiser.makeLayout, UNet.makeLayout); MemoryPlan sizes it for one image size and
// batch capacity, and ImageNetwork runs it.
//
// A model declares its layers in state_dict order (`declare`) and applies each once to the
// tensors it reads (`apply`); `add` does both, for models whose state_dict follows the forward
// order. The backward runs the applied layers in reverse. A tensor read by several layers gets
// the sum of their gradients (the U-Net's skips: the concatenation's share, then the pool's).
//
//   var g = NetworkGraph(channels: 1)
//   var t = g.add(Conv2dLayer("encoder.0", inChannels: 1, outChannels: 32, kernel: 3), to: g.input, name: "conv1")
//   t = g.add(ReLUMaxPool2dLayer(), to: t, name: "relu+pool1")
//   ...; g.code = t; ...; g.output = t

public struct NetworkGraph {
    /// A tensor of the graph: the network's input, a layer's output or a concatenation.
    public struct Tensor: Hashable, Sendable { let id: Int }
    /// A declared layer, to apply once.
    public struct LayerID: Hashable, Sendable { let index: Int }

    /// One application of a layer: which tensors it reads (one or two) and writes.
    struct Node {
        let layer: Int
        let inputs: [Int]
        let output: Int
        /// For timing slots and messages, e.g. "conv1".
        let name: String
        /// Whether the backward reports progress after this node (the trainer's reduction of the
        /// decoder's gradients may advance there; see DenoisingNetwork.backward(n:afterLayer:)).
        let reports: Bool
    }

    /// Channels of the network's input (and, for an image-to-image network, its output).
    public let channels: Int
    var layers: [any Layer] = []
    var applied: [Bool] = []
    var nodes: [Node] = []
    /// For each tensor: the concatenation's parts, or nil for the input and layer outputs.
    var parts: [[Int]?] = [nil]
    /// The encoder's output (features; `encode` runs the layers up to the one writing it).
    public var code: Tensor?
    /// The reconstruction.
    public var output: Tensor?
    /// The first parameter of the decoder, when the decoder is the tail of the parameters and its
    /// backward runs before any other layer's (so its gradients can be reduced while the encoder's
    /// backward runs), e.g. "decoder.0.weight".
    public var decoderStart: String?

    public init(channels: Int) {
        precondition(channels > 0)
        self.channels = channels
    }

    /// The network's input, [channels, n, H, W].
    public var input: Tensor { Tensor(id: 0) }

    /// Declares a layer; its parameters follow those of the layers declared before it.
    public mutating func declare(_ layer: some Layer) -> LayerID {
        layers.append(layer)
        applied.append(false)
        return LayerID(index: layers.count - 1)
    }

    /// Runs `layer` (declared, not yet applied) on `inputs` after the layers applied before it;
    /// returns its output. `reports`: whether the backward reports progress after it (default:
    /// when it has parameters).
    public mutating func apply(_ layer: LayerID, to inputs: Tensor..., name: String, reports: Bool? = nil) -> Tensor {
        precondition(!applied[layer.index], "layer \(name) is applied twice")
        precondition((1...2).contains(inputs.count) && inputs.allSatisfy { $0.id < parts.count })
        applied[layer.index] = true
        parts.append(nil)
        let output = parts.count - 1
        nodes.append(Node(layer: layer.index, inputs: inputs.map(\.id), output: output, name: name,
                          reports: reports ?? hasParameters(layer.index)))
        return Tensor(id: output)
    }

    /// declare then apply.
    public mutating func add(_ layer: some Layer, to inputs: Tensor..., name: String, reports: Bool? = nil) -> Tensor {
        let id = declare(layer)
        precondition((1...2).contains(inputs.count))
        return inputs.count == 1 ? apply(id, to: inputs[0], name: name, reports: reports)
                                 : apply(id, to: inputs[0], inputs[1], name: name, reports: reports)
    }

    /// The channel-wise concatenation of `parts` (same sides), at no cost: each part is stored
    /// inside it, its planes for the whole batch after the previous part's. A part must be a
    /// layer's own output (or an in-place layer's output over one), in no other concatenation.
    public mutating func concat(_ parts: Tensor...) -> Tensor {
        precondition(parts.count >= 2 && parts.allSatisfy { $0.id > 0 && $0.id < self.parts.count })
        self.parts.append(parts.map(\.id))
        return Tensor(id: self.parts.count - 1)
    }

    /// The parameter layout: every declared layer's tensors, in declaration order.
    public func makeLayout() -> ParameterLayout {
        var layout = ParameterLayout()
        for layer in layers { layer.register(&layout) }
        return layout
    }

    /// Each declared layer's range of the flat parameter buffer.
    func parameterRanges() -> [Range<Int>] {
        var layout = ParameterLayout()
        return layers.map { layer in
            let start = layout.count
            layer.register(&layout)
            return start ..< layout.count
        }
    }

    func hasParameters(_ layer: Int) -> Bool {
        var layout = ParameterLayout()
        layers[layer].register(&layout)
        return layout.count > 0
    }
}
