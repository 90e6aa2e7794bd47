// MaxPool2d(kernel 2, stride 2) with the argmax saved for the backward pass.
// Ties go to the first maximum in scan order (row by row), as in PyTorch, which matters after a
// ReLU where whole windows are 0.
//
//   forward:  y[p, i, j] = max over the 2x2 window of x[p, 2i.., 2j..], p over C*N planes
//             argmax[p, i, j] = offset of that maximum within plane p of x
//   backward: dx = 0; dx[p, argmax[p, i, j]] = dy[p, i, j]   (windows do not overlap)

public struct MaxPool2d {
    public init() {}

    /// x [planes, h, w] -> y [planes, h/2, w/2]
    public func forward(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>,
                        planes: Int, h: Int, w: Int) {
        let oh = h / 2, ow = w / 2
        for p in 0..<planes {
            let src = x + p * h * w
            let dst = y + p * oh * ow
            let arg = argmax + p * oh * ow
            let w32 = Int32(w)
            for i in 0..<oh {
                // The inner loop walks pointers and a wrapping Int32 offset: checked index
                // arithmetic (2 * j + 1, i * ow + j, ...) made it 3x slower (pool1 fwd 1.7 ms/step
                // against 0.5 without the overflow checks). Offsets fit Int32: a plane is at most
                // 2^22 pixels (ImageDenoiser's limit).
                var top = src + 2 * i * w, bottom = top + w
                var out = dst + i * ow, index = arg + i * ow
                var at0 = Int32(2 * i * w)                  // offset of the window's top-left in the plane
                for _ in 0..<ow {
                    // scan order: (0,0), (0,1), (1,0), (1,1); a later value wins only if larger (or NaN)
                    var best = top[0], at = at0
                    let b = top[1], c = bottom[0], d = bottom[1]
                    if b > best || b != b { best = b; at = at0 &+ 1 }
                    if c > best || c != c { best = c; at = at0 &+ w32 }
                    if d > best || d != d { best = d; at = at0 &+ w32 &+ 1 }
                    out.pointee = best
                    index.pointee = at
                    top += 2; bottom += 2; out += 1; index += 1; at0 &+= 2
                }
            }
        }
    }

    /// dy [planes, h/2, w/2] -> dx [planes, h, w]
    public func backward(dy: UnsafePointer<Float>, argmax: UnsafePointer<Int32>, dx: UnsafeMutablePointer<Float>,
                         planes: Int, h: Int, w: Int) {
        let outCount = (h / 2) * (w / 2)
        dx.update(repeating: 0, count: planes * h * w)
        for p in 0..<planes {
            let src = dy + p * outCount, arg = argmax + p * outCount, dst = dx + p * h * w
            for i in 0..<outCount { dst[Int(arg[i])] = src[i] }
        }
    }
}
