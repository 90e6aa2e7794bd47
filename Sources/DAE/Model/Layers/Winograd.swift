// Winograd F(2x2, 3x3): a 3x3 convolution with padding 1 and stride 1 on images of even height
// and width, computed 2x2 output pixels at a time with 16 multiplies per input-output channel pair
// instead of 36 (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
//
// For a 4x4 input tile d (rows and columns 2t-1 ... 2t+2 of the zero-padded image), a 3x3 kernel g
// and the 2x2 output tile Y:
//
//   U = G g G^T,  V = B^T d B,  Y = A^T (sum over input channels of U . V) A   (. elementwise)
//
//   G = | 1    0    0  |   B^T = | 1  0 -1  0 |   A^T = | 1  1  1  0 |
//       | 1/2  1/2  1/2|         | 0  1  1  0 |         | 0  1 -1 -1 |
//       | 1/2 -1/2  1/2|         | 0 -1  1  0 |
//       | 0    0    1  |         | 0  1  0 -1 |
//
// The sum over channels is, for each of the 16 positions xi of the 4x4 tile, one GEMM over all
// tiles of the batch (T = n * h/2 * w/2 tiles, t = (b * h/2 + ty) * w/2 + tx):
//
//   forward:         M[xi][out, T] = U[xi][out, in] . V[xi][in, T];        y = A^T M A + b
//   input gradient:  the same convolution of dy with every kernel turned by 180 degrees and the
//                    channel axes swapped. Turning g turns U the same way (G J = P G, where J
//                    reverses 3 rows and P swaps the first and last of 4), so it reads the
//                    forward's U:  Mx[xi][in, T] = U[P xi P]^T . (B^T dy B)[xi][out, T];  dx = A^T Mx A
//   weight gradient: Y = A^T Q A and U = G g G^T give dQ = A dY A^T and dg = G^T dU G, so
//                    Z[xi][out, in] = (A dy A^T)[xi][out, T] . V[xi][in, T]^T;  dW = G^T Z G
//
// Everything outside the GEMMs is adds, subtracts and halvings (exact), vectorised over 8 tiles.
// The rounding differs from the direct sums (im2col + GEMM): Tests/DAETests compare the paths
// with each other and with PyTorch's reference to a stated tolerance.

import CKernels

enum Winograd {
    /// The transforms run in AVX-512 (Sources/CKernels/winograd.c) where the CPU has it, else in
    /// Swift; both give the same bits.
    static let avx512 = dae_winograd_avx512_built() != 0
        && BLASCore.cpuFlags().isSuperset(of: ["avx512f", "avx512dq", "avx512vl", "avx512bw"])

    /// The workspace of one layer on `pixels` = n*h*w values per channel (16 * T = 4 * pixels),
    /// carved from one allocation of `size(...)` floats. U and V are written by the forward and
    /// read by the backward; the others are scratch.
    struct Workspace {
        let u: UnsafeMutablePointer<Float>      // [16][out][in]  transformed weights
        let v: UnsafeMutablePointer<Float>      // [16][in][T]    transformed input tiles
        let m: UnsafeMutablePointer<Float>      // [16][out][T]   forward products; backward: A dy A^T, then B^T dy B
        let mx: UnsafeMutablePointer<Float>     // [16][in][T]    input-gradient products
        let z: UnsafeMutablePointer<Float>      // [16][out][in]  weight-gradient products
        let rows: UnsafeMutablePointer<Float>   // 4 rows of w + 18 (the Swift input transform's padded rows)

        static func size(inChannels: Int, outChannels: Int, pixels: Int, width: Int) -> Int {
            32 * inChannels * outChannels + 4 * (2 * inChannels + outChannels) * pixels + 4 * (width + 18)
        }

        init(_ base: UnsafeMutablePointer<Float>, inChannels: Int, outChannels: Int, pixels: Int) {
            u = base; v = u + 16 * outChannels * inChannels
            m = v + 4 * inChannels * pixels; mx = m + 4 * outChannels * pixels
            z = mx + 4 * inChannels * pixels; rows = z + 16 * outChannels * inChannels
        }
    }

    /// y [out, n, h, w] = conv3x3(x [in, n, h, w], weight [out, in, 3, 3], padding 1) + bias;
    /// leaves U and V in the workspace for `backward`.
    static func forward(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                        inChannels: Int, outChannels: Int, workspace: UnsafeMutablePointer<Float>, n: Int, h: Int, w: Int) {
        let tiles = n * h * w / 4
        let ws = Workspace(workspace, inChannels: inChannels, outChannels: outChannels, pixels: n * h * w)
        transformWeights(weight, pairs: outChannels * inChannels, into: ws.u)
        transformInput(x, channels: inChannels, n: n, h: h, w: w, into: ws.v, rows: ws.rows)
        for xi in 0..<16 {
            gemm(m: outChannels, n: tiles, k: inChannels, a: ws.u + xi * outChannels * inChannels, lda: inChannels,
                 b: ws.v + xi * inChannels * tiles, ldb: tiles, c: ws.m + xi * outChannels * tiles, ldc: tiles)
        }
        transformOutput(ws.m, channels: outChannels, n: n, h: h, w: w, bias: bias, into: y)
    }

    /// dW [out, in, 3, 3] (overwritten) and, when asked, dx [in, n, h, w] for dy [out, n, h, w],
    /// from the U and V the last forward left in the workspace.
    static func backward(dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, gradWeight: UnsafeMutablePointer<Float>,
                         inChannels: Int, outChannels: Int, workspace: UnsafeMutablePointer<Float>, n: Int, h: Int, w: Int) {
        let tiles = n * h * w / 4
        let ws = Workspace(workspace, inChannels: inChannels, outChannels: outChannels, pixels: n * h * w)
        transformOutputGradient(dy, channels: outChannels, n: n, h: h, w: w, into: ws.m)
        for xi in 0..<16 {      // Z[xi][out, in] = (A dy A^T)[xi][out, T] . V[xi][in, T]^T
            gemm(transB: true, m: outChannels, n: inChannels, k: tiles, a: ws.m + xi * outChannels * tiles, lda: tiles,
                 b: ws.v + xi * inChannels * tiles, ldb: tiles, c: ws.z + xi * outChannels * inChannels, ldc: inChannels)
        }
        gradientOfWeights(ws.z, pairs: outChannels * inChannels, into: gradWeight)
        guard let dx else { return }
        transformInput(dy, channels: outChannels, n: n, h: h, w: w, into: ws.m, rows: ws.rows)
        for xi in 0..<16 {      // Mx[xi][in, T] = U[P xi P][out, in]^T . (B^T dy B)[xi][out, T]
            let turned = flip[xi / 4] * 4 + flip[xi % 4]
            gemm(transA: true, m: inChannels, n: tiles, k: outChannels, a: ws.u + turned * outChannels * inChannels, lda: inChannels,
                 b: ws.m + xi * outChannels * tiles, ldb: tiles, c: ws.mx + xi * inChannels * tiles, ldc: tiles)
        }
        transformOutput(ws.mx, channels: inChannels, n: n, h: h, w: w, bias: nil, into: dx)
    }

    /// P: the first and last of the 4 tile positions swapped (a kernel turned by 180 degrees).
    static let flip = [3, 1, 2, 0]

    /// u[xi][p] = (G g_p G^T)[xi] for the 3x3 kernels g_p = w[9p ..< 9p+9], p < pairs; 8 pairs at
    /// a time (each of the 16 rows of u is written 8 values at once: they are `pairs` apart).
    static func transformWeights(_ w: UnsafePointer<Float>, pairs: Int, into u: UnsafeMutablePointer<Float>) {
        var p = 0
        while p < pairs {
            let count = min(8, pairs - p)
            @inline(__always) func g(_ k: Int) -> SIMD8<Float> {
                var v = SIMD8<Float>()
                for j in 0..<count { v[j] = w[9 * (p + j) + k] }
                return v
            }
            let g0 = g(0), g1 = g(1), g2 = g(2), g3 = g(3), g4 = g(4), g5 = g(5), g6 = g(6), g7 = g(7), g8 = g(8)
            // G g: rows 0 and 3 are g's first and last; rows 1 and 2 half the sum and alternating sum
            // of g's rows; then each row r times G^T: (r0, (r0 + r1 + r2)/2, (r0 - r1 + r2)/2, r2)
            @inline(__always) func row(_ i: Int, _ r0: SIMD8<Float>, _ r1: SIMD8<Float>, _ r2: SIMD8<Float>) {
                store(r0, u + (4 * i) * pairs + p, count)
                store(0.5 * (r0 + r1 + r2), u + (4 * i + 1) * pairs + p, count)
                store(0.5 * (r0 - r1 + r2), u + (4 * i + 2) * pairs + p, count)
                store(r2, u + (4 * i + 3) * pairs + p, count)
            }
            row(0, g0, g1, g2)
            row(1, 0.5 * (g0 + g3 + g6), 0.5 * (g1 + g4 + g7), 0.5 * (g2 + g5 + g8))
            row(2, 0.5 * (g0 - g3 + g6), 0.5 * (g1 - g4 + g7), 0.5 * (g2 - g5 + g8))
            row(3, g6, g7, g8)
            p += 8
        }
    }

    /// dW[9p ..< 9p+9] = G^T z_p G for z_p = z[xi][p] (the adjoint of transformWeights), 8 pairs at a time.
    static func gradientOfWeights(_ z: UnsafePointer<Float>, pairs: Int, into dw: UnsafeMutablePointer<Float>) {
        let end = z + 16 * pairs
        var p = 0
        while p < pairs {
            @inline(__always) func at(_ xi: Int) -> SIMD8<Float> { load8(z + xi * pairs + p, available: end - (z + xi * pairs + p)) }
            // G^T Z, per column j: (z0j + (z1j + z2j)/2, (z1j - z2j)/2, (z1j + z2j)/2 + z3j)
            let h0 = 0.5 * (at(4) + at(8)), h1 = 0.5 * (at(5) + at(9)), h2 = 0.5 * (at(6) + at(10)), h3 = 0.5 * (at(7) + at(11))
            let count = min(8, pairs - p)
            // each row r of G^T Z times G: (r0 + (r1 + r2)/2, (r1 - r2)/2, (r1 + r2)/2 + r3)
            @inline(__always) func put(_ i: Int, _ r0: SIMD8<Float>, _ r1: SIMD8<Float>, _ r2: SIMD8<Float>, _ r3: SIMD8<Float>) {
                let s = 0.5 * (r1 + r2), d = 0.5 * (r1 - r2), a = r0 + s, c = s + r3
                for j in 0..<count {
                    let out = dw + 9 * (p + j) + 3 * i
                    out[0] = a[j]; out[1] = d[j]; out[2] = c[j]
                }
            }
            put(0, at(0) + h0, at(1) + h1, at(2) + h2, at(3) + h3)
            put(1, 0.5 * (at(4) - at(8)), 0.5 * (at(5) - at(9)), 0.5 * (at(6) - at(10)), 0.5 * (at(7) - at(11)))
            put(2, h0 + at(12), h1 + at(13), h2 + at(14), h3 + at(15))
            p += 8
        }
    }

    /// v[xi][c][t] = (B^T d B)[xi] for every 4x4 tile d of x [channels, n, h, w], padded by 1.
    static func transformInput(_ x: UnsafePointer<Float>, channels: Int, n: Int, h: Int, w: Int,
                               into v: UnsafeMutablePointer<Float>, rows: UnsafeMutablePointer<Float>, vectorised: Bool = avx512) {
        if vectorised { dae_winograd_input_avx512(x, Int64(channels), Int64(n), Int64(h), Int64(w), v); return }
        let th = h / 2, tw = w / 2, tiles = n * th * tw, stride = channels * tiles
        // four rows, s[k + 1] = column k, zero at 0 and from w + 1 on (read 16 wide past the end)
        let width = w + 18
        rows.update(repeating: 0, count: 4 * width)
        let s0 = rows, s1 = s0 + width, s2 = s1 + width, s3 = s2 + width
        for c in 0..<channels {
            for b in 0..<n {
                let plane = x + (c * n + b) * h * w
                for ty in 0..<th {
                    // input rows r0 ... r3 = 2ty-1 ... 2ty+2 (r0, r3 are zero outside);
                    // B^T along y: s0 = r0 - r2, s1 = r1 + r2, s2 = r2 - r1, s3 = r1 - r3
                    let r1 = plane + (2 * ty) * w, r2 = r1 + w
                    // (outside the image, r0 and r3 are rows of zeros: 0 - r2 and r1 - 0, as the
                    // AVX-512 version computes them, down to the sign of a zero)
                    if ty == 0 {
                        for k in 0..<w { s0[k + 1] = 0 - r2[k] }
                    } else {
                        let r0 = r1 - w
                        for k in 0..<w { s0[k + 1] = r0[k] - r2[k] }
                    }
                    for k in 0..<w { s1[k + 1] = r1[k] + r2[k]; s2[k + 1] = r2[k] - r1[k] }
                    if ty == th - 1 {
                        for k in 0..<w { s3[k + 1] = r1[k] - 0 }
                    } else {
                        let r3 = r2 + w
                        for k in 0..<w { s3[k + 1] = r1[k] - r3[k] }
                    }
                    // B along x: tile tx's columns are s[2tx ... 2tx+3] (e0 o0 e1 o1 below)
                    let t0 = (b * th + ty) * tw
                    for row in 0..<4 {
                        let s = rows + row * width
                        let out = v + (4 * row) * stride + c * tiles + t0
                        var tx = 0
                        while tx < tw {
                            let lo = load16(s + 2 * tx), hi = load16(s + 2 * tx + 2)
                            let e0 = lo.evenHalf, o0 = lo.oddHalf, e1 = hi.evenHalf, o1 = hi.oddHalf
                            let count = lanes(8, valid: tw - tx, at: c * tiles + t0 + tx, end: stride)
                            store(e0 - e1, out + tx, count)
                            store(o0 + e1, out + stride + tx, count)
                            store(e1 - o0, out + 2 * stride + tx, count)
                            store(o0 - o1, out + 3 * stride + tx, count)
                            tx += 8
                        }
                    }
                }
            }
        }
    }

    /// q[xi][k][t] = (A dY A^T)[xi] for every 2x2 tile dY of dy [channels, n, h, w] (the adjoint
    /// of transformOutput, without the bias).
    static func transformOutputGradient(_ dy: UnsafePointer<Float>, channels: Int, n: Int, h: Int, w: Int,
                                        into q: UnsafeMutablePointer<Float>, vectorised: Bool = avx512) {
        if vectorised { dae_winograd_output_gradient_avx512(dy, Int64(channels), Int64(n), Int64(h), Int64(w), q); return }
        let th = h / 2, tw = w / 2, tiles = n * th * tw, stride = channels * tiles
        let end = dy + channels * n * h * w
        for k in 0..<channels {
            for b in 0..<n {
                let plane = dy + (k * n + b) * h * w
                for ty in 0..<th {
                    let top = plane + 2 * ty * w, bottom = top + w
                    let out = q + k * tiles + (b * th + ty) * tw
                    var tx = 0
                    while tx < tw {
                        // dY = [[a, b], [c, d]] for 8 tiles
                        let t = load16(top + 2 * tx, available: end - (top + 2 * tx))
                        let u = load16(bottom + 2 * tx, available: end - (bottom + 2 * tx))
                        let a = t.evenHalf, bb = t.oddHalf, c = u.evenHalf, d = u.oddHalf
                        // A dY: rows (a, b), (a+c, b+d), (a-c, b-d), (0-c, 0-d); each row (p, r) times
                        // A^T: (p, p+r, p-r, 0-r)
                        let count = lanes(8, valid: tw - tx, at: k * tiles + (b * th + ty) * tw + tx, end: stride)
                        @inline(__always) func put(_ row: Int, _ p: SIMD8<Float>, _ r: SIMD8<Float>) {
                            let o = out + 4 * row * stride + tx
                            store(p, o, count); store(p + r, o + stride, count)
                            store(p - r, o + 2 * stride, count); store(0 - r, o + 3 * stride, count)
                        }
                        put(0, a, bb); put(1, a + c, bb + d); put(2, a - c, bb - d); put(3, 0 - c, 0 - d)
                        tx += 8
                    }
                }
            }
        }
    }

    /// y[k, n, h, w] = (A^T m A) for each tile, plus bias[k] when given, for m [16][k][T].
    static func transformOutput(_ m: UnsafePointer<Float>, channels: Int, n: Int, h: Int, w: Int,
                                bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>, vectorised: Bool = avx512) {
        if vectorised { dae_winograd_output_avx512(m, Int64(channels), Int64(n), Int64(h), Int64(w), bias, y); return }
        let th = h / 2, tw = w / 2, tiles = n * th * tw, stride = channels * tiles
        let end = m + 16 * stride
        for k in 0..<channels {
            let offset = SIMD8<Float>(repeating: bias?[k] ?? 0)
            for b in 0..<n {
                let plane = y + (k * n + b) * h * w
                for ty in 0..<th {
                    let src = m + k * tiles + (b * th + ty) * tw
                    let top = plane + 2 * ty * w, bottom = top + w
                    var tx = 0
                    while tx < tw {
                        @inline(__always) func at(_ xi: Int) -> SIMD8<Float> {
                            let p = src + xi * stride + tx
                            return load8(p, available: end - p)
                        }
                        // A^T along the rows: (m0j + m1j + m2j, m1j - m2j - m3j), then along the columns
                        let u0 = at(0) + at(4) + at(8), u1 = at(1) + at(5) + at(9)
                        let u2 = at(2) + at(6) + at(10), u3 = at(3) + at(7) + at(11)
                        let l0 = at(4) - at(8) - at(12), l1 = at(5) - at(9) - at(13)
                        let l2 = at(6) - at(10) - at(14), l3 = at(7) - at(11) - at(15)
                        // a spill past the top row lands on the bottom row, written next, only
                        // when one vector covers the row (tw <= 8); else the tail is exact
                        let valid = 2 * min(8, tw - tx), size = tw <= 8 ? channels * n * h * w : 0
                        store(interleave8(offset + (u0 + u1 + u2), offset + (u1 - u2 - u3)), top + 2 * tx,
                              lanes(16, valid: valid, at: top + 2 * tx - y, end: size))
                        store(interleave8(offset + (l0 + l1 + l2), offset + (l1 - l2 - l3)), bottom + 2 * tx,
                              lanes(16, valid: valid, at: bottom + 2 * tx - y, end: size))
                        tx += 8
                    }
                }
            }
        }
    }
}

// The Swift transforms' stores (SIMD.swift's `store`, `load8`, `load16`): the transforms walk their outputs in increasing order, so a full-width store whose last lanes
// run past a row of tiles lands on values written later: it may, as long as it stays inside the
// array (`lanes`), which saves the element-by-element tail on every row of 7 tiles.

/// How many lanes of a `width`-wide store at index `at` to write: all of them if they stay below
/// `end`, else the `valid` ones.
@inline(__always) func lanes(_ width: Int, valid: Int, at: Int, end: Int) -> Int {
    at + width <= end ? width : valid
}
