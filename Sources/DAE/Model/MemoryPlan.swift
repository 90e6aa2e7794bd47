// Where every activation, gradient and workspace of a NetworkGraph lives, for one image size and
// batch capacity: offsets into one Float arena and one Int32 arena, computed once at a network's
// init, so that a training step allocates nothing.
//
// - Activations: the input and each layer's output get a slice of count(capacity) floats, except
//   an in-place layer's output, which is its input's memory, and the parts of a concatenation,
//   which are stored inside it: part j's planes start after the earlier parts' channels. In the
//   [channels, n, h, w] layout a channel's planes for the batch are contiguous, so for a batch of n
//   that is c * n*h*w floats in, where c counts the earlier parts' channels; the offset depends on
//   n, and ImageNetwork resolves it per call.
// - Gradients mirror the activations (a concatenation's gradient holds its parts' gradients the
//   same way) for every tensor the backward reaches: not the network's input.
// - A tensor read by several layers gets the first gradient (in backward order) written into its
//   own gradient, and each later one into a scratch slice the size of the tensor, which is then
//   added: the U-Net's skip s_k gets the concatenation's share, then the pool's.
// - Each layer gets its workspace (im2col, Winograd or transposed-convolution matrices, which its
//   backward reuses as dcol) and its index workspace (a pool's maximum positions).
// - With more than one channel, the sample-major [n, C, H, W] input, output and output gradient
//   the DenoisingNetwork contract asks for get slices of their own (copied to and from the
//   layers' layout); with one channel they are the input's, output's and its gradient's memory.

struct MemoryPlan {
    /// Where a tensor (or its gradient) lives: a slice of the arena, or channels of another tensor
    /// starting at `channel` (an in-place layer's output: channel 0 of its input).
    enum Place: Equatable {
        case own(offset: Int)
        case view(of: Int, channel: Int)
    }

    let capacity: Int
    var shapes: [TensorShape] = []
    var values: [Place] = []
    /// nil for the tensors the backward does not reach.
    var gradients: [Place?] = []
    /// Per node: workspace and index workspace offsets.
    var workspaces: [Int] = [], indices: [Int] = []
    /// Per node and input: the scratch offset the input's gradient is written to before it is
    /// added to the gradient, or nil when it is written into the gradient directly.
    var scratch: [[Int?]] = []
    /// Per node: whether its backward runs (its output's gradient exists).
    var runsBackward: [Bool] = []
    /// The sample-major input, output and output gradient (channels > 1).
    var sampleMajor: (input: Int, output: Int, gradOutput: Int)?
    var floats = 0, integers = 0

    init(_ graph: NetworkGraph, height: Int, width: Int, capacity: Int) {
        precondition(height > 0 && width > 0 && capacity > 0)
        guard let output = graph.output?.id else { preconditionFailure("the graph has no output") }
        self.capacity = capacity
        var arena = ArenaPlan(), indexArena = ArenaPlan()
        computeShapes(graph, TensorShape(channels: graph.channels, height: height, width: width))
        placeValues(graph)
        let needsGradient = Self.gradientsNeeded(graph, values: values)
        // values: the input and every own output or concatenation, then each node's workspaces
        values = values.enumerated().map { t, place in
            if case .own = place { return .own(offset: arena.reserve(shapes[t].count(capacity))) }
            return place
        }
        for node in graph.nodes {
            let input = shapes[node.inputs[0]], layer = graph.layers[node.layer]
            workspaces.append(arena.reserve(layer.workspaceSize(input, n: capacity)))
            indices.append(indexArena.reserve(layer.indexWorkspaceSize(input, n: capacity)))
        }
        // gradients mirror the values
        gradients = values.enumerated().map { t, place in
            guard needsGradient[t] else { return nil }
            if case .own = place { return .own(offset: arena.reserve(shapes[t].count(capacity))) }
            return place
        }
        planAccumulation(graph, output: output, arena: &arena)
        if graph.channels > 1 {
            let size = shapes[0].count(capacity)
            sampleMajor = (arena.reserve(size), arena.reserve(size), arena.reserve(size))
        }
        floats = arena.total; integers = indexArena.total
    }

    /// Each tensor's shape per sample, from the input's through the layers.
    private mutating func computeShapes(_ graph: NetworkGraph, _ input: TensorShape) {
        shapes = Array(repeating: input, count: graph.parts.count)
        var known = Array(repeating: false, count: graph.parts.count)
        known[0] = true
        func shape(_ t: Int) -> TensorShape {
            if known[t] { return shapes[t] }
            guard let parts = graph.parts[t] else { preconditionFailure("tensor \(t) is read before a layer writes it") }
            let first = shape(parts[0])
            let others = parts.dropFirst().map(shape)
            precondition(others.allSatisfy { $0.height == first.height && $0.width == first.width }, "concatenated tensors differ in size")
            shapes[t] = TensorShape(channels: others.reduce(first.channels) { $0 + $1.channels }, height: first.height, width: first.width)
            known[t] = true
            return shapes[t]
        }
        for node in graph.nodes {
            shapes[node.output] = graph.layers[node.layer].outputShape(node.inputs.map(shape))
            known[node.output] = true
        }
        for t in graph.parts.indices where !known[t] { _ = shape(t) }
    }

    /// Own slices (offsets assigned later), in-place views, and parts inside their concatenation.
    private mutating func placeValues(_ graph: NetworkGraph) {
        values = Array(repeating: .own(offset: 0), count: graph.parts.count)
        // an in-place layer overwrites its input: nothing else may read it (and the network's
        // input, which the DenoisingNetwork contract keeps, is never overwritten)
        for node in graph.nodes where graph.layers[node.layer].inPlace {
            let input = node.inputs[0]
            let readers = graph.nodes.filter { $0.inputs.contains(input) }.count + graph.parts.filter { $0?.contains(input) == true }.count
            precondition(input != 0 && readers == 1, "\(node.name) computes in place on a tensor something else reads")
            values[node.output] = .view(of: input, channel: 0)
        }
        for (t, parts) in graph.parts.enumerated() {
            guard let parts else { continue }
            var channel = 0
            for part in parts {
                let root = self.root(part)
                precondition(root != 0 && shapes[root] == shapes[part], "a concatenated tensor must be a layer's own output")
                values[root] = .view(of: t, channel: channel)
                channel += shapes[part].channels
            }
        }
    }

    /// The tensor whose own slice holds t's memory (t itself when it has one).
    func root(_ t: Int) -> Int {
        if case .view(let of, _) = values[t] { return root(of) }
        return t
    }

    /// t's memory as channels lo..<hi of its root.
    func region(_ t: Int) -> (root: Int, channels: Range<Int>) {
        var channel = 0, r = t
        while case .view(let of, let c) = values[r] { channel += c; r = of }
        return (r, channel ..< channel + shapes[t].channels)
    }

    /// The tensors the backward reaches: those that depend on a layer with parameters, and every
    /// tensor whose memory holds one of them (so that gradient views have somewhere to point).
    private static func gradientsNeeded(_ graph: NetworkGraph, values: [Place]) -> [Bool] {
        var needs = Array(repeating: false, count: graph.parts.count)
        func reached(_ t: Int) -> Bool { graph.parts[t]?.contains(where: reached) ?? needs[t] }
        for node in graph.nodes {
            needs[node.output] = graph.hasParameters(node.layer) || node.inputs.contains(where: reached)
        }
        for t in needs.indices where graph.parts[t] != nil { needs[t] = reached(t) }
        for t in needs.indices where needs[t] {
            var r = t
            while case .view(let of, _) = values[r] { needs[of] = true; r = of }
        }
        return needs
    }

    /// Which inputs' gradients are written directly and which through a scratch slice and an
    /// addition, following the backward (the nodes in reverse) over each root's channels.
    private mutating func planAccumulation(_ graph: NetworkGraph, output: Int, arena: inout ArenaPlan) {
        var written = shapes.map { Array(repeating: false, count: $0.channels) }
        func mark(_ t: Int) -> Bool {          // true: t's gradient had already been written
            let (r, channels) = region(t)
            let before = written[r][channels]
            precondition(before.allSatisfy { $0 } || !before.contains(true), "a gradient would be partly written twice")
            for c in channels { written[r][c] = true }
            return before.first == true
        }
        _ = mark(output)                     // the loss writes the output's gradient
        scratch = graph.nodes.map { Array(repeating: nil, count: $0.inputs.count) }
        runsBackward = graph.nodes.map { gradients[$0.output] != nil }
        for (i, node) in graph.nodes.enumerated().reversed() where runsBackward[i] {
            let (r, channels) = region(node.output)
            precondition(written[r][channels].allSatisfy { $0 }, "\(node.name)'s output gradient is never complete (is its output read?)")
            if graph.layers[node.layer].inPlace { continue }     // dx is dy's memory
            for (j, input) in node.inputs.enumerated() where gradients[input] != nil {
                if mark(input) { scratch[i][j] = arena.reserve(shapes[input].count(capacity)) }
            }
        }
    }
}
