// ConvTranspose2d(inChannels, outChannels, kernel s, stride s), padding 0: the decoder's 2x
// upsampling. With kernel == stride the output windows do not overlap, so the layer is one GEMM
// followed by a scatter (and its backward a gather followed by GEMMs): no col2im sums needed.
//
// Weight [in, out, s, s] (PyTorch's layout for transposed convolutions) is read as a matrix
// [in, out*s*s] whose column index is o*s*s + ky*s + kx.
//
//   forward:  col[out*s*s, N*H*W]  = W^T . x[in, N*H*W]
//             y[o, b, s*y+ky, s*x+kx] = act(col[o*s*s + ky*s + kx, (b*H + y)*W + x] + bias[o])
//             (y is [out, N, s*H, s*W]; act: the ReLU or Sigmoid after the layer, or none)
//   backward: dy *= (y > 0) when a ReLU follows (a Sigmoid's is in the loss gradient)
//             dcol = gather(dy) (the inverse of the scatter)
//             dW[in, out*s*s] = x . dcol^T ;  db[o] = sum of dy[o]
//             dx[in, N*H*W]   = W . dcol

public struct ConvTranspose2d {
    public let inChannels: Int
    public let outChannels: Int
    public let stride: Int
    let weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>
    let gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>

    public static func register(_ layout: inout ParameterLayout, prefix: String,
                                inChannels: Int, outChannels: Int, stride: Int) -> (weight: Int, bias: Int) {
        // PyTorch computes fan_in from weight.size(1), which for a transposed convolution is
        // the number of *output* channels.
        let fanIn = outChannels * stride * stride
        let w = layout.add("\(prefix).weight", shape: [inChannels, outChannels, stride, stride], fanIn: fanIn)
        let b = layout.add("\(prefix).bias", shape: [outChannels], fanIn: fanIn)
        return (w, b)
    }

    public init(inChannels: Int, outChannels: Int, stride: Int,
                offsets: (weight: Int, bias: Int), params: FloatBuffer, grads: FloatBuffer) {
        self.inChannels = inChannels; self.outChannels = outChannels; self.stride = stride
        weight = params.pointer + offsets.weight; bias = params.pointer + offsets.bias
        gradWeight = grads.pointer + offsets.weight; gradBias = grads.pointer + offsets.bias
    }

    var taps: Int { outChannels * stride * stride }

    /// x [in, n, h, w] -> activation(y) [out, n, s*h, s*w]; col is a workspace of out*s*s * n*h*w
    /// floats. The activation that follows the layer (ReLU, Sigmoid) is applied in the scatter, on
    /// each output row while it is in L1, instead of in another pass over y.
    public func forward(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, col: UnsafeMutablePointer<Float>,
                        n: Int, h: Int, w: Int, activation: OutputActivation? = nil) {
        let pixels = n * h * w
        gemm(transA: true, m: taps, n: pixels, k: inChannels, a: weight, lda: taps, b: x, ldb: pixels,
             beta: 0, c: col, ldc: pixels)
        let s = stride, outW = w * s, outPlane = h * s * outW
        for o in 0..<outChannels {
            let b0 = bias[o]
            for b in 0..<n {
                for yy in 0..<h {
                    for ky in 0..<s {
                        let out = y + (o * n + b) * outPlane + (yy * s + ky) * outW
                        let from = col + ((o * s + ky) * s) * pixels + (b * h + yy) * w   // tap kx at from + kx*pixels
                        if s == 2 && w >= 4 {
                            // out[2x + kx] = from[kx*pixels + x] + b0, eight at a time
                            var xx = 0
                            while true {
                                var v = interleave(load4(from + xx), load4(from + pixels + xx)) + b0
                                if activation == .relu { v.replace(with: 0, where: v .<= 0) }   // max(v, 0)
                                store8(out + 2 * xx, v)
                                if xx + 4 == w { break }
                                xx = min(xx + 4, w - 4)
                            }
                        } else {
                            for kx in 0..<s {
                                for xx in 0..<w { out[xx * s + kx] = from[kx * pixels + xx] + b0 }
                            }
                            if activation == .relu { ReLU.forward(out, count: outW) }
                        }
                        if activation == .sigmoid { Sigmoid.forward(out, count: outW) }
                    }
                }
            }
        }
    }

    /// Given dy [out, n, s*h, s*w], x and a workspace dcol, writes dW and db (overwriting) and
    /// dx [in, n, h, w]. With `reluOutput` (the forward's output y of a ReLU that follows this
    /// layer), dy is first taken through that ReLU's backward, dy *= (y > 0), in place during the
    /// gather, instead of in another pass.
    public func backward(dy: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>, dcol: UnsafeMutablePointer<Float>,
                         n: Int, h: Int, w: Int, reluOutput: UnsafePointer<Float>? = nil) {
        let pixels = n * h * w
        let s = stride, outW = w * s, outPlane = h * s * outW
        for o in 0..<outChannels {
            for b in 0..<n {
                for yy in 0..<h {
                    for ky in 0..<s {
                        let offset = (o * n + b) * outPlane + (yy * s + ky) * outW
                        let from = dy + offset
                        if let reluOutput { ReLU.backward(y: reluOutput + offset, grad: from, count: outW) }
                        let to = dcol + ((o * s + ky) * s) * pixels + (b * h + yy) * w   // tap kx at to + kx*pixels
                        if s == 2 && w >= 4 {
                            // to[kx*pixels + x] = from[2x + kx], four of each at a time
                            var xx = 0
                            while true {
                                let v = UnsafeRawPointer(from + 2 * xx).loadUnaligned(as: SIMD8<Float>.self)
                                UnsafeMutableRawPointer(to + xx).storeBytes(of: v.evenHalf, as: SIMD4<Float>.self)
                                UnsafeMutableRawPointer(to + pixels + xx).storeBytes(of: v.oddHalf, as: SIMD4<Float>.self)
                                if xx + 4 == w { break }
                                xx = min(xx + 4, w - 4)
                            }
                        } else {
                            for kx in 0..<s {
                                for xx in 0..<w { to[kx * pixels + xx] = from[xx * s + kx] }
                            }
                        }
                    }
                }
            }
        }
        gemm(transB: true, m: inChannels, n: taps, k: pixels, a: x, lda: pixels, b: dcol, ldb: pixels,
             beta: 0, c: gradWeight, ldc: taps)
        sumRows(dy, rows: outChannels, columns: n * outPlane, into: gradBias)
        gemm(m: inChannels, n: pixels, k: taps, a: weight, lda: taps, b: dcol, ldb: pixels,
             beta: 0, c: dx, ldc: pixels)
    }
}
