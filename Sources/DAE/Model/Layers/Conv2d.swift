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
//
// With `winograd` set (3x3, padding 1, even sides), y, dW and dx come from Winograd F(2x2, 3x3)
// instead (Winograd.swift), and `col` is its workspace; db is the same sum. Which layers use it is
// fixed in the model, by measurement (`dae-dist bench --what conv`).

public struct Conv2d {
    public let inChannels: Int
    public let outChannels: Int
    public let kernel: Int
    public let padding: Int
    /// Output, weight gradient and input gradient by Winograd F(2x2, 3x3) (kernel 3, padding 1 only).
    public let winograd: Bool
    let weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>
    let gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>

    /// Adds this layer's tensors to `layout` under `prefix` (e.g. "encoder.0") and returns the
    /// offsets; `init(..., offsets:params:grads:)` then makes the layer as views of the buffers.
    public static func register(_ layout: inout ParameterLayout, prefix: String,
                                inChannels: Int, outChannels: Int, kernel: Int) -> (weight: Int, bias: Int) {
        let fanIn = inChannels * kernel * kernel
        let w = layout.add("\(prefix).weight", shape: [outChannels, inChannels, kernel, kernel], fanIn: fanIn)
        let b = layout.add("\(prefix).bias", shape: [outChannels], fanIn: fanIn)
        return (w, b)
    }

    public init(inChannels: Int, outChannels: Int, kernel: Int, padding: Int, winograd: Bool = false,
                offsets: (weight: Int, bias: Int), params: FloatBuffer, grads: FloatBuffer) {
        precondition(!winograd || (kernel == 3 && padding == 1), "Winograd F(2x2, 3x3) is for 3x3 kernels with padding 1")
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.padding = padding; self.winograd = winograd
        weight = params.pointer + offsets.weight; bias = params.pointer + offsets.bias
        gradWeight = grads.pointer + offsets.weight; gradBias = grads.pointer + offsets.bias
    }

    var patch: Int { inChannels * kernel * kernel }

    /// The values of `col` (the workspace forward fills and backward reads) for n images of h x w:
    /// the im2col matrix, patch * n*h*w, or Winograd's.
    public func workspaceSize(n: Int, h: Int, w: Int) -> Int {
        Self.workspaceSize(inChannels: inChannels, outChannels: outChannels, kernel: kernel, winograd: winograd, n: n, h: h, w: w)
    }

    /// workspaceSize(n:h:w:) of a layer of this shape, before it is bound to the buffers.
    public static func workspaceSize(inChannels: Int, outChannels: Int, kernel: Int, winograd: Bool, n: Int, h: Int, w: Int) -> Int {
        winograd ? Winograd.Workspace.size(inChannels: inChannels, outChannels: outChannels, pixels: n * h * w, width: w)
                 : inChannels * kernel * kernel * n * h * w
    }

    /// x [in, n, h, w] -> y [out, n, h, w]; col is a workspace of workspaceSize(n:h:w:) floats.
    public func forward(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                        col: UnsafeMutablePointer<Float>, n: Int, h: Int, w: Int) {
        let pixels = n * h * w
        if winograd {
            precondition(h % 2 == 0 && w % 2 == 0, "Winograd F(2x2, 3x3) needs even sides")
            Winograd.forward(x: x, y: y, weight: weight, bias: bias, inChannels: inChannels, outChannels: outChannels,
                             workspace: col, n: n, h: h, w: w)
            return
        }
        im2col(x, col, n: n, h: h, w: w)
        for o in 0..<outChannels {            // y = b, then y += W . col
            (y + o * pixels).update(repeating: bias[o], count: pixels)
        }
        gemm(m: outChannels, n: pixels, k: patch, a: weight, lda: patch, b: col, ldb: pixels,
             beta: 1, c: y, ldc: pixels)
    }

    /// Given dy [out, n, h, w] and the forward's col, writes dW and db (overwriting), and
    /// dx [in, n, h, w] when asked (the first layer needs no input gradient).
    /// With `winograd`, dcol is not used (col, the forward's workspace, has room for everything).
    public func backward(dy: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, dcol: UnsafeMutablePointer<Float>?,
                         n: Int, h: Int, w: Int) {
        let pixels = n * h * w
        sumRows(dy, rows: outChannels, columns: pixels, into: gradBias)
        if winograd {
            Winograd.backward(dy: dy, dx: dx, gradWeight: gradWeight, inChannels: inChannels, outChannels: outChannels,
                              workspace: col, n: n, h: h, w: w)
            return
        }
        gemm(transB: true, m: outChannels, n: patch, k: pixels, a: dy, lda: pixels, b: col, ldb: pixels,
             beta: 0, c: gradWeight, ldc: patch)
        if let dx, let dcol {
            gemm(transA: true, m: patch, n: pixels, k: outChannels, a: weight, lda: patch, b: dy, ldb: pixels,
                 beta: 0, c: dcol, ldc: pixels)
            col2im(dcol, dx, n: n, h: h, w: w)
        }
    }

    /// col[(c*k + ky)*k + kx, (b*h + y)*w + x] = x[c, b, y + ky - p, x + kx - p], or 0 outside.
    ///
    /// With the plane flattened, tap (ky, kx) is the plane shifted by d = (ky-p)*w + (kx-p): one
    /// long copy per tap and image, after which the rows whose source row is outside the plane,
    /// and the columns whose source column wrapped into the next or previous row, are set to 0.
    /// Three times faster than copying 14-float rows one by one (conv2's 288 x 980 patches per
    /// micro-batch: 76 against 245 us, measured in isolation), with the same result.
    func im2col(_ src: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>, n: Int, h: Int, w: Int) {
        let pixels = n * h * w, plane = h * w
        for c in 0..<inChannels {
            for ky in 0..<kernel {
                let dy = ky - padding
                let y0 = max(0, -dy), y1 = min(h, h - dy)          // output rows whose source row exists
                for kx in 0..<kernel {
                    let dx = kx - padding, d = dy * w + dx
                    let row = col + ((c * kernel + ky) * kernel + kx) * pixels
                    for b in 0..<n {
                        let from = src + (c * n + b) * plane, out = row + b * plane
                        if y1 <= y0 { fillZero(out, plane); continue }
                        // out[q] = from[q + d] over the valid rows, keeping q + d inside the plane (the
                        // positions left out are wrapped columns, zeroed below)
                        let q0 = min(plane, max(y0 * w, -d)), q1 = max(q0, min(y1 * w, plane - d))
                        fillZero(out, q0)
                        (out + q0).update(from: from + q0 + d, count: q1 - q0)
                        fillZero(out + q1, plane - q1)
                        zeroWrappedColumns(out, rows: y0..<y1, w: w, shift: dx)
                    }
                }
            }
        }
    }

    /// The adjoint of im2col: dx[c, b, y + ky - p, x + kx - p] += dcol[(c*k + ky)*k + kx, (b*h + y)*w + x].
    ///
    /// Per image plane: the output starts at 0 and adds each tap's plane shifted by -d in (ky, kx)
    /// order, as long vectors over the flattened plane. The tap values whose output column is
    /// outside the image would land in the next or previous row, so they are set to 0 first (dcol
    /// is a workspace: this clobbers it). Adding those zeros changes nothing (a sum that starts at
    /// +0 is never -0), so the result is bitwise that of adding only the taps inside, row by row.
    func col2im(_ col: UnsafeMutablePointer<Float>, _ dst: UnsafeMutablePointer<Float>, n: Int, h: Int, w: Int) {
        let pixels = n * h * w, plane = h * w
        for c in 0..<inChannels {
            for b in 0..<n {
                let out = dst + (c * n + b) * plane
                fillZero(out, plane)
                for ky in 0..<kernel {
                    let dy = ky - padding
                    let y0 = max(0, -dy), y1 = min(h, h - dy)      // dcol rows whose output row exists
                    if y1 <= y0 { continue }
                    for kx in 0..<kernel {
                        let dx = kx - padding, d = dy * w + dx
                        let from = col + ((c * kernel + ky) * kernel + kx) * pixels + b * plane
                        zeroWrappedColumns(from, rows: y0..<y1, w: w, shift: dx)
                        // out[q + d] += from[q] over those rows, keeping q + d inside the plane
                        let q0 = max(y0 * w, -d), q1 = min(y1 * w, plane - d)
                        if q1 <= q0 { continue }
                        let to = out + d
                        for q in q0..<q1 { to[q] += from[q] }
                    }
                }
            }
        }
    }
}

/// In rows `rows` of a w-wide plane, sets to 0 the columns x whose x + shift is outside [0, w).
@inline(__always) func zeroWrappedColumns(_ plane: UnsafeMutablePointer<Float>, rows: Range<Int>, w: Int, shift: Int) {
    if shift == 0 { return }
    let x0 = shift < 0 ? 0 : max(0, w - shift), x1 = shift < 0 ? min(w, -shift) : w
    for y in rows {
        for x in x0..<x1 { plane[y * w + x] = 0 }
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
