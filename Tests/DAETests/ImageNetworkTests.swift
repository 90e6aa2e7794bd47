// The layer abstraction itself (NetworkGraph, MemoryPlan, ImageNetwork): the memory it plans for
// the two image models, where a concatenation's parts live, batches smaller than the capacity,
// the order of parameters and progress reports, and a network made of layers the library does not
// have (a residual output, no sigmoid) checked by finite differences.

@testable import DAE
import XCTest

final class ImageNetworkTests: XCTestCase {
    /// The reference model's arena is what its hand-sized arena was: x, col1, a1, p1, conv2's
    /// Winograd workspace, a2, code, col3, a3, col4, y, and the gradients dY, dA3, dCode, dA2,
    /// dP1, dA1; the pools' positions in the index arena.
    func testPlanOfTheReferenceModel() {
        let n = 5, full = n * 28 * 28, half = full / 4, quarter = full / 16
        let plan = MemoryPlan(ConvDenoiser.graph(), height: 28, width: 28, capacity: n)
        let winograd = Winograd.Workspace.size(inChannels: 32, outChannels: 64, pixels: half, width: 14)
        let values = full + 9 * full + 32 * full + 32 * half + winograd + 64 * half + 64 * quarter + 32 * 4 * quarter + 32 * half + 4 * half + full
        let gradients = full + 32 * half + 64 * quarter + 64 * half + 32 * half + 32 * full
        XCTAssertEqual(plan.floats, values + gradients)
        XCTAssertEqual(plan.integers, 32 * full / 4 + 64 * half / 4)
        XCTAssertNil(plan.sampleMajor)
        XCTAssertEqual(plan.shapes.map(\.description), ["[1, n, 28, 28]", "[32, n, 28, 28]", "[32, n, 14, 14]", "[64, n, 14, 14]",
                                                        "[64, n, 7, 7]", "[32, n, 14, 14]", "[1, n, 28, 28]"])
        XCTAssertNil(plan.gradients[0], "the noisy input needs no gradient")
        XCTAssertTrue(plan.scratch.allSatisfy { $0.allSatisfy { $0 == nil } }, "no tensor is read twice")
    }

    /// The U-Net's arena holds what its hand-written plan held (per level k, P_k = n*h_k*w_k): the
    /// activations x (C > 1), p_k, colA_k, a_k, colB_k, cat_k or s_{L-1}, colUp_k, colFuse_k, d_k,
    /// colHead, y, input, output (C > 1); the gradients dY, dD_k, dCat_k, dS_{L-1}, dA_k, dP_k; the
    /// pool's share of dS_k, added to the concatenation's (dPool_k); gradOutput (C > 1).
    func testPlanOfAUNet() {
        let (C, w, n, H, W) = (3, [4, 6, 8], 2, 8, 12)
        let plan = MemoryPlan(UNet.graph(UNetSpec(channels: C, widths: w)), height: H, width: W, capacity: n)
        let L = w.count, P = (0..<L).map { k in n * (H >> k) * (W >> k) }
        func cin(_ k: Int) -> Int { k == 0 ? C : w[k - 1] }
        var expected = 4 * C * P[0] + w[0] * P[0] + C * P[0] + C * P[0]           // x, y, input, output, colHead, dY, gradOutput
        for k in 0..<L {
            expected += (k > 0 ? 2 * w[k - 1] * P[k] : 0)                       // p_k, dP_k
            expected += cin(k) * 9 * P[k] + w[k] * 9 * P[k] + 2 * w[k] * P[k]   // colA, colB, a_k, dA_k
            if k < L - 1 {
                expected += 2 * (2 * w[k] * P[k])                               // cat_k, dCat_k
                expected += w[k] * 4 * P[k + 1] + 2 * w[k] * 9 * P[k]           // colUp, colFuse
                expected += 3 * w[k] * P[k]                                     // d_k, dD_k, dPool_k
            } else {
                expected += 2 * w[k] * P[k]                                     // s_{L-1}, dS_{L-1}
            }
        }
        XCTAssertEqual(plan.floats, expected)
        XCTAssertEqual(plan.integers, (1..<L).map { w[$0 - 1] * P[$0] }.reduce(0, +))
    }

    /// s_k is stored in cat_k after u_k's w_k channels for the whole batch, w_k * n*h*w floats in
    /// for a batch of n, and so is its gradient; u_k starts cat_k.
    func testConcatenationPartsLiveInsideIt() {
        let w = [4, 6]
        let unet = UNet(UNetSpec(channels: 1, widths: w), height: 8, width: 8, capacity: 3)
        let nodes = unet.graph.nodes
        let s0 = nodes.first { $0.name == "encoder.0.3" }!.output, u0 = nodes.first { $0.name == "up.0" }!.output
        let cat0 = nodes.first { $0.name == "decoder.0.0" }!.inputs[0]
        for n in 1...3 {
            XCTAssertEqual(unet.value(u0, n), unet.value(cat0, n))
            XCTAssertEqual(unet.value(s0, n), unet.value(cat0, n) + w[0] * n * 64)
            XCTAssertEqual(unet.gradient(u0, n), unet.gradient(cat0, n))
            XCTAssertEqual(unet.gradient(s0, n)!, unet.gradient(cat0, n)! + w[0] * n * 64)
        }
        // the pool of level 1 reads s_0 too: its share of s_0's gradient goes to a scratch slice
        let pool = nodes.firstIndex { $0.name == "pool.1" }!
        XCTAssertNotNil(unet.plan.scratch[pool][0])
    }

    /// A batch smaller than the capacity gives the bits a network of that capacity gives: outputs,
    /// features and gradients (the U-Net's skips are read where the batch put them).
    func testSmallerBatchThanCapacity() {
        for spec in [ModelSpec.unet(UNetSpec(channels: 3, widths: [4, 6, 5])), .conv(ConvSpec(channels: 1, widths: [3, 5]))] {
            let (H, W) = (8, 12), size = spec.channels * H * W
            let layout = spec.makeLayout(), params = FloatBuffer(count: layout.count)
            initializeParameters(params, layout: layout, seed: 3)
            let big = spec.makeNetwork(height: H, width: W, capacity: 3, parameters: params)
            let small = spec.makeNetwork(height: H, width: W, capacity: 2, parameters: params)
            let x = randomArray(2 * size, seed: 4).map { ($0 + 1) / 2 }, r = randomArray(2 * size, seed: 5)
            var results: [[Float]] = []
            for network in [big, small] {
                for i in 0..<x.count { network.input[i] = x[i] }
                network.forward(n: 2)
                let output = Array(UnsafeBufferPointer(start: network.output, count: 2 * size))
                for i in 0..<r.count { network.gradOutput[i] = r[i] }
                network.backward(n: 2)
                network.encode(n: 2)
                var code = [Float](repeating: 0, count: network.codeShape.reduce(1, *))
                code.withUnsafeMutableBufferPointer { network.copyCode(sample: 1, n: 2, into: $0.baseAddress!) }
                results.append(output + network.grads.array + code)
            }
            XCTAssertEqual(results[0], results[1], spec.description)
        }
    }

    /// The layouts follow the PyTorch state_dict's order (the initialisation is keyed by a
    /// tensor's position in it).
    func testParameterOrder() {
        let unet = UNet.makeLayout(UNetSpec(channels: 1, widths: [2, 3, 4])).slots.map(\.name).filter { $0.hasSuffix("weight") }
        XCTAssertEqual(unet, ["encoder.0.0", "encoder.0.2", "encoder.1.0", "encoder.1.2", "encoder.2.0", "encoder.2.2",
                              "up.0", "up.1", "decoder.0.0", "decoder.1.0", "head"].map { $0 + ".weight" })
        let conv = ConvDenoiser.makeLayout().slots.map(\.name)
        XCTAssertEqual(conv, ["encoder.0.weight", "encoder.0.bias", "encoder.3.weight", "encoder.3.bias",
                              "decoder.0.weight", "decoder.0.bias", "decoder.2.weight", "decoder.2.bias"])
    }

    /// The backward reports where the trainer may advance its reduction of the decoder's gradients:
    /// after each transposed convolution (true once the last has run), after each encoder
    /// convolution, for the U-Net after the pool below a level's first convolution.
    func testProgressReports() {
        func reports(_ network: DenoisingNetwork) -> [Bool] {
            var calls: [Bool] = []
            for i in 0..<network.inputSize { network.input[i] = 0.5; network.gradOutput[i] = 0.1 }
            network.forward(n: 1)
            network.backward(n: 1) { calls.append($0) }
            return calls
        }
        XCTAssertEqual(reports(ConvDenoiser(capacity: 1)), [false, true, true, true])
        XCTAssertEqual(reports(UNet(UNetSpec(widths: [2, 3, 4]), height: 8, width: 8, capacity: 1)), [false, true] + Array(repeating: true, count: 6))
        XCTAssertEqual(ConvDenoiser(capacity: 1).decoderStart, ConvDenoiser.makeLayout().slot(named: "decoder.0.weight")!.offset)
        // the benchmark's slots are the graph's layers, forward then backward
        let names = ConvDenoiser(capacity: 1).layerNames
        XCTAssertEqual(ConvDenoiser.phaseNames, names.map { $0 + " fwd" } + names.reversed().map { $0 + " bwd" })
    }

    /// y = x - r: a two-input layer, as a residual denoiser's output (the input minus the noise a
    /// stack of convolutions predicts), with no activation at the end.
    struct Minus: Layer {
        func outputShape(_ inputs: [TensorShape]) -> TensorShape {
            precondition(inputs.count == 2 && inputs[0] == inputs[1])
            return inputs[0]
        }
        /// x, x2 [c, n, h, w] -> y = x - x2
        func forward(_ io: LayerIO) {
            for i in 0..<io.input.count(io.n) { io.y[i] = io.x[i] - io.x2![i] }
        }
        /// dy -> dx = dy (when asked), dx2 = -dy
        func backward(_ io: LayerIO) {
            for i in 0..<io.input.count(io.n) {
                io.dx?[i] = io.dy[i]
                io.dx2![i] = -io.dy[i]
            }
        }
    }

    /// A small residual network built from layers (two 3x3 convolutions with a ReLU between, the
    /// output the input minus their result) gets every parameter's gradient right.
    func testResidualNetworkGradients() {
        var g = NetworkGraph(channels: 2)
        var t = g.add(Conv2dLayer("body.0", inChannels: 2, outChannels: 3, kernel: 3), to: g.input, name: "conv1")
        t = g.add(ActivationLayer(.relu), to: t, name: "relu1")
        g.code = t
        t = g.add(Conv2dLayer("body.2", inChannels: 3, outChannels: 2, kernel: 3), to: t, name: "conv2")
        g.output = g.add(Minus(), to: g.input, t, name: "residual")
        let network = ImageNetwork(graph: g, height: 6, width: 4, capacity: 2)
        network.initialize(seed: 9)
        // positive biases keep most of the ReLU open, so that few steps cross its kink
        let bias = network.layout.slot(named: "body.0.bias")!
        for i in 0..<bias.count { network.params[bias.offset + i] = 0.5 }
        XCTAssertEqual(network.layout.slots.map(\.name), ["body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"])
        let n = 2, count = n * network.inputSize
        let x = randomArray(count, seed: 10), r = randomArray(count, seed: 11)
        for i in 0..<count { network.input[i] = x[i] }
        func loss() -> Double {
            network.forward(n: n)
            return (0..<count).reduce(0.0) { $0 + Double(r[$1] * network.output[$1]) }
        }
        _ = loss()
        for i in 0..<count { network.gradOutput[i] = r[i] }     // dL/dy of L = sum(r * y), sample-major
        network.backward(n: n)
        let analytic = network.grads.array
        gradientCheck("residual network", values: network.params.pointer, indices: Array(0..<network.layout.count),
                      analytic: analytic, h: 1e-2, tolerance: 2e-3, skipKinks: true, loss: loss)
    }
}
