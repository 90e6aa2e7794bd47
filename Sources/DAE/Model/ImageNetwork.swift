// Runs a NetworkGraph: binds its layers to the flat parameter and gradient buffers, allocates the
// one arena its MemoryPlan sized (activations, gradients, workspaces), and runs the forward in
// the order the layers were applied and the backward in reverse. The image models (ConvDenoiser,
// UNet) are this class with a graph of their own; everything a DenoisingNetwork does beyond the
// graph (sample-major copies, features, progress reports for the trainer, per-layer timing) is
// here once.
//
// Nothing is allocated in forward, encode or backward: every pointer a layer gets is an arena
// offset, plus, for a tensor stored inside a concatenation, c * n*h*w for the channels before it.

public class ImageNetwork: DenoisingNetwork {
    public let height: Int, width: Int, capacity: Int
    public let layout: ParameterLayout
    /// Where the decoder's parameters start (graph.decoderStart), nil when the graph names none.
    public let decoderStart: Int?
    public let params: FloatBuffer
    public let grads: FloatBuffer
    /// [n, C, H, W], sample-major (the layers' input itself when C = 1).
    public let input: UnsafeMutablePointer<Float>
    /// [n, C, H, W] after `forward` (the last layer's output itself when C = 1).
    public let output: UnsafeMutablePointer<Float>
    /// dL/dz of the output before its activation, [n, C, H, W] (the output's gradient when C = 1).
    public let gradOutput: UnsafeMutablePointer<Float>

    let graph: NetworkGraph
    /// The graph's layers, bound to params and grads.
    let layers: [any Layer]
    let plan: MemoryPlan
    let arena: Arena<Float>, indexArena: Arena<Int32>
    /// The tensors the DenoisingNetwork contract names.
    let x: Int, y: Int, codeTensor: Int
    /// encode runs the nodes 0...codeNode.
    let codeNode: Int
    /// Per node: whether the decoder's gradients are final once its backward is done.
    let decoderDone: [Bool]
    let lossActivation: OutputActivation?

    /// `graph` for batches of up to `capacity` images of height x width. Parameters start at zero
    /// (call `initialize(seed:)` or load weights), unless `sharedParameters` is given: then this
    /// network is a replica that reads those parameters and owns only its activations and
    /// gradients (one per worker thread).
    public init(graph: NetworkGraph, height: Int, width: Int, capacity: Int, sharedParameters: FloatBuffer? = nil) {
        guard let output = graph.output?.id, let code = graph.code?.id else { preconditionFailure("the graph needs an output and a code") }
        precondition(graph.applied.allSatisfy { $0 }, "every declared layer must be applied")
        self.height = height; self.width = width; self.capacity = capacity
        self.graph = graph
        let layout = graph.makeLayout()
        self.layout = layout
        let params = sharedParameters ?? FloatBuffer(count: layout.count), grads = FloatBuffer(count: layout.count)
        precondition(params.count == layout.count)
        self.params = params; self.grads = grads
        var layers = graph.layers
        for i in layers.indices { layers[i].bind(layout, params: params, grads: grads) }
        self.layers = layers

        let plan = MemoryPlan(graph, height: height, width: width, capacity: capacity)
        self.plan = plan
        precondition(plan.shapes[output] == plan.shapes[0], "the output \(plan.shapes[output]) must be the input's shape \(plan.shapes[0])")
        precondition(plan.region(output).channels.lowerBound == 0 && plan.gradients[output] != nil)
        arena = Arena(capacity: plan.floats, zero: 0)
        indexArena = Arena(capacity: plan.integers, zero: 0)
        x = 0; y = output; codeTensor = code
        guard let producer = graph.nodes.firstIndex(where: { $0.output == code }) else { preconditionFailure("the code is no layer's output") }
        codeNode = producer
        let activations = graph.nodes.map { graph.layers[$0.layer].lossActivation }
        precondition(activations.dropLast().allSatisfy { $0 == nil } && graph.nodes.last?.output == output,
                     "only the last layer, which writes the output, may end in an activation the loss differentiates")
        lossActivation = activations.last ?? nil
        (decoderStart, decoderDone) = Self.decoderTail(graph, layout: layout)
        // the output starts at channel 0 of its memory (checked above): these do not depend on n
        if let (i, o, g) = plan.sampleMajor {
            input = arena.slice(at: i); self.output = arena.slice(at: o); gradOutput = arena.slice(at: g)
        } else {
            let base = arena.slice(at: 0)
            input = Self.resolve(plan, 0, n: capacity, gradient: false, base: base)
            self.output = Self.resolve(plan, output, n: capacity, gradient: false, base: base)
            gradOutput = Self.resolve(plan, output, n: capacity, gradient: true, base: base)
        }
    }

    /// The decoder's first parameter offset and, per node, whether the decoder's gradients are
    /// final after its backward: the decoder's layers must hold the tail of the parameters and
    /// run their backward before any other layer with parameters.
    static func decoderTail(_ graph: NetworkGraph, layout: ParameterLayout) -> (Int?, [Bool]) {
        guard let name = graph.decoderStart else { return (nil, graph.nodes.map { _ in true }) }
        guard let start = layout.slot(named: name)?.offset else { preconditionFailure("\(name) is not a parameter") }
        let ranges = graph.parameterRanges()
        let decoder = graph.nodes.indices.filter { !ranges[graph.nodes[$0].layer].isEmpty && ranges[graph.nodes[$0].layer].lowerBound >= start }
        precondition(decoder.map { ranges[graph.nodes[$0].layer].count }.reduce(0, +) == layout.count - start, "the decoder must be the parameters' tail")
        guard let first = decoder.min() else { preconditionFailure("no layer holds \(name)") }
        precondition(graph.nodes.indices.allSatisfy { ranges[graph.nodes[$0].layer].isEmpty || decoder.contains($0) || $0 < first },
                     "the decoder's backward must run before every other layer's")
        return (start, graph.nodes.indices.map { $0 <= first })
    }

    /// Tensor t's values (or gradient) for a batch of n, in an arena whose first float is `base`.
    static func resolve(_ plan: MemoryPlan, _ t: Int, n: Int, gradient: Bool, base: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        guard let place = gradient ? plan.gradients[t] : plan.values[t] else { preconditionFailure("tensor \(t) has no gradient") }
        switch place {
        case .own(let offset): return base + offset
        case .view(let of, let channel): return resolve(plan, of, n: n, gradient: gradient, base: base) + channel * n * plan.shapes[of].plane
        }
    }

    /// Tensor t's values for a batch of n.
    func value(_ t: Int, _ n: Int) -> UnsafeMutablePointer<Float> {
        Self.resolve(plan, t, n: n, gradient: false, base: arena.slice(at: 0))
    }

    /// Tensor t's gradient for a batch of n, nil when the backward does not reach t.
    func gradient(_ t: Int, _ n: Int) -> UnsafeMutablePointer<Float>? {
        guard plan.gradients[t] != nil else { return nil }
        return Self.resolve(plan, t, n: n, gradient: true, base: arena.slice(at: 0))
    }

    public var parameterCount: Int { layout.count }
    public var inputSize: Int { graph.channels * height * width }
    public var outputActivation: OutputActivation {
        lossActivation ?? .identity     // no activation at the end: the loss takes the output as it is
    }
    public var trainable: Range<Int> { 0 ..< layout.count }
    public func setPhase(_ phase: Int) {}
    public func setImageAutoencoder(afterPhase phase: Int) {}
    public func target(images: UnsafePointer<Float>, n: Int) -> UnsafePointer<Float> { images }
    public var codeShape: [Int] { let s = plan.shapes[codeTensor]; return [s.channels, s.height, s.width] }

    /// The code is [c, n, h, w]: sample i's planes are n*h*w apart.
    public func copyCode(sample i: Int, n: Int, into out: UnsafeMutablePointer<Float>) {
        let shape = plan.shapes[codeTensor], code = value(codeTensor, n)
        for c in 0..<shape.channels { (out + c * shape.plane).update(from: code + (c * n + i) * shape.plane, count: shape.plane) }
    }

    public func initialize(seed: UInt64) {
        initializeParameters(params, layout: layout, seed: seed)
    }

    /// The names the graph gives its layers, in forward order.
    public var layerNames: [String] { graph.nodes.map(\.name) }

    /// The bound layer the graph applied under `name`.
    public func layer(named name: String) -> any Layer {
        guard let node = graph.nodes.first(where: { $0.name == name }) else { preconditionFailure("no layer \(name)") }
        return layers[node.layer]
    }

    // Optional per-layer timing for the benchmark: when `phaseSeconds` is set, node i's forward
    // adds its wall time to slot i and its backward to slot 2 * nodes - 1 - i (ConvDenoiser.phaseNames).
    public var phaseSeconds: UnsafeMutablePointer<Double>? = nil
    var phaseStart = 0.0
    @inline(__always) func tick(_ slot: Int) {
        guard let slots = phaseSeconds else { return }
        let now = monotonicSeconds()
        if slot >= 0 { slots[slot] += now - phaseStart }
        phaseStart = now
    }
}

extension ImageNetwork {
    /// Runs the network on input[0 ..< n*C*H*W], leaving the reconstruction in output.
    public func forward(n: Int) {
        encode(n: n)
        for i in codeNode + 1 ..< graph.nodes.count { forwardNode(i, n: n) }
        if graph.channels > 1 { transposePlanes(value(y, n), output, outer: graph.channels, inner: n, plane: height * width) }
    }

    /// Runs only the encoder, the layers up to the one writing the code.
    public func encode(n: Int) {
        precondition(n > 0 && n <= capacity)
        if graph.channels > 1 { transposePlanes(input, value(x, n), outer: n, inner: graph.channels, plane: height * width) }
        tick(-1)
        for i in 0...codeNode { forwardNode(i, n: n) }
    }

    /// Given gradOutput = dL/dz (before the output's activation) for the last forward of n images,
    /// writes the gradient of every parameter into `grads` (overwriting).
    public func backward(n: Int) { backward(n: n, afterLayer: { _ in }) }

    /// backward(n:), calling afterLayer after each layer the graph marks as reporting, with true
    /// once the decoder's gradients are final.
    public func backward(n: Int, afterLayer: (_ decoderDone: Bool) -> Void) {
        if graph.channels > 1 { transposePlanes(gradOutput, gradient(y, n)!, outer: n, inner: graph.channels, plane: height * width) }
        tick(-1)
        let count = graph.nodes.count
        for i in (0..<count).reversed() where plan.runsBackward[i] {
            backwardNode(i, n: n)
            tick(2 * count - 1 - i)
            if graph.nodes[i].reports { afterLayer(decoderDone[i]) }
        }
    }

    func forwardNode(_ i: Int, n: Int) {
        layers[graph.nodes[i].layer].forward(arguments(i, n: n))
        tick(i)
    }

    /// Node i's backward; an input whose gradient an earlier backward (a later layer) wrote gets
    /// this one's in a scratch slice, added to it after.
    func backwardNode(_ i: Int, n: Int) {
        var io = arguments(i, n: n)
        let node = graph.nodes[i], scratch = plan.scratch[i]
        if let s = scratch[0] { io.dx = arena.slice(at: s) }
        if scratch.count > 1, let s = scratch[1] { io.dx2 = arena.slice(at: s) }
        layers[node.layer].backward(io)
        for (j, s) in scratch.enumerated() {
            guard let s else { continue }
            let sum = gradient(node.inputs[j], n)!, part = arena.slice(at: s)
            for k in 0..<plan.shapes[node.inputs[j]].count(n) { sum[k] += part[k] }
        }
    }

    /// The pointers node i's layer works on for a batch of n. In the forward, dy is y (unread)
    /// when the output has no gradient.
    func arguments(_ i: Int, n: Int) -> LayerIO {
        let node = graph.nodes[i], first = node.inputs[0], second = node.inputs.count > 1 ? node.inputs[1] : nil
        let y = value(node.output, n)
        return LayerIO(n: n, input: plan.shapes[first], x: value(first, n), x2: second.map { value($0, n) }, y: y,
                       dx: gradient(first, n), dx2: second.flatMap { gradient($0, n) }, dy: gradient(node.output, n) ?? y,
                       workspace: arena.slice(at: plan.workspaces[i]), indices: indexArena.slice(at: plan.indices[i]))
    }
}
