// ReLU followed by MaxPool2d(kernel 2, stride 2), fused into one pass each way.
//
// The encoder's ReLU -> MaxPool2d pairs are computed as MaxPool2d -> ReLU: max commutes with the
// (monotone) ReLU, so the outputs are the same, and the ReLU then touches a quarter of the values.
// In the backward pass, the gradient reaches the window's maximum only where the pooled output is
// above 0, which is where PyTorch's ReLU backward (dx = dy * (y > 0)) lets it through; elsewhere
// every input of the window gets 0, as in PyTorch. (Where a window's maximum is <= 0, PyTorch's
// argmax after the ReLU may be another position of the all-zero window, but its gradient is 0
// there too.) This removes the full-size ReLU passes and the zero-fill of dx: the backward pass
// writes all four values of every window once.
//
// Ties go to the first maximum in scan order (row by row), as in PyTorch; a NaN wins and stays.
//
//   forward:  y[p, i, j] = max(0, max over the 2x2 window of x[p, 2i.., 2j..]), p over C*N planes
//             where[p, i, j] = which input of the window held the maximum: 0 top-left, 1 top-right,
//                              2 bottom-left, 3 bottom-right
//   backward: dx[p, window (i, j)] = (dy[p, i, j] if y[p, i, j] > 0, else 0) at `where`, 0 elsewhere
//
// Both passes work on four windows at a time with SIMD4 lanes (eight floats of each input row);
// a row's last group overlaps the one before it when the width is not a multiple of four windows,
// which is harmless because a window's results do not depend on its neighbours.

public struct ReLUMaxPool2d {
    public init() {}

    /// x [planes, h, w] -> y [planes, h/2, w/2] and `where` of the same size (h and w even).
    public func forward(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, where positions: UnsafeMutablePointer<Int32>,
                        planes: Int, h: Int, w: Int) {
        precondition(h % 2 == 0 && w % 2 == 0, "ReLUMaxPool2d needs even sides, got \(h)x\(w)")
        let oh = h / 2, ow = w / 2
        for row in 0..<planes * oh {                 // output rows of all planes, in order
            let top = x + (row / oh) * h * w + (row % oh) * 2 * w, bottom = top + w
            let out = y + row * ow, at = positions + row * ow
            if ow < 4 {
                for j in 0..<ow { Self.window(top + 2 * j, bottom + 2 * j, out + j, at + j) }
                continue
            }
            var j = 0
            while true {
                Self.fourWindows(top + 2 * j, bottom + 2 * j, out + j, at + j)
                if j + 4 == ow { break }
                j = min(j + 4, ow - 4)
            }
        }
    }

    /// dy, y [planes, h/2, w/2] (y and `where` from the forward pass) -> dx [planes, h, w]
    public func backward(dy: UnsafePointer<Float>, y: UnsafePointer<Float>, where positions: UnsafePointer<Int32>,
                         dx: UnsafeMutablePointer<Float>, planes: Int, h: Int, w: Int) {
        precondition(h % 2 == 0 && w % 2 == 0, "ReLUMaxPool2d needs even sides, got \(h)x\(w)")  // dx is written window by window
        let oh = h / 2, ow = w / 2
        for row in 0..<planes * oh {
            let top = dx + (row / oh) * h * w + (row % oh) * 2 * w, bottom = top + w
            let g = dy + row * ow, out = y + row * ow, at = positions + row * ow
            if ow < 4 {
                for j in 0..<ow {
                    let v = out[j] > 0 ? g[j] : 0, k = at[j]
                    top[2 * j] = k == 0 ? v : 0; top[2 * j + 1] = k == 1 ? v : 0
                    bottom[2 * j] = k == 2 ? v : 0; bottom[2 * j + 1] = k == 3 ? v : 0
                }
                continue
            }
            var j = 0
            while true {
                let v4 = load4(g + j).replacing(with: 0, where: .!(load4(out + j) .> 0))
                let k = UnsafeRawPointer(at + j).loadUnaligned(as: SIMD4<Int32>.self)
                store8(top + 2 * j, interleave(v4.replacing(with: 0, where: k .!= 0), v4.replacing(with: 0, where: k .!= 1)))
                store8(bottom + 2 * j, interleave(v4.replacing(with: 0, where: k .!= 2), v4.replacing(with: 0, where: k .!= 3)))
                if j + 4 == ow { break }
                j = min(j + 4, ow - 4)
            }
        }
    }

    /// One window, scalar (rows narrower than four windows).
    @inline(__always)
    static func window(_ top: UnsafePointer<Float>, _ bottom: UnsafePointer<Float>,
                       _ out: UnsafeMutablePointer<Float>, _ at: UnsafeMutablePointer<Int32>) {
        // scan order: (0,0), (0,1), (1,0), (1,1); a later value wins only if larger (or NaN)
        var best = top[0], k: Int32 = 0
        if top[1] > best || top[1] != top[1] { best = top[1]; k = 1 }
        if bottom[0] > best || bottom[0] != bottom[0] { best = bottom[0]; k = 2 }
        if bottom[1] > best || bottom[1] != bottom[1] { best = bottom[1]; k = 3 }
        out.pointee = best <= 0 ? 0 : best           // ReLU as max(x, 0): -0 -> +0, NaN stays
        at.pointee = k
    }

    /// Four adjacent windows: the same comparisons as `window`, lane by lane.
    @inline(__always)
    static func fourWindows(_ top: UnsafePointer<Float>, _ bottom: UnsafePointer<Float>,
                            _ out: UnsafeMutablePointer<Float>, _ at: UnsafeMutablePointer<Int32>) {
        let t = UnsafeRawPointer(top).loadUnaligned(as: SIMD8<Float>.self)
        let b = UnsafeRawPointer(bottom).loadUnaligned(as: SIMD8<Float>.self)
        var best = t.evenHalf, k = SIMD4<Int32>(repeating: 0)
        @inline(__always) func consider(_ candidate: SIMD4<Float>, _ index: Int32) {
            let wins = (candidate .> best) .| (candidate .!= candidate)
            best.replace(with: candidate, where: wins)
            k.replace(with: index, where: wins)
        }
        consider(t.oddHalf, 1); consider(b.evenHalf, 2); consider(b.oddHalf, 3)
        UnsafeMutableRawPointer(out).storeBytes(of: best.replacing(with: 0, where: best .<= 0), as: SIMD4<Float>.self)
        UnsafeMutableRawPointer(at).storeBytes(of: k, as: SIMD4<Int32>.self)
    }
}
