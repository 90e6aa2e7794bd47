// Measures a 3x3 convolution's two ways of computing its output and input gradient, direct
// (im2col + GEMM, col2im) and Winograd F(2x2, 3x3), on one layer shape: the figures behind each
// layer's fixed choice of path (`dae-dist bench --what conv`). Timing chooses nothing at run time.

public enum ConvPaths {
    /// Where the Winograd tile transforms run on this CPU: "avx512" or "swift" (same bits).
    public static var winogradKernels: String { Winograd.avx512 ? "avx512" : "swift" }

    public struct Timing: Sendable {
        /// Milliseconds per call: forward, and backward (dW, db and dx).
        public var forward: Double, backward: Double
    }

    public struct Comparison: Sendable {
        public var direct: Timing, winograd: Timing
        /// The Winograd forward's stages in milliseconds: weight transform, input transform, the
        /// 16 GEMMs, output transform.
        public var winogradStages: [Double]
        /// Largest |Winograd - direct| relative to the largest |direct|, for y, dW and dx.
        public var difference: (y: Float, dW: Float, dx: Float)
    }

    /// Times both paths on n images of h x w for inChannels -> outChannels, `reps` calls each after
    /// a warm-up, and compares their results on the same random input, weights and dy.
    /// Without `inputGradient` (a first layer), the backward computes dW and db only.
    public static func measure(inChannels: Int, outChannels: Int, n: Int, h: Int, w: Int, inputGradient: Bool = true,
                               reps: Int = 200) -> Comparison {
        var layout = ParameterLayout()
        let offsets = Conv2d.register(&layout, prefix: "conv", inChannels: inChannels, outChannels: outChannels, kernel: 3)
        let params = FloatBuffer(count: layout.count)
        let grads = FloatBuffer(count: layout.count), grads2 = FloatBuffer(count: layout.count)
        initializeParameters(params, layout: layout, seed: 1)
        let direct = Conv2d(inChannels: inChannels, outChannels: outChannels, kernel: 3, padding: 1, offsets: offsets, params: params, grads: grads)
        let fast = Conv2d(inChannels: inChannels, outChannels: outChannels, kernel: 3, padding: 1, winograd: true, offsets: offsets, params: params, grads: grads2)
        let pixels = n * h * w
        let x = FloatBuffer(count: inChannels * pixels), dy = FloatBuffer(count: outChannels * pixels)
        let y = FloatBuffer(count: outChannels * pixels), y2 = FloatBuffer(count: outChannels * pixels)
        let dxBuffer = FloatBuffer(count: inChannels * pixels), dx2Buffer = FloatBuffer(count: inChannels * pixels)
        let dx = inputGradient ? dxBuffer.pointer : nil, dx2 = inputGradient ? dx2Buffer.pointer : nil
        let col = FloatBuffer(count: direct.workspaceSize(n: n, h: h, w: w)), dcol = FloatBuffer(count: col.count)
        let workspace = FloatBuffer(count: fast.workspaceSize(n: n, h: h, w: w))
        var rng = RandomStream(seed: 12345, purpose: .initialization, 0)
        for buffer in [x, dy] {
            for i in 0..<buffer.count { buffer[i] = rng.uniform() - 0.5 }
        }

        func time(_ body: () -> Void) -> Double {
            for _ in 0..<max(1, reps / 10) { body() }
            let start = monotonicSeconds()
            for _ in 0..<reps { body() }
            return (monotonicSeconds() - start) / Double(reps) * 1e3
        }
        let directTiming = Timing(
            forward: time { direct.forward(x: x.pointer, y: y.pointer, col: col.pointer, n: n, h: h, w: w) },
            backward: time { direct.backward(dy: dy.pointer, col: col.pointer, dx: dx, dcol: dcol.pointer, n: n, h: h, w: w) })
        let winogradTiming = Timing(
            forward: time { fast.forward(x: x.pointer, y: y2.pointer, col: workspace.pointer, n: n, h: h, w: w) },
            backward: time { fast.backward(dy: dy.pointer, col: workspace.pointer, dx: dx2, dcol: nil, n: n, h: h, w: w) })
        // the Winograd forward's stages one by one
        let tiles = pixels / 4
        let ws = Winograd.Workspace(workspace.pointer, inChannels: inChannels, outChannels: outChannels, pixels: pixels)
        let stages = [
            time { Winograd.transformWeights(params.pointer + offsets.weight, pairs: outChannels * inChannels, into: ws.u) },
            time { Winograd.transformInput(x.pointer, channels: inChannels, n: n, h: h, w: w, into: ws.v, rows: ws.rows) },
            time {
                for xi in 0..<16 {
                    gemm(m: outChannels, n: tiles, k: inChannels, a: ws.u + xi * outChannels * inChannels, lda: inChannels,
                         b: ws.v + xi * inChannels * tiles, ldb: tiles, c: ws.m + xi * outChannels * tiles, ldc: tiles)
                }
            },
            time { Winograd.transformOutput(ws.m, channels: outChannels, n: n, h: h, w: w, bias: params.pointer + offsets.bias, into: y2.pointer) },
        ]
        // the same step on both paths, then the differences
        direct.forward(x: x.pointer, y: y.pointer, col: col.pointer, n: n, h: h, w: w)
        direct.backward(dy: dy.pointer, col: col.pointer, dx: dx, dcol: dcol.pointer, n: n, h: h, w: w)
        fast.forward(x: x.pointer, y: y2.pointer, col: workspace.pointer, n: n, h: h, w: w)
        fast.backward(dy: dy.pointer, col: workspace.pointer, dx: dx2, dcol: nil, n: n, h: h, w: w)
        func difference(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
            var largest: Float = 0, worst: Float = 0
            for i in 0..<count { largest = max(largest, abs(a[i])); worst = max(worst, abs(a[i] - b[i])) }
            return worst / max(largest, .leastNormalMagnitude)
        }
        let weights = inChannels * outChannels * 9
        return Comparison(direct: directTiming, winograd: winogradTiming, winogradStages: stages,
                          difference: (difference(y.pointer, y2.pointer, y.count),
                                       difference(grads.pointer + offsets.weight, grads2.pointer + offsets.weight, weights),
                                       inputGradient ? difference(dxBuffer.pointer, dx2Buffer.pointer, dxBuffer.count) : 0))
    }
}
