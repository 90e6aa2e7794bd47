// All of a model's parameters live in one contiguous Float buffer, and all gradients in another
// with the same layout. A tensor is a named slice (offset, shape) of the buffer; layers hold
// pointers into it. A gradient reduction or an optimizer step is then one pass over one buffer.

/// A named parameter tensor inside the flat buffer, with PyTorch's name and shape.
public struct TensorSlot: Sendable, Equatable {
    public let name: String       // the reference model's state_dict key, e.g. "encoder.0.weight"
    public let shape: [Int]       // PyTorch's layout, e.g. [32, 1, 3, 3]
    public let offset: Int        // first element in the flat buffer
    public let fanIn: Int         // for PyTorch's default initialisation bound 1/sqrt(fanIn)
    public var count: Int { shape.reduce(1, *) }
}

/// The layout of a flat parameter buffer: built by appending tensors in state_dict order.
public struct ParameterLayout: Sendable, Equatable {
    public private(set) var slots: [TensorSlot] = []
    public private(set) var count = 0

    public init() {}

    public mutating func add(_ name: String, shape: [Int], fanIn: Int) -> Int {
        let slot = TensorSlot(name: name, shape: shape, offset: count, fanIn: fanIn)
        slots.append(slot)
        count += slot.count
        return slot.offset
    }

    public func slot(named name: String) -> TensorSlot? { slots.first { $0.name == name } }
}

/// PyTorch's default initialisation for Conv2d and ConvTranspose2d: weights from
/// kaiming_uniform_(a=sqrt(5)), whose bound gain*sqrt(3/fan_in) with gain sqrt(2/(1+5)) is
/// 1/sqrt(fan_in); biases from uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)). So every tensor is
/// uniform(±1/sqrt(fan_in)), with fan_in = size(1) * kernel area (for ConvTranspose2d, whose
/// weight is [in, out, kh, kw], that is out * kh * kw). The numbers come from our counter-based
/// generator keyed by (seed, tensor index), not from torch's generator.
public func initializeParameters(_ params: FloatBuffer, layout: ParameterLayout, seed: UInt64) {
    for (index, slot) in layout.slots.enumerated() {
        var rng = RandomStream(seed: seed, purpose: .initialization, UInt64(index))
        let bound = 1 / Float(slot.fanIn).squareRoot()
        let p = params.pointer + slot.offset
        for i in 0..<slot.count {
            p[i] = (2 * rng.uniform() - 1) * bound
        }
    }
}
