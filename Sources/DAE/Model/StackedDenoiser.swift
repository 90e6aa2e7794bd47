// The stacked denoising autoencoder of Vincent et al. (2008, 2010), fully connected, with
// widths d0 (pixels) -> d1 -> ... -> dL. Layer j (0-based) is an encoder Linear(d_j, d_{j+1}) and
// a decoder Linear(d_{j+1}, d_j), named as a PyTorch module with two ModuleLists would name them:
//
//   encoders.j.weight [d_{j+1}, d_j]   encoders.j.bias [d_{j+1}]
//   decoders.j.weight [d_j, d_{j+1}]   decoders.j.bias [d_j]      (no decoders.j.weight when tied:
//                                                                  the decoder uses encoders.j.weight^T)
//
// Each layer's four tensors are contiguous in the flat buffer, so the phase that trains a layer
// trains one slice. Activations are row-major [n, width]; the hidden units use `activation`
// (sigmoid or ReLU); decoder 0 ends in a sigmoid (pixels are in [0,1]); decoders above it end in
// the hidden activation (they reconstruct the codes of the layer below).
//
// Two modes:
//   layer(k), pre-training layer k on the clean codes c_k of the frozen layers below (c_0 = x):
//     c_k [n,d_k] --corrupt--> input [n,d_k] -enc k, act-> y [n,d_{k+1}] -dec k, act-> output [n,d_k]
//     loss(output, c_k); gradients for layer k only
//   deep(D), the image autoencoder of layers 0..<D (fine-tuning, evaluation, denoising):
//     input [n,d0] -enc 0..D-1-> code [n,d_D] -dec D-1..0-> output [n,d0]; gradients for layers 0..<D

public final class StackedDenoiser: DenoisingNetwork {
    public enum Mode: Equatable { case layer(Int), deep(Int) }

    public let spec: StackedSpec
    public let capacity: Int
    public let layout: ParameterLayout
    public let params: FloatBuffer
    public let grads: FloatBuffer
    public private(set) var mode: Mode
    let widths: [Int]
    let encoders: [Linear], decoders: [Linear]
    let layerRanges: [Range<Int>]           // each layer's slice of the flat buffer
    /// Where each encoder's and decoder's gradients are in the flat buffer: weight and bias (a tied
    /// decoder: its bias; its weight's gradient is added to its encoder's).
    let encoderGradients: [Range<Int>], decoderGradients: [Range<Int>]

    public let input: UnsafeMutablePointer<Float>        // [n, max(d0..d_{L-1})]
    public let output: UnsafeMutablePointer<Float>       // [n, max(d0..d_{L-1})]
    public let gradOutput: UnsafeMutablePointer<Float>   // [n, max(d0..d_{L-1})]
    let codes: [UnsafeMutablePointer<Float>]             // codes[j] [n, d_j] for j = 1...L (codes[0] unused)
    let decoded: [UnsafeMutablePointer<Float>]           // decoded[j] [n, d_j] for j = 1..<L: decoder j's output
    let gradA: UnsafeMutablePointer<Float>, gradB: UnsafeMutablePointer<Float>   // [n, max width] ping-pong
    let arena: Arena<Float>
    /// Whether the lockstep passes run on the C kernel (linear.c) or on OpenBLAS, a call per group
    /// (LockstepLinearKernel, read once: a model's passes never mix the two).
    let lockstepKernel = LockstepLinearKernel.avx2

    public static func makeLayout(_ spec: StackedSpec) -> ParameterLayout {
        var layout = ParameterLayout()
        let d = spec.widths
        for j in 0..<spec.hidden.count {
            _ = Linear.register(&layout, prefix: "encoders.\(j)", inFeatures: d[j], outFeatures: d[j + 1])
            if spec.tied {
                _ = layout.add("decoders.\(j).bias", shape: [d[j]], fanIn: d[j + 1])
            } else {
                _ = Linear.register(&layout, prefix: "decoders.\(j)", inFeatures: d[j + 1], outFeatures: d[j])
            }
        }
        return layout
    }

    public init(_ spec: StackedSpec, capacity: Int, sharedParameters: FloatBuffer? = nil) {
        precondition(capacity > 0 && !spec.hidden.isEmpty)
        self.spec = spec; self.capacity = capacity
        let layout = Self.makeLayout(spec)
        self.layout = layout
        params = sharedParameters ?? FloatBuffer(count: layout.count)
        precondition(params.count == layout.count)
        grads = FloatBuffer(count: layout.count)
        let d = spec.widths, L = spec.hidden.count
        widths = d
        mode = .layer(0)
        var encoders: [Linear] = [], decoders: [Linear] = [], ranges: [Range<Int>] = []
        var encoderGradients: [Range<Int>] = [], decoderGradients: [Range<Int>] = []
        for j in 0..<L {
            let w = layout.slot(named: "encoders.\(j).weight")!.offset, b = layout.slot(named: "encoders.\(j).bias")!.offset
            let db = layout.slot(named: "decoders.\(j).bias")!
            encoders.append(Linear(inFeatures: d[j], outFeatures: d[j + 1], offsets: (w, b), params: params, grads: grads))
            if spec.tied {
                decoders.append(Linear(inFeatures: d[j + 1], outFeatures: d[j], offsets: (w, db.offset), params: params, grads: grads,
                                       storedTransposed: true))
            } else {
                let dw = layout.slot(named: "decoders.\(j).weight")!.offset
                decoders.append(Linear(inFeatures: d[j + 1], outFeatures: d[j], offsets: (dw, db.offset), params: params, grads: grads))
            }
            ranges.append(w ..< db.offset + db.count)
            encoderGradients.append(w ..< b + d[j + 1])
            decoderGradients.append((spec.tied ? db.offset : layout.slot(named: "decoders.\(j).weight")!.offset) ..< db.offset + db.count)
        }
        self.encoders = encoders; self.decoders = decoders; layerRanges = ranges
        self.encoderGradients = encoderGradients; self.decoderGradients = decoderGradients

        let maxIn = d.dropLast().max()!, maxAll = d.max()!
        let sizes = [3 * maxIn, 2 * maxAll] + d.dropFirst().map { $0 } + d.dropFirst().dropLast().map { $0 }
        arena = Arena(capacity: capacity * sizes.reduce(0, +), zero: 0)
        input = arena.take(capacity * maxIn); output = arena.take(capacity * maxIn); gradOutput = arena.take(capacity * maxIn)
        gradA = arena.take(capacity * maxAll); gradB = arena.take(capacity * maxAll)
        var codes = [input]                        // placeholder at index 0
        for j in 1...L { codes.append(arena.take(capacity * d[j])) }
        var decoded = [input]                      // placeholder at index 0
        for j in 1..<L { decoded.append(arena.take(capacity * d[j])) }
        self.codes = codes; self.decoded = decoded
    }

    var layers: Int { spec.hidden.count }

    public func initialize(seed: UInt64) { initializeParameters(params, layout: layout, seed: seed) }

    public func setPhase(_ phase: Int) { mode = phase < layers ? .layer(phase) : .deep(layers) }
    public func setImageAutoencoder(afterPhase phase: Int) { mode = .deep(min(phase, layers - 1) + 1) }

    public var inputSize: Int {
        switch mode {
        case .layer(let k): return widths[k]
        case .deep: return widths[0]
        }
    }

    public var outputActivation: OutputActivation {
        if case .layer(let k) = mode, k > 0 { return spec.activation == .relu ? .relu : .sigmoid }
        return .sigmoid
    }

    public var trainable: Range<Int> {
        switch mode {
        case .layer(let k): return layerRanges[k]
        case .deep(let depth): return 0 ..< layerRanges[depth - 1].upperBound
        }
    }

    /// The encoder's depth for features: that of the image autoencoder selected (all layers by default).
    var encoderDepth: Int {
        if case .deep(let depth) = mode { return depth }
        return layers
    }

    public var codeShape: [Int] { [widths[encoderDepth]] }

    /// The activation on columns `columns` of x [n, width] (all of them: one pass).
    func activate(_ x: UnsafeMutablePointer<Float>, n: Int, width: Int, columns: Range<Int>, _ kind: OutputActivation) {
        forEachRowPart(x, n: n, width: width, columns: columns) { p, count in
            if kind == .relu { ReLU.forward(p, count: count) } else { Sigmoid.forward(p, count: count) }
        }
    }

    /// The hidden activation's backward on columns `columns` of grad [n, width], y its output.
    func activationBackward(y: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, n: Int, width: Int, columns: Range<Int>) {
        forEachRowPart(grad, n: n, width: width, columns: columns) { g, count in
            let yy = y + (g - grad)
            if spec.activation == .relu { ReLU.backward(y: yy, grad: g, count: count) } else { Sigmoid.backward(y: yy, grad: g, count: count) }
        }
    }

    /// body(start, count) over the runs of columns `columns` of [n, width]: one run if they are all.
    @inline(__always)
    func forEachRowPart(_ x: UnsafeMutablePointer<Float>, n: Int, width: Int, columns: Range<Int>,
                        _ body: (UnsafeMutablePointer<Float>, Int) -> Void) {
        if columns.count == width { body(x, n * width); return }
        guard !columns.isEmpty else { return }
        for r in 0..<n { body(x + r * width + columns.lowerBound, columns.count) }
    }

    var hidden: OutputActivation { spec.activation == .relu ? .relu : .sigmoid }

    public func encode(n: Int) { encode(input, depth: encoderDepth, rows: 0 ..< n, groupSize: n) }

    public func copyCode(sample i: Int, n: Int, into out: UnsafeMutablePointer<Float>) {
        let d = encoderDepth
        out.update(from: codes[d] + i * widths[d], count: widths[d])
    }
}
