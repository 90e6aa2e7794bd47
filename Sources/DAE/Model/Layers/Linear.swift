// Linear(in, out) as torch.nn.Linear: weight [out, in], bias [out], y = x W^T + b. Activations
// here are row-major [n, features] (one sample per row), as in PyTorch.
//
//   forward:  y[n, out]  = x[n, in] . W^T + b
//   backward: dW[out, in] = dy^T . x ;  db[out] = sum over rows of dy ;  dx[n, in] = dy . W
//
// Tied weights (a stacked autoencoder's decoder reusing its encoder's weight, W_dec = W_enc^T):
// the decoder is a Linear whose weight is *stored* as [in, out] (the encoder's [out', in'] with
// in = out', out = in') and whose weight gradient is added to the encoder's:
//
//   forward:  y[n, out] = x[n, in] . S + b          (S the stored [in, out] matrix)
//   backward: dS[in, out] += x^T . dy ;  dx[n, in] = dy . S^T
//
// A team of threads (Team.swift) splits a layer by features: the forward and the weight and bias
// gradients over the output features (a thread packs and writes only its rows of W and dW), the
// input gradient over the input features; each part is one GEMM on a slice of the same buffers.
//
// Exact mode's lockstep passes (StackedDenoiser.swift) take instead, where the CPU has it, the C
// kernel of linear.c (the `Lockstep` functions): each output value one chain of fused
// multiply-adds in a fixed order, so a call over all of a rank's micro-batches, a team's threads
// each a part of the columns, gives every value the bits of a call on its micro-batch alone.

import CKernels

public struct Linear {
    public let inFeatures: Int
    public let outFeatures: Int
    /// The weight is stored as [in, out] (a tied decoder reading its encoder's weight).
    public let storedTransposed: Bool
    let weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>
    /// Where the weight (and its gradient) starts in the flat buffers.
    let weightIndex: Int
    let gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>

    public static func register(_ layout: inout ParameterLayout, prefix: String, inFeatures: Int, outFeatures: Int) -> (weight: Int, bias: Int) {
        let w = layout.add("\(prefix).weight", shape: [outFeatures, inFeatures], fanIn: inFeatures)
        let b = layout.add("\(prefix).bias", shape: [outFeatures], fanIn: inFeatures)
        return (w, b)
    }

    public init(inFeatures: Int, outFeatures: Int, offsets: (weight: Int, bias: Int), params: FloatBuffer, grads: FloatBuffer,
                storedTransposed: Bool = false) {
        self.inFeatures = inFeatures; self.outFeatures = outFeatures; self.storedTransposed = storedTransposed
        weight = params.pointer + offsets.weight; bias = params.pointer + offsets.bias
        gradWeight = grads.pointer + offsets.weight; gradBias = grads.pointer + offsets.bias
        weightIndex = offsets.weight
    }

    /// y[:, o] = x . W^T[:, o] + b[o] on the C kernel: columns `o` of y [n, out] (a team
    /// thread's part), from all of x [n, in].
    public func forwardLockstep(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, n: Int, outputs o: Range<Int>) {
        guard !o.isEmpty else { return }
        // B = W^T: B[i, o] = W[o, i] (stored [out, in]) or S[i, o] (stored [in, out])
        let b = storedTransposed ? weight + o.lowerBound : weight + o.lowerBound * inFeatures
        dae_linear_avx2(Int64(n), Int64(o.count), Int64(inFeatures), x, Int64(inFeatures), 1,
                        b, storedTransposed ? Int64(outFeatures) : 1, storedTransposed ? 1 : Int64(inFeatures),
                        bias + o.lowerBound, y + o.lowerBound, Int64(outFeatures), nil, 0, 0)
    }

    /// dx[:, i] = dy . W[:, i] on the C kernel: columns `i` of dx [n, in], from all of dy [n, out].
    public func backwardInputLockstep(dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, n: Int, inputs i: Range<Int>) {
        guard !i.isEmpty else { return }
        // B = W: B[o, i] = W[o, i] (stored [out, in]) or S[i, o] (stored [in, out])
        let b = storedTransposed ? weight + i.lowerBound * outFeatures : weight + i.lowerBound
        dae_linear_avx2(Int64(n), Int64(i.count), Int64(outFeatures), dy, Int64(outFeatures), 1,
                        b, storedTransposed ? 1 : Int64(inFeatures), storedTransposed ? Int64(outFeatures) : 1,
                        nil, dx + i.lowerBound, Int64(inFeatures), nil, 0, 0)
    }

    /// dW's rows `o` = dy[:, o]^T . x (n rows) on the C kernel, and db[o] (untied weights): dW
    /// written (not added), or with `target` added to its accumulator in fixed point instead
    /// (dW's memory then scratch); false if a value was left out there (beyond the target's
    /// limit or not finite). db is written either way.
    public func backwardWeightsLockstep(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, n: Int, outputs o: Range<Int>,
                                        into target: FixedPointTarget? = nil) -> Bool {
        precondition(!storedTransposed, "a tied weight's gradient is added to its encoder's")
        guard !o.isEmpty else { return true }
        let first = weightIndex + o.lowerBound * inFeatures
        let ok = dae_linear_avx2(Int64(o.count), Int64(inFeatures), Int64(n), dy + o.lowerBound, 1, Int64(outFeatures),
                                 x, Int64(inFeatures), 1, nil, gradWeight + o.lowerBound * inFeatures, Int64(inFeatures),
                                 target.map { $0.accumulator + (first - $0.first) }, Int64(inFeatures), target?.limit ?? 0)
        biasGradient(dy: dy, n: n, outputs: o)
        return ok != 0
    }

    /// x [n, in] -> y [n, out], or only the columns `outputs` of y (a team thread's part: it
    /// reads all of x and the rows `outputs` of W).
    public func forward(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, n: Int, outputs: Range<Int>? = nil) {
        let o = outputs ?? 0 ..< outFeatures
        guard !o.isEmpty else { return }
        for r in 0..<n { (y + r * outFeatures + o.lowerBound).update(from: bias + o.lowerBound, count: o.count) }
        gemm(transB: !storedTransposed, m: n, n: o.count, k: inFeatures,
             a: x, lda: inFeatures, b: storedTransposed ? weight + o.lowerBound : weight + o.lowerBound * inFeatures,
             ldb: storedTransposed ? outFeatures : inFeatures, beta: 1, c: y + o.lowerBound, ldc: outFeatures)
    }

    /// Writes db and dW (dW added to what is there when `accumulate`, for tied weights) and,
    /// when asked, dx [n, in].
    public func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, n: Int,
                         accumulate: Bool = false) {
        backwardWeights(dy: dy, x: x, n: n, outputs: 0 ..< outFeatures, accumulate: accumulate)
        if let dx { backwardInput(dy: dy, dx: dx, n: n, inputs: 0 ..< inFeatures) }
    }

    /// db and dW of the output features `outputs`: db[o] and dW's rows o (stored [in, out]: its
    /// columns o); reads dy's columns o and all of x.
    public func backwardWeights(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, n: Int, outputs o: Range<Int>,
                                accumulate: Bool = false) {
        guard !o.isEmpty else { return }
        if storedTransposed {
            // dS[:, o] (+)= x^T . dy[:, o]
            gemm(transA: true, m: inFeatures, n: o.count, k: n, a: x, lda: inFeatures, b: dy + o.lowerBound, ldb: outFeatures,
                 beta: accumulate ? 1 : 0, c: gradWeight + o.lowerBound, ldc: outFeatures)
        } else {
            // dW[o, :] (+)= dy[:, o]^T . x
            gemm(transA: true, m: o.count, n: inFeatures, k: n, a: dy + o.lowerBound, lda: outFeatures, b: x, ldb: inFeatures,
                 beta: accumulate ? 1 : 0, c: gradWeight + o.lowerBound * inFeatures, ldc: inFeatures)
        }
        biasGradient(dy: dy, n: n, outputs: o)
    }

    /// db[o] = the sums over the n rows of dy's columns o.
    func biasGradient(dy: UnsafePointer<Float>, n: Int, outputs o: Range<Int>) {
        // db[j] = sum over rows of dy[r, j], in Double, row by row: 8 columns at a time, each
        // lane one column's sum in the same order as the scalar loop of the tail (the same bits;
        // a column at a time, each add waited for the previous one)
        var j = o.lowerBound
        while j + 8 <= o.upperBound {
            var s = SIMD8<Double>()
            for r in 0..<n {
                let row = UnsafeRawPointer(dy + r * outFeatures + j).loadUnaligned(as: SIMD8<Float>.self)
                s += SIMD8<Double>(row)
            }
            for lane in 0..<8 { gradBias[j + lane] = Float(s[lane]) }
            j += 8
        }
        for j in j ..< o.upperBound {
            var s = 0.0
            for r in 0..<n { s += Double(dy[r * outFeatures + j]) }
            gradBias[j] = Float(s)
        }
    }

    /// dx[:, inputs] = dy . W[:, inputs] (stored [in, out]: dy . S[inputs, :]^T); reads all of dy.
    public func backwardInput(dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, n: Int, inputs i: Range<Int>) {
        guard !i.isEmpty else { return }
        gemm(transB: storedTransposed, m: n, n: i.count, k: outFeatures, a: dy, lda: outFeatures,
             b: storedTransposed ? weight + i.lowerBound * outFeatures : weight + i.lowerBound,
             ldb: storedTransposed ? outFeatures : inFeatures, beta: 0, c: dx + i.lowerBound, ldc: inFeatures)
    }
}
