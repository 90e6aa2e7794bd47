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

public struct Linear {
    public let inFeatures: Int
    public let outFeatures: Int
    /// The weight is stored as [in, out] (a tied decoder reading its encoder's weight).
    public let storedTransposed: Bool
    let weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>
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
    }

    /// x [n, in] -> y [n, out]
    public func forward(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, n: Int) {
        for r in 0..<n { (y + r * outFeatures).update(from: bias, count: outFeatures) }
        gemm(transB: !storedTransposed, m: n, n: outFeatures, k: inFeatures,
             a: x, lda: inFeatures, b: weight, ldb: storedTransposed ? outFeatures : inFeatures,
             beta: 1, c: y, ldc: outFeatures)
    }

    /// Writes db and dW (dW added to what is there when `accumulate`, for tied weights) and,
    /// when asked, dx [n, in].
    public func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, n: Int,
                         accumulate: Bool = false) {
        if storedTransposed {
            gemm(transA: true, m: inFeatures, n: outFeatures, k: n, a: x, lda: inFeatures, b: dy, ldb: outFeatures,
                 beta: accumulate ? 1 : 0, c: gradWeight, ldc: outFeatures)
        } else {
            gemm(transA: true, m: outFeatures, n: inFeatures, k: n, a: dy, lda: outFeatures, b: x, ldb: inFeatures,
                 beta: accumulate ? 1 : 0, c: gradWeight, ldc: inFeatures)
        }
        for o in 0..<outFeatures {
            var s = 0.0
            for r in 0..<n { s += Double(dy[r * outFeatures + o]) }
            gradBias[o] = Float(s)
        }
        if let dx {
            gemm(transB: storedTransposed, m: n, n: inFeatures, k: outFeatures, a: dy, lda: outFeatures,
                 b: weight, ldb: storedTransposed ? outFeatures : inFeatures, beta: 0, c: dx, ldc: inFeatures)
        }
    }
}
