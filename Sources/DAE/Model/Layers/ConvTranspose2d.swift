// ConvTranspose2d(inChannels, outChannels, kernel s, stride s), padding 0: the decoder's 2x
// upsampling. With kernel == stride the output windows do not overlap, so the layer is one GEMM
// followed by a scatter (and its backward a gather followed by GEMMs): no col2im sums needed.
//
// Weight [in, out, s, s] (PyTorch's layout for transposed convolutions) is read as a matrix
// [in, out*s*s] whose column index is o*s*s + ky*s + kx.
//
//   forward:  col[out*s*s, N*H*W]  = W^T . x[in, N*H*W]
//             y[o, b, s*y+ky, s*x+kx] = col[o*s*s + ky*s + kx, (b*H + y)*W + x] + bias[o]
//             (y is [out, N, s*H, s*W])
//   backward: dcol = gather(dy) (the inverse of the scatter)
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

    /// x [in, n, h, w] -> y [out, n, s*h, s*w]; col is a workspace of out*s*s * n*h*w floats.
    public func forward(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                        col: UnsafeMutablePointer<Float>, n: Int, h: Int, w: Int) {
        let pixels = n * h * w
        gemm(transA: true, m: taps, n: pixels, k: inChannels, a: weight, lda: taps, b: x, ldb: pixels,
             beta: 0, c: col, ldc: pixels)
        let s = stride, outW = w * s, outPlane = h * s * outW
        for o in 0..<outChannels {
            let b0 = bias[o]
            for ky in 0..<s {
                for kx in 0..<s {
                    let row = col + ((o * s + ky) * s + kx) * pixels
                    for b in 0..<n {
                        let plane = y + (o * n + b) * outPlane
                        for yy in 0..<h {
                            let from = row + (b * h + yy) * w
                            let to = plane + (yy * s + ky) * outW + kx
                            for xx in 0..<w { to[xx * s] = from[xx] + b0 }
                        }
                    }
                }
            }
        }
    }

    /// Given dy [out, n, s*h, s*w], x and a workspace dcol, writes dW and db (overwriting) and
    /// dx [in, n, h, w].
    public func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>, dcol: UnsafeMutablePointer<Float>,
                         n: Int, h: Int, w: Int) {
        let pixels = n * h * w
        let s = stride, outW = w * s, outPlane = h * s * outW
        for o in 0..<outChannels {
            for ky in 0..<s {
                for kx in 0..<s {
                    let row = dcol + ((o * s + ky) * s + kx) * pixels
                    for b in 0..<n {
                        let plane = dy + (o * n + b) * outPlane
                        for yy in 0..<h {
                            let to = row + (b * h + yy) * w
                            let from = plane + (yy * s + ky) * outW + kx
                            for xx in 0..<w { to[xx] = from[xx * s] }
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
