// Conv2d(inChannels, outChannels, kernel k, stride 1, padding p) as im2col + GEMM.
//
// Activations are stored channel-major over the batch, [C, N, H, W], so that one GEMM covers the
// whole batch and its result is already the next layer's input. With one channel (the network's
// input and output) this is the same memory as PyTorch's [N, C, H, W].
//
// Weight [out, in, k, k] (PyTorch's layout) is read as a matrix [out, in*k*k] whose column index
// c*k*k + ky*k + kx matches the rows of the im2col matrix.
//
//   forward:  col[in*k*k, N*H*W] = im2col(x[in, N, H, W])
//             y[out, N*H*W]      = W[out, in*k*k] . col + b
//   backward: dW[out, in*k*k]    = dy[out, N*H*W] . col^T
//             db[out]            = sum over N*H*W of dy
//             dcol[in*k*k, N*H*W] = W^T . dy ;  dx[in, N, H, W] = col2im(dcol)

public struct Conv2d {
    public let inChannels: Int
    public let outChannels: Int
    public let kernel: Int
    public let padding: Int
    let weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>
    let gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>

    /// Adds this layer's tensors to `layout` under `prefix` (e.g. "encoder.0") and returns the
    /// offsets; `bind` then makes the layer from the buffers.
    public static func register(_ layout: inout ParameterLayout, prefix: String,
                                inChannels: Int, outChannels: Int, kernel: Int) -> (weight: Int, bias: Int) {
        let fanIn = inChannels * kernel * kernel
        let w = layout.add("\(prefix).weight", shape: [outChannels, inChannels, kernel, kernel], fanIn: fanIn)
        let b = layout.add("\(prefix).bias", shape: [outChannels], fanIn: fanIn)
        return (w, b)
    }

    public init(inChannels: Int, outChannels: Int, kernel: Int, padding: Int,
                offsets: (weight: Int, bias: Int), params: FloatBuffer, grads: FloatBuffer) {
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.padding = padding
        weight = params.pointer + offsets.weight; bias = params.pointer + offsets.bias
        gradWeight = grads.pointer + offsets.weight; gradBias = grads.pointer + offsets.bias
    }

    var patch: Int { inChannels * kernel * kernel }

    /// x [in, n, h, w] -> y [out, n, h, w]; col is a workspace of patch * n*h*w floats.
    public func forward(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                        col: UnsafeMutablePointer<Float>, n: Int, h: Int, w: Int) {
        let pixels = n * h * w
        im2col(x, col, n: n, h: h, w: w)
        for o in 0..<outChannels {            // y = b, then y += W . col
            (y + o * pixels).update(repeating: bias[o], count: pixels)
        }
        gemm(m: outChannels, n: pixels, k: patch, a: weight, lda: patch, b: col, ldb: pixels,
             beta: 1, c: y, ldc: pixels)
    }

    /// Given dy [out, n, h, w] and the forward's col, writes dW and db (overwriting), and
    /// dx [in, n, h, w] when asked (the first layer needs no input gradient).
    public func backward(dy: UnsafePointer<Float>, col: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, dcol: UnsafeMutablePointer<Float>?,
                         n: Int, h: Int, w: Int) {
        let pixels = n * h * w
        gemm(transB: true, m: outChannels, n: patch, k: pixels, a: dy, lda: pixels, b: col, ldb: pixels,
             beta: 0, c: gradWeight, ldc: patch)
        sumRows(dy, rows: outChannels, columns: pixels, into: gradBias)
        if let dx, let dcol {
            gemm(transA: true, m: patch, n: pixels, k: outChannels, a: weight, lda: patch, b: dy, ldb: pixels,
                 beta: 0, c: dcol, ldc: pixels)
            col2im(dcol, dx, n: n, h: h, w: w)
        }
    }

    /// col[(c*k + ky)*k + kx, (b*h + y)*w + x] = x[c, b, y + ky - p, x + kx - p], or 0 outside.
    func im2col(_ src: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>, n: Int, h: Int, w: Int) {
        let pixels = n * h * w
        for c in 0..<inChannels {
            for ky in 0..<kernel {
                for kx in 0..<kernel {
                    let row = col + ((c * kernel + ky) * kernel + kx) * pixels
                    let dx = kx - padding
                    // Valid output columns x are those with 0 <= x + dx < w.
                    let x0 = max(0, -dx), x1 = min(w, w - dx)
                    for b in 0..<n {
                        let plane = src + (c * n + b) * h * w
                        for y in 0..<h {
                            let out = row + (b * h + y) * w
                            let sy = y + ky - padding
                            if sy < 0 || sy >= h || x1 <= x0 {
                                out.update(repeating: 0, count: w)
                                continue
                            }
                            if x0 > 0 { out.update(repeating: 0, count: x0) }
                            (out + x0).update(from: plane + sy * w + x0 + dx, count: x1 - x0)
                            if x1 < w { (out + x1).update(repeating: 0, count: w - x1) }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of im2col: dx[c, b, y + ky - p, x + kx - p] += dcol[(c*k + ky)*k + kx, (b*h + y)*w + x].
    func col2im(_ col: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, n: Int, h: Int, w: Int) {
        let pixels = n * h * w
        dst.update(repeating: 0, count: inChannels * pixels)
        for c in 0..<inChannels {
            for ky in 0..<kernel {
                for kx in 0..<kernel {
                    let row = col + ((c * kernel + ky) * kernel + kx) * pixels
                    let dx = kx - padding
                    let x0 = max(0, -dx), x1 = min(w, w - dx)
                    if x1 <= x0 { continue }
                    for b in 0..<n {
                        let plane = dst + (c * n + b) * h * w
                        for y in 0..<h {
                            let sy = y + ky - padding
                            if sy < 0 || sy >= h { continue }
                            let from = row + (b * h + y) * w
                            let to = plane + sy * w + dx
                            for x in x0..<x1 { to[x] += from[x] }
                        }
                    }
                }
            }
        }
    }
}

/// out[r] = sum of row r of a [rows, columns] matrix, accumulated in Double (bias gradients).
@inline(__always)
func sumRows(_ m: UnsafePointer<Float>, rows: Int, columns: Int, into out: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let row = m + r * columns
        var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
        var i = 0
        while i + 4 <= columns {
            s0 += Double(row[i]); s1 += Double(row[i + 1]); s2 += Double(row[i + 2]); s3 += Double(row[i + 3])
            i += 4
        }
        while i < columns { s0 += Double(row[i]); i += 1 }
        out[r] = Float((s0 + s1) + (s2 + s3))
    }
}
