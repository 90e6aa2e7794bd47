// Finite-difference checks of every hand-written backward pass. Each layer is checked through a
// random linear read-out L = sum(r * y), whose gradient dL/dy = r is known; the whole model is
// checked through both losses. Central differences in Float with step h carry an error of order
// (float rounding of L) / h, which the tolerances allow; a wrong index or a missing term gives
// errors of the order of the gradient itself, far above them.

import DAE
import XCTest

// Shared with StackedTests.
/// Compares analytic and central-difference derivatives of `loss` with respect to
/// `values[indices]`; `loss` reads `values` through the pointer. With `skipKinks`, an index
/// whose one-sided differences disagree (the step crossed a ReLU or max-pool switch, where
/// the loss is not differentiable) is left out, and at most a fifth may be.
func gradientCheck(_ name: String, values: UnsafeMutablePointer<Float>, indices: [Int], analytic: [Float],
           h: Float = 1e-2, tolerance: Float = 2e-3, skipKinks: Bool = false, loss: () -> Double) {
    var worst: Float = 0, scale: Float = 1e-3, skipped = 0
    let center = loss()
    for (k, i) in indices.enumerated() {
        let saved = values[i]
        values[i] = saved + h
        let plus = loss()
        values[i] = saved - h
        let minus = loss()
        values[i] = saved
        if skipKinks {
            let forward = (plus - center) / Double(h), backward = (center - minus) / Double(h)
            if abs(forward - backward) > 0.1 * max(abs(forward), abs(backward), 1e-3) {
                skipped += 1
                continue
            }
        }
        let numeric = Float((plus - minus) / Double(2 * h))
        worst = max(worst, abs(numeric - analytic[k]))
        scale = max(scale, abs(analytic[k]))
    }
    XCTAssertLessThan(worst / scale, tolerance, "\(name): finite differences disagree (max error \(worst), scale \(scale))")
    XCTAssertLessThanOrEqual(skipped * 5, indices.count, "\(name): too many non-differentiable points")
}

func sampleIndices(_ count: Int, _ k: Int) -> [Int] {
    count <= k ? Array(0..<count) : (0..<k).map { ($0 * 7919 + 13) % count }
}

func dot(_ a: UnsafePointer<Float>, _ b: [Float]) -> Double {
    var s = 0.0
    for i in 0..<b.count { s += Double(a[i]) * Double(b[i]) }
    return s
}


final class GradientCheckTests: XCTestCase {
    func testConv2dGradients() {
        for (h, fast) in [(5, false), (4, true)] { conv2dGradients(h: h, winograd: fast) }
    }

    func conv2dGradients(h: Int, winograd: Bool) {
        let (cin, cout, n, w) = (3, 4, 2, 6)
        var layout = ParameterLayout()
        let offsets = Conv2d.register(&layout, prefix: "conv", inChannels: cin, outChannels: cout, kernel: 3)
        let params = FloatBuffer(randomArray(layout.count, seed: 1)), grads = FloatBuffer(count: layout.count)
        let conv = Conv2d(inChannels: cin, outChannels: cout, kernel: 3, padding: 1, winograd: winograd, offsets: offsets, params: params, grads: grads)
        let x = FloatBuffer(randomArray(cin * n * h * w, seed: 2))
        let y = FloatBuffer(count: cout * n * h * w)
        let col = FloatBuffer(count: conv.workspaceSize(n: n, h: h, w: w)), dcol = FloatBuffer(count: cin * 9 * n * h * w)
        let dx = FloatBuffer(count: x.count)
        let r = randomArray(y.count, seed: 3)
        func loss() -> Double {
            conv.forward(x: x.pointer, y: y.pointer, col: col.pointer, n: n, h: h, w: w)
            return dot(y.pointer, r)
        }
        _ = loss()
        conv.backward(dy: r, col: col.pointer, dx: dx.pointer, dcol: dcol.pointer, n: n, h: h, w: w)
        let all = Array(0..<layout.count)
        let name = winograd ? "conv2d (Winograd)" : "conv2d"
        gradientCheck("\(name) weight+bias", values: params.pointer, indices: all, analytic: all.map { grads[$0] }, loss: loss)
        let xs = Array(0..<x.count)
        gradientCheck("\(name) input", values: x.pointer, indices: xs, analytic: xs.map { dx[$0] }, loss: loss)
    }

    /// Conv2d against a direct convolution written out (and its adjoint for dx, its weight sums
    /// for dW), on shapes that take every edge of im2col/col2im's shifted plane copies: one-pixel
    /// and one-column planes, kernels larger than the plane, padding 0, 1 and 2; and on the
    /// Winograd path's: a single tile, one row of tiles, rows of 7, 8 and 9 tiles (a part-filled,
    /// a full and a full plus a part-filled 8-tile vector), and many rows.
    func testConv2dMatchesDirectConvolution() {
        let direct = [(3, 1, 1, 1), (3, 1, 1, 5), (3, 1, 4, 1), (3, 1, 5, 6), (5, 2, 3, 4), (1, 0, 2, 3), (5, 2, 7, 7), (5, 2, 1, 3)].map { ($0, false) }
        let winograd = [(3, 1, 2, 2), (3, 1, 2, 6), (3, 1, 4, 14), (3, 1, 14, 14), (3, 1, 6, 16), (3, 1, 4, 18), (3, 1, 8, 34)].map { ($0, true) }
        for ((k, p, h, w), fast) in direct + winograd {
            let (cin, cout, n) = (2, 3, 2)
            let oh = h + 2 * p - k + 1, ow = w + 2 * p - k + 1
            precondition(oh == h && ow == w)             // the layer keeps the size: k = 2p + 1
            var layout = ParameterLayout()
            let offsets = Conv2d.register(&layout, prefix: "c", inChannels: cin, outChannels: cout, kernel: k)
            let params = FloatBuffer(randomArray(layout.count, seed: 11)), grads = FloatBuffer(count: layout.count)
            let conv = Conv2d(inChannels: cin, outChannels: cout, kernel: k, padding: p, winograd: fast, offsets: offsets, params: params, grads: grads)
            let xs = randomArray(cin * n * h * w, seed: 12), dys = randomArray(cout * n * h * w, seed: 13)
            let x = FloatBuffer(xs), y = FloatBuffer(count: cout * n * h * w), dx = FloatBuffer(count: xs.count)
            let col = FloatBuffer(count: conv.workspaceSize(n: n, h: h, w: w)), dcol = FloatBuffer(count: cin * k * k * n * h * w)
            conv.forward(x: x.pointer, y: y.pointer, col: col.pointer, n: n, h: h, w: w)
            conv.backward(dy: dys, col: col.pointer, dx: dx.pointer, dcol: dcol.pointer, n: n, h: h, w: w)
            // direct sums in Double, [C, N, H, W] layout
            var expectY = [Double](repeating: 0, count: y.count), expectDx = [Double](repeating: 0, count: xs.count)
            var expectDw = [Double](repeating: 0, count: cout * cin * k * k)
            for o in 0..<cout { for b in 0..<n { for yy in 0..<h { for xx in 0..<w {
                let yi = ((o * n + b) * h + yy) * w + xx
                expectY[yi] = Double(params[cout * cin * k * k + o])
                for c in 0..<cin { for ky in 0..<k { for kx in 0..<k {
                    let sy = yy + ky - p, sx = xx + kx - p
                    guard sy >= 0 && sy < h && sx >= 0 && sx < w else { continue }
                    let wi = ((o * cin + c) * k + ky) * k + kx, xi = ((c * n + b) * h + sy) * w + sx
                    expectY[yi] += Double(params[wi]) * Double(xs[xi])
                    expectDx[xi] += Double(params[wi]) * Double(dys[yi])
                    expectDw[wi] += Double(xs[xi]) * Double(dys[yi])
                } } }
            } } } }
            let shape = "k \(k) p \(p) \(h)x\(w)\(fast ? " winograd" : "")"
            for (i, e) in expectY.enumerated() { XCTAssertEqual(Double(y[i]), e, accuracy: 1e-5, "y \(shape)") }
            for (i, e) in expectDx.enumerated() { XCTAssertEqual(Double(dx[i]), e, accuracy: 1e-5, "dx \(shape)") }
            for (i, e) in expectDw.enumerated() { XCTAssertEqual(Double(grads[i]), e, accuracy: 1e-5, "dW \(shape)") }
        }
    }

    func testConvTranspose2dGradients() {
        // widths 3 (scalar path), 4 (one SIMD group) and 7 (groups overlapping at the row's end)
        for w in [3, 4, 7] {
            let (cin, cout, n, h) = (3, 2, 2, 3)
            var layout = ParameterLayout()
            let offsets = ConvTranspose2d.register(&layout, prefix: "deconv", inChannels: cin, outChannels: cout, stride: 2)
            let params = FloatBuffer(randomArray(layout.count, seed: 4)), grads = FloatBuffer(count: layout.count)
            let deconv = ConvTranspose2d(inChannels: cin, outChannels: cout, stride: 2, offsets: offsets, params: params, grads: grads)
            let x = FloatBuffer(randomArray(cin * n * h * w, seed: 5))
            let y = FloatBuffer(count: cout * n * 4 * h * w)
            let col = FloatBuffer(count: cout * 4 * n * h * w), dcol = FloatBuffer(count: cout * 4 * n * h * w)
            let dx = FloatBuffer(count: x.count)
            let r = randomArray(y.count, seed: 6)
            func loss() -> Double {
                deconv.forward(x: x.pointer, y: y.pointer, col: col.pointer, n: n, h: h, w: w)
                return dot(y.pointer, r)
            }
            _ = loss()
            let dy = FloatBuffer(r)
            withExtendedLifetime(dy) {
                deconv.backward(dy: dy.pointer, x: x.pointer, dx: dx.pointer, dcol: dcol.pointer, n: n, h: h, w: w)
            }
            let all = Array(0..<layout.count)
            gradientCheck("conv-transpose w \(w) weight+bias", values: params.pointer, indices: all, analytic: all.map { grads[$0] }, loss: loss)
            let xs = Array(0..<x.count)
            gradientCheck("conv-transpose w \(w) input", values: x.pointer, indices: xs, analytic: xs.map { dx[$0] }, loss: loss)

            // The ReLU fused into the gather gives the bits of a separate ReLU backward pass.
            deconv.forward(x: x.pointer, y: y.pointer, col: col.pointer, n: n, h: h, w: w, activation: .relu)
            let separate = FloatBuffer(r)
            ReLU.backward(y: y.pointer, grad: separate.pointer, count: separate.count)
            deconv.backward(dy: separate.pointer, x: x.pointer, dx: dx.pointer, dcol: dcol.pointer, n: n, h: h, w: w)
            let expected = grads.array + dx.array
            let fused = FloatBuffer(r)
            deconv.backward(dy: fused.pointer, x: x.pointer, dx: dx.pointer, dcol: dcol.pointer, n: n, h: h, w: w,
                            reluOutput: y.pointer)
            XCTAssertEqual(grads.array + dx.array, expected, "fused ReLU backward, w \(w)")
            XCTAssertEqual(fused.array, separate.array)
            XCTAssertTrue(separate.array.contains(0) && expected.contains { $0 != 0 })
        }
    }

    func testConvTranspose2dFusedActivationsMatchSeparatePasses() {
        for w in [3, 4, 7] {
            let (cin, cout, n, h) = (3, 2, 2, 3)
            var layout = ParameterLayout()
            let offsets = ConvTranspose2d.register(&layout, prefix: "deconv", inChannels: cin, outChannels: cout, stride: 2)
            let params = FloatBuffer(randomArray(layout.count, seed: 4)), grads = FloatBuffer(count: layout.count)
            let deconv = ConvTranspose2d(inChannels: cin, outChannels: cout, stride: 2, offsets: offsets, params: params, grads: grads)
            var xs = randomArray(cin * n * h * w, seed: 5)
            xs[0] = .nan                                   // NaN must come through both activations
            let x = FloatBuffer(xs), col = FloatBuffer(count: cout * 4 * n * h * w)
            let plain = FloatBuffer(count: cout * n * 4 * h * w), fused = FloatBuffer(count: plain.count)
            deconv.forward(x: x.pointer, y: plain.pointer, col: col.pointer, n: n, h: h, w: w)
            let relu = FloatBuffer(plain.array), sigmoid = FloatBuffer(plain.array)
            ReLU.forward(relu.pointer, count: relu.count)
            Sigmoid.forward(sigmoid.pointer, count: sigmoid.count)
            deconv.forward(x: x.pointer, y: fused.pointer, col: col.pointer, n: n, h: h, w: w, activation: .relu)
            XCTAssertEqual(fused.array.map(\.bitPattern), relu.array.map(\.bitPattern), "ReLU, w \(w)")
            deconv.forward(x: x.pointer, y: fused.pointer, col: col.pointer, n: n, h: h, w: w, activation: .sigmoid)
            XCTAssertEqual(fused.array.map(\.bitPattern), sigmoid.array.map(\.bitPattern), "Sigmoid, w \(w)")
            XCTAssertTrue(fused.array.contains { $0.isNaN })
        }
    }

    func testConvTranspose2dHandComputed() {
        // One input channel, one output channel, a 1x1 input: the output is the kernel times x plus b.
        var layout = ParameterLayout()
        let offsets = ConvTranspose2d.register(&layout, prefix: "d", inChannels: 1, outChannels: 1, stride: 2)
        let params = FloatBuffer([1, 2, 3, 4, 0.5]), grads = FloatBuffer(count: 5)
        let deconv = ConvTranspose2d(inChannels: 1, outChannels: 1, stride: 2, offsets: offsets, params: params, grads: grads)
        let x = FloatBuffer([2]), y = FloatBuffer(count: 4), col = FloatBuffer(count: 4)
        deconv.forward(x: x.pointer, y: y.pointer, col: col.pointer, n: 1, h: 1, w: 1)
        XCTAssertEqual(y.array, [2.5, 4.5, 6.5, 8.5])
    }

    func testReLUMaxPoolRoutesGradientToFirstMaximum() {
        let pool = ReLUMaxPool2d()
        // One 2x4 plane: windows [1 3; 3 0] (tie: the first maximum, top-right) and [-1 -2; -3 -4]
        // (maximum below 0: the ReLU gives 0 and no gradient passes).
        let x = FloatBuffer([1, 3, -1, -2,
                             3, 0, -3, -4])
        let y = FloatBuffer(count: 2), dx = FloatBuffer([9, 9, 9, 9, 9, 9, 9, 9])
        let at = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
        defer { at.deallocate() }
        pool.forward(x: x.pointer, y: y.pointer, where: at, planes: 1, h: 2, w: 4)
        XCTAssertEqual(y.array, [3, 0])
        XCTAssertEqual([at[0], at[1]], [1, 0])
        pool.backward(dy: [10, 20], y: y.pointer, where: at, dx: dx.pointer, planes: 1, h: 2, w: 4)
        XCTAssertEqual(dx.array, [0, 10, 0, 0, 0, 0, 0, 0])   // every value written, the old 9s gone
    }

    /// The SIMD path (four windows at a time, overlapping at a row's end) against a plain
    /// ReLU-then-max-pool written out, on widths that take each path, with ties, NaN and -0.
    func testReLUMaxPoolMatchesPlainLoops() {
        let pool = ReLUMaxPool2d()
        for (planes, h, w) in [(3, 4, 2), (2, 2, 6), (2, 6, 8), (3, 4, 14), (2, 14, 28), (1, 2, 18)] {
            var x = randomArray(planes * h * w, seed: UInt64(w)).map { ($0 * 4).rounded() / 4 }   // many ties
            x[1] = .nan; x[x.count - 1] = -0.0
            let oh = h / 2, ow = w / 2
            var expectY = [Float](repeating: 0, count: planes * oh * ow)
            var expectDx = [Float](repeating: 0, count: x.count)
            let dy = randomArray(expectY.count, seed: 99)
            for p in 0..<planes { for i in 0..<oh { for j in 0..<ow {
                var best: Float = 0, at = -1       // ReLU first, then the first maximum in scan order
                for (dy_, dx_) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let k = p * h * w + (2 * i + dy_) * w + 2 * j + dx_
                    let v = x[k].isNaN ? x[k] : max(x[k], 0)
                    if at < 0 || v > best || v.isNaN && !best.isNaN { best = v; at = k }
                }
                let o = (p * oh + i) * ow + j
                expectY[o] = best
                if best > 0 { expectDx[at] = dy[o] }
            } } }
            let xb = FloatBuffer(x), y = FloatBuffer(count: expectY.count), dx = FloatBuffer(count: x.count)
            let at = UnsafeMutablePointer<Int32>.allocate(capacity: expectY.count)
            defer { at.deallocate() }
            pool.forward(x: xb.pointer, y: y.pointer, where: at, planes: planes, h: h, w: w)
            XCTAssertEqual(y.array.map(\.bitPattern), expectY.map(\.bitPattern), "forward \(planes)x\(h)x\(w)")
            pool.backward(dy: dy, y: y.pointer, where: at, dx: dx.pointer, planes: planes, h: h, w: w)
            XCTAssertEqual(dx.array, expectDx, "backward \(planes)x\(h)x\(w)")
        }
    }

    func testWholeModelGradientsBothLosses() {
        for lossKind in LossKind.allCases {
            let (H, W, n) = (8, 8, 2)
            let model = ConvDenoiser(height: H, width: W, capacity: n)
            model.initialize(seed: 7)
            let input = randomArray(n * H * W, seed: 8).map { ($0 + 1) / 2 }
            let target = randomArray(n * H * W, seed: 9).map { ($0 + 1) / 2 }
            for i in 0..<input.count { model.input[i] = input[i] }
            func loss() -> Double {
                model.forward(n: n)
                return target.withUnsafeBufferPointer { lossKind.sum(output: model.output, target: $0.baseAddress!, count: n * H * W) }
            }
            _ = loss()
            target.withUnsafeBufferPointer {
                lossKind.backward(output: model.output, target: $0.baseAddress!, gradient: model.gradOutput, count: n * H * W, meanOver: 1)
            }
            model.backward(n: n)
            for slot in model.layout.slots {
                let indices = sampleIndices(slot.count, 40).map { $0 + slot.offset }
                gradientCheck("\(lossKind) \(slot.name)", values: model.params.pointer, indices: indices,
                      analytic: indices.map { model.grads[$0] }, h: 1e-3, tolerance: 3e-2, skipKinks: true, loss: loss)
            }
        }
    }

    func testPartialBatchUsesOnlyItsSamples() {
        // A batch of 1 in a model built for 3 must give the same gradient as a model built for 1.
        let big = ConvDenoiser(height: 8, width: 8, capacity: 3), small = ConvDenoiser(height: 8, width: 8, capacity: 1)
        big.initialize(seed: 3); small.initialize(seed: 3)
        let x = randomArray(64, seed: 10).map { ($0 + 1) / 2 }
        for m in [big, small] {
            for i in 0..<64 { m.input[i] = x[i] }
            m.forward(n: 1)
            x.withUnsafeBufferPointer { LossKind.mse.backward(output: m.output, target: $0.baseAddress!, gradient: m.gradOutput, count: 64, meanOver: 64) }
            m.backward(n: 1)
        }
        XCTAssertEqual(big.grads.array, small.grads.array)
    }
}
