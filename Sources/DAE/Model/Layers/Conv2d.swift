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
                    for b in 0..<n {
                        let plane = src + (c * n + b) * h * w
                        for y in 0..<h {
                            let sy = y + ky - padding
                            if sy < 0 || sy >= h {
                                fillZero(row + (b * h + y) * w, w)
                            } else {
                                shiftedCopy(row + (b * h + y) * w, plane + sy * w, w, shift: kx - padding)
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of im2col: dx[c, b, y + ky - p, x + kx - p] += dcol[(c*k + ky)*k + kx, (b*h + y)*w + x].
    /// Gathers each output value's k*k taps at once instead of k*k passes over dx after a
    /// zero-fill: every value starts at 0 and takes its taps in (ky, kx) order, as the passes did,
    /// so the bits are the same. Four values at a time where all of a row's taps exist (x from
    /// k-1-p to w-p, the last group overlapping the one before), one at a time at the edges.
    func col2im(_ col: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, n: Int, h: Int, w: Int) {
        let pixels = n * h * w, k = kernel, p = padding
        let inner0 = max(0, k - 1 - p), inner1 = min(w, w - p)      // x with every tap inside the row
        let vectorised = inner1 - inner0 >= 4
        for c in 0..<inChannels {
            let taps = col + c * k * k * pixels                          // tap t = ky*k + kx at taps + t*pixels
            for b in 0..<n {
                for sy in 0..<h {
                    let out = dst + ((c * n + b) * h + sy) * w
                    let ky0 = max(0, sy + p - h + 1), ky1 = min(k, sy + p + 1)   // rows y = sy - ky + p inside
                    // out[x] = sum over (ky, kx) of taps[ky*k + kx][(b*h + y)*w + x - (kx - p)]
                    @inline(__always) func value(_ x: Int) -> Float {
                        var acc: Float = 0
                        for ky in ky0..<ky1 {
                            let from = taps + ky * k * pixels + (b * h + sy - ky + p) * w + x + p
                            for kx in 0..<k where x - kx + p >= 0 && x - kx + p < w {
                                acc += from[kx * pixels - kx]
                            }
                        }
                        return acc
                    }
                    if !vectorised {
                        for x in 0..<w { out[x] = value(x) }
                        continue
                    }
                    for x in 0..<inner0 { out[x] = value(x) }
                    for x in inner1..<w { out[x] = value(x) }
                    var x = inner0
                    while true {
                        var acc = SIMD4<Float>(repeating: 0)
                        for ky in ky0..<ky1 {
                            let from = taps + ky * k * pixels + (b * h + sy - ky + p) * w + x + p
                            for kx in 0..<k { acc += load4(from + kx * pixels - kx) }
                        }
                        UnsafeMutableRawPointer(out + x).storeBytes(of: acc, as: SIMD4<Float>.self)
                        if x + 4 == inner1 { break }
                        x = min(x + 4, inner1 - 4)
                    }
                }
            }
        }
    }
}

/// out[0..<count] = 0, inline (a call to memset costs more than these short rows).
@inline(__always) func fillZero(_ out: UnsafeMutablePointer<Float>, _ count: Int) {
    var x = 0
    while x + 4 <= count { UnsafeMutableRawPointer(out + x).storeBytes(of: SIMD4<Float>(), as: SIMD4<Float>.self); x += 4 }
    while x < count { out[x] = 0; x += 1 }
}

/// out[x] = from[x + shift] where 0 <= x + shift < count, else 0; four at a time where possible
/// (the last group overlapping the one before), inline instead of memmove/memset calls.
@inline(__always) func shiftedCopy(_ out: UnsafeMutablePointer<Float>, _ from: UnsafePointer<Float>, _ count: Int, shift: Int) {
    let x0 = max(0, -shift), x1 = min(count, count - shift)
    if x1 - x0 < 4 {
        for x in 0..<count { out[x] = x >= x0 && x < x1 ? from[x + shift] : 0 }
        return
    }
    for x in 0..<x0 { out[x] = 0 }
    for x in x1..<count { out[x] = 0 }
    var x = x0
    while true {
        UnsafeMutableRawPointer(out + x).storeBytes(of: load4(from + x + shift), as: SIMD4<Float>.self)
        if x + 4 == x1 { break }
        x = min(x + 4, x1 - 4)
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
