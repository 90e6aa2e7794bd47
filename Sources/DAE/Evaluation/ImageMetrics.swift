// Image quality against the clean image, per image (all images in [0, 1], data range 1):
//   MSE  = mean (x - y)^2
//   PSNR = 10 log10(1 / MSE) dB, with MSE floored at 1e-10 (a perfect image scores 100 dB)
//   SSIM = Wang et al. (2004): mean over the valid region of the map
//          ((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
//          local statistics under an 11x11 Gaussian window (sigma 1.5), C1 = 0.01^2, C2 = 0.03^2
//          (as pytorch_msssim's ssim(win_size=11, win_sigma=1.5, data_range=1)).
// Reported figures are means over the test images of these per-image values.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum ImageMetrics {
    public static func mse(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int) -> Double {
        var s = 0.0
        for i in 0..<count {
            let d = Double(x[i]) - Double(y[i])
            s += d * d
        }
        return s / Double(count)
    }

    public static func psnr(mse: Double) -> Double { 10 * log10(1 / max(mse, 1e-10)) }

    static let window: [Double] = {
        let g = (0..<11).map { exp(-Double(($0 - 5) * ($0 - 5)) / (2 * 1.5 * 1.5)) }
        let total = g.reduce(0, +)
        return g.map { $0 / total }
    }()

    /// Mean SSIM of two height x width images; `scratch` holds at least 5 * height * width doubles.
    /// Images smaller than the window fall back to one window over the whole image (uniform weights).
    public static func ssim(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, height: Int, width: Int,
                            scratch: UnsafeMutablePointer<Double>) -> Double {
        let c1 = 0.01 * 0.01, c2 = 0.03 * 0.03
        guard height >= 11 && width >= 11 else {
            let n = Double(height * width)
            var mx = 0.0, my = 0.0
            for i in 0..<(height * width) { mx += Double(x[i]); my += Double(y[i]) }
            mx /= n; my /= n
            var vx = 0.0, vy = 0.0, cxy = 0.0
            for i in 0..<(height * width) {
                let a = Double(x[i]) - mx, b = Double(y[i]) - my
                vx += a * a; vy += b * b; cxy += a * b
            }
            vx /= n; vy /= n; cxy /= n
            return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        }
        // Horizontal pass (valid): 5 maps of height x (width - 10): x, y, x^2, y^2, xy
        let ow = width - 10, oh = height - 10
        let rows = scratch                       // [5][height][ow]
        for r in 0..<height {
            for c in 0..<ow {
                var sx = 0.0, sy = 0.0, sxx = 0.0, syy = 0.0, sxy = 0.0
                for k in 0..<11 {
                    let w = window[k]
                    let a = Double(x[r * width + c + k]), b = Double(y[r * width + c + k])
                    sx += w * a; sy += w * b; sxx += w * a * a; syy += w * b * b; sxy += w * a * b
                }
                let o = r * ow + c, plane = height * ow
                rows[o] = sx; rows[plane + o] = sy; rows[2 * plane + o] = sxx; rows[3 * plane + o] = syy; rows[4 * plane + o] = sxy
            }
        }
        // Vertical pass (valid) and the SSIM map's mean
        var total = 0.0
        let plane = height * ow
        for r in 0..<oh {
            for c in 0..<ow {
                var m = (0.0, 0.0, 0.0, 0.0, 0.0)
                for k in 0..<11 {
                    let w = window[k], o = (r + k) * ow + c
                    m.0 += w * rows[o]; m.1 += w * rows[plane + o]; m.2 += w * rows[2 * plane + o]
                    m.3 += w * rows[3 * plane + o]; m.4 += w * rows[4 * plane + o]
                }
                let vx = m.2 - m.0 * m.0, vy = m.3 - m.1 * m.1, cxy = m.4 - m.0 * m.1
                total += ((2 * m.0 * m.1 + c1) * (2 * cxy + c2)) / ((m.0 * m.0 + m.1 * m.1 + c1) * (vx + vy + c2))
            }
        }
        return total / Double(oh * ow)
    }
}
