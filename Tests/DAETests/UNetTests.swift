// The U-Net and the convolutional model with channels and widths against PyTorch: the fixture
// Tests/DAETests/Fixtures/unet.safetensors was computed by Tests/reference/make_unet_fixtures.py
// with the classes of docs/pytorch-models.md (outputs, features, both losses and every gradient).
// Then the layouts (a batch against its samples one by one), finite differences through the whole
// U-Net, the receptive radius, and the model descriptions in metadata.

import DAE
import Foundation
import XCTest

final class UNetTests: XCTestCase {
    static let fixture: [String: SafeTensor] = {
        let url = Bundle.module.url(forResource: "Fixtures/unet", withExtension: "safetensors")!
        let (list, _) = try! SafeTensors.read(path: url.path)
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
    }()

    func values(_ name: String) -> [Float] {
        guard let t = Self.fixture[name] else { fatalError("unet fixture has no tensor \(name)") }
        return t.values
    }

    /// The fixture's cases: name, model, input shape [n, C, H, W] (as make_unet_fixtures.py).
    static let cases: [(name: String, spec: ModelSpec, shape: [Int])] = [
        ("unet", .unet(UNetSpec(channels: 3, widths: [4, 8, 8])), [2, 3, 8, 8]),
        ("unet2", .unet(UNetSpec(channels: 1, widths: [3, 5])), [2, 1, 6, 10]),
        ("unet5", .unet(UNetSpec(channels: 2, widths: [2, 3, 4, 5, 6])), [1, 2, 16, 16]),
        ("conv", .conv(ConvSpec(channels: 3, widths: [4, 6])), [2, 3, 8, 8]),
    ]

    func network(_ name: String, _ spec: ModelSpec, _ shape: [Int]) throws -> DenoisingNetwork {
        let layout = spec.makeLayout()
        let params = FloatBuffer(count: layout.count)
        try Weights.load(Array(Self.fixture.values), into: params, layout: layout, prefix: name + ".weights.", path: "unet fixture")
        let network = spec.makeNetwork(height: shape[2], width: shape[3], capacity: shape[0], parameters: params)
        let input = values(name + ".input")
        for i in 0..<input.count { network.input[i] = input[i] }
        return network
    }

    func testStateDictNamesAndShapesMatchPyTorch() {
        for (name, spec, _) in Self.cases {
            let layout = spec.makeLayout()
            for slot in layout.slots {
                XCTAssertEqual(Self.fixture["\(name).weights.\(slot.name)"]?.shape, slot.shape, "\(name) \(slot.name)")
            }
            XCTAssertEqual(layout.slots.count, Self.fixture.keys.filter { $0.hasPrefix(name + ".weights.") }.count, name)
        }
    }

    func testForwardAndFeaturesMatchPyTorch() throws {
        for (name, spec, shape) in Self.cases {
            let network = try network(name, spec, shape)
            let n = shape[0], count = shape.reduce(1, *)
            network.forward(n: n)
            XCTAssertEqual(network.inputSize * n, count)
            XCTAssertLessThan(relativeError(Array(UnsafeBufferPointer(start: network.output, count: count)), values(name + ".output")), 1e-5, name)
            network.encode(n: n)
            let size = network.codeShape.reduce(1, *)
            var code = [Float](repeating: 0, count: n * size)
            code.withUnsafeMutableBufferPointer { for i in 0..<n { network.copyCode(sample: i, n: n, into: $0.baseAddress! + i * size) } }
            XCTAssertEqual(Self.fixture[name + ".code"]?.shape, [n] + network.codeShape, name)
            XCTAssertLessThan(relativeError(code, values(name + ".code")), 1e-5, "\(name) code")
        }
    }

    func testLossesAndGradientsMatchPyTorch() throws {
        for (name, spec, shape) in Self.cases {
            for loss in LossKind.allCases {
                let network = try network(name, spec, shape)
                let n = shape[0], count = shape.reduce(1, *)
                let target = values(name + ".target")
                network.forward(n: n)
                let value = target.withUnsafeBufferPointer { loss.sum(output: network.output, target: $0.baseAddress!, count: count) } / Double(count)
                let expected = values("\(name).loss.\(loss.rawValue)")[0]
                XCTAssertEqual(Float(value), expected, accuracy: expected * 1e-5, "\(name) \(loss) loss")
                target.withUnsafeBufferPointer {
                    loss.backward(output: network.output, target: $0.baseAddress!, gradient: network.gradOutput, count: count, meanOver: count)
                }
                network.backward(n: n)
                for slot in network.layout.slots {
                    let ours = Array(UnsafeBufferPointer(start: network.grads.pointer + slot.offset, count: slot.count))
                    XCTAssertLessThan(relativeError(ours, values("\(name).grad.\(loss.rawValue).\(slot.name)")), 1e-4,
                                      "\(name) \(loss) gradient of \(slot.name)")
                }
            }
        }
    }

    /// Finite differences through the whole U-Net (three levels, two channels), both losses.
    /// Each tensor is checked along random unit directions v: (L(p + hv) - L(p - hv)) / 2h against
    /// g.v, to a fraction of |g|. One coordinate at a time, the deep levels' small gradients drown
    /// in the loss's float rounding over a step; a direction sums them, and a wrong or missing
    /// term still moves g.v by the order of |g|.
    func testWholeUNetGradientsBothLosses() {
        for lossKind in LossKind.allCases {
            let (C, H, W, n) = (2, 8, 12, 2)
            let model = UNet(UNetSpec(channels: C, widths: [3, 4, 5]), height: H, width: W, capacity: n)
            model.initialize(seed: 7)
            // PyTorch's initialisation shrinks the signal level by level: wider weights and biases
            // that keep most ReLUs open give gradients the differences can measure.
            for slot in model.layout.slots {
                for i in 0..<slot.count {
                    let p = model.params[slot.offset + i]
                    model.params[slot.offset + i] = slot.name.hasSuffix("bias") ? 0.1 + 0.1 * p : 2 * p
                }
            }
            let count = n * C * H * W
            let input = randomArray(count, seed: 8).map { ($0 + 1) / 2 }
            let target = randomArray(count, seed: 9).map { ($0 + 1) / 2 }
            for i in 0..<count { model.input[i] = input[i] }
            func loss() -> Double {
                model.forward(n: n)
                return target.withUnsafeBufferPointer { lossKind.sum(output: model.output, target: $0.baseAddress!, count: count) }
            }
            _ = loss()
            target.withUnsafeBufferPointer {
                lossKind.backward(output: model.output, target: $0.baseAddress!, gradient: model.gradOutput, count: count, meanOver: 1)
            }
            model.backward(n: n)
            let h: Float = 1e-4
            for (index, slot) in model.layout.slots.enumerated() {
                let p = model.params.pointer + slot.offset, g = model.grads.pointer + slot.offset
                let saved = Array(UnsafeBufferPointer(start: p, count: slot.count))
                let norm = (0..<slot.count).reduce(0.0) { $0 + Double(g[$1]) * Double(g[$1]) }.squareRoot()
                var worst = 0.0
                for trial in 0..<3 {
                    var v = randomArray(slot.count, seed: UInt64(100 * index + trial))
                    let length = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
                    v = v.map { $0 / length }
                    let analytic = (0..<slot.count).reduce(0.0) { $0 + Double(g[$1]) * Double(v[$1]) }
                    for i in 0..<slot.count { p[i] = saved[i] + h * v[i] }
                    let plus = loss()
                    for i in 0..<slot.count { p[i] = saved[i] - h * v[i] }
                    let minus = loss()
                    for i in 0..<slot.count { p[i] = saved[i] }
                    worst = max(worst, abs((plus - minus) / Double(2 * h) - analytic))
                }
                // 5% of the gradient, plus the differences' own floor: the Float forward's rounding
                // moves the loss by about sqrt(384 outputs) * 3e-8 between the two evaluations,
                // 3e-3 after dividing by 2h (measured up to 4.5e-3 with AVX2 OpenBLAS kernels).
                XCTAssertLessThan(worst, 5e-2 * norm + 1e-2, "\(lossKind) \(slot.name): finite differences disagree (max error \(worst), |g| \(norm))")
            }
        }
    }

    /// A batch of two 3-channel images gives each image's output, gradient share and features as
    /// running it alone: the [n, C, H, W] <-> [C, n, H, W] copies put every plane in its place.
    func testBatchEqualsSamplesAlone() {
        let specs: [ModelSpec] = [.unet(UNetSpec(channels: 3, widths: [4, 6, 8])), .conv(ConvSpec(channels: 3, widths: [5, 7]))]
        for spec in specs {
            let (H, W) = (8, 12), size = 3 * H * W
            let layout = spec.makeLayout(), params = FloatBuffer(count: layout.count)
            initializeParameters(params, layout: layout, seed: 5)
            let batch = spec.makeNetwork(height: H, width: W, capacity: 2, parameters: params)
            let alone = spec.makeNetwork(height: H, width: W, capacity: 1, parameters: params)
            let x = randomArray(2 * size, seed: 6).map { ($0 + 1) / 2 }, t = randomArray(2 * size, seed: 7).map { ($0 + 1) / 2 }
            for i in 0..<x.count { batch.input[i] = x[i] }
            batch.forward(n: 2)
            t.withUnsafeBufferPointer { LossKind.mse.backward(output: batch.output, target: $0.baseAddress!, gradient: batch.gradOutput, count: 2 * size, meanOver: 1) }
            batch.backward(n: 2)
            let batchOutput = Array(UnsafeBufferPointer(start: batch.output, count: 2 * size)), batchGrads = batch.grads.array
            batch.encode(n: 2)
            let codeSize = batch.codeShape.reduce(1, *)
            var batchCode = [Float](repeating: 0, count: 2 * codeSize)
            batchCode.withUnsafeMutableBufferPointer { for i in 0..<2 { batch.copyCode(sample: i, n: 2, into: $0.baseAddress! + i * codeSize) } }
            var sumGrads = [Float](repeating: 0, count: layout.count)
            for i in 0..<2 {
                for j in 0..<size { alone.input[j] = x[i * size + j] }
                alone.forward(n: 1)
                let output = Array(UnsafeBufferPointer(start: alone.output, count: size))
                XCTAssertLessThan(relativeError(output, Array(batchOutput[i * size ..< (i + 1) * size])), 1e-6, "\(spec.description) sample \(i)")
                t.withUnsafeBufferPointer {
                    LossKind.mse.backward(output: alone.output, target: $0.baseAddress! + i * size, gradient: alone.gradOutput, count: size, meanOver: 1)
                }
                alone.backward(n: 1)
                for k in 0..<layout.count { sumGrads[k] += alone.grads[k] }
                alone.encode(n: 1)
                var code = [Float](repeating: 0, count: codeSize)
                code.withUnsafeMutableBufferPointer { alone.copyCode(sample: 0, n: 1, into: $0.baseAddress!) }
                XCTAssertLessThan(relativeError(code, Array(batchCode[i * codeSize ..< (i + 1) * codeSize])), 1e-6, "\(spec.description) code \(i)")
            }
            XCTAssertLessThan(relativeError(sumGrads, batchGrads), 1e-5, "\(spec.description) gradients")
        }
    }

    /// Changing one input pixel changes outputs up to exactly `receptiveRadius` pixels away along
    /// each axis, and none further.
    func testReceptiveRadius() {
        XCTAssertEqual(ModelSpec.reference.receptiveRadius, 6)
        XCTAssertEqual(ModelSpec.unet(UNetSpec(channels: 1, widths: [4, 4])).receptiveRadius, 8)
        for spec in [ModelSpec.reference, .conv(ConvSpec(channels: 1, widths: [4, 4])),
                     .unet(UNetSpec(channels: 1, widths: [4, 4])), .unet(UNetSpec(channels: 1, widths: [4, 4, 4]))] {
            let radius = spec.receptiveRadius, side = 4 * radius + 8
            let layout = spec.makeLayout(), params = FloatBuffer(count: layout.count)
            initializeParameters(params, layout: layout, seed: 2)
            // positive biases keep the ReLUs open, so that every dependency shows
            for slot in layout.slots where slot.name.hasSuffix("bias") { for i in 0..<slot.count { params[slot.offset + i] = 0.5 } }
            let network = spec.makeNetwork(height: side, width: side, capacity: 1, parameters: params)
            var far = 0
            for p in [side / 2, side / 2 + 1, side / 2 + 2, side / 2 + 3] {    // every position within the pools' period
                let x = randomArray(side * side, seed: 3).map { ($0 + 1) / 2 }
                for i in 0..<x.count { network.input[i] = x[i] }
                network.forward(n: 1)
                let before = Array(UnsafeBufferPointer(start: network.output, count: side * side))
                network.input[p * side + p] += 1
                network.forward(n: 1)
                for yy in 0..<side { for xx in 0..<side where network.output[yy * side + xx] != before[yy * side + xx] {
                    far = max(far, abs(yy - p), abs(xx - p))
                } }
            }
            XCTAssertEqual(far, radius, spec.description)
        }
    }

    func testDescriptionsMetadataAndChecks() throws {
        let unet = ModelSpec.unet(UNetSpec(channels: 3, widths: [32, 64, 128]))
        XCTAssertEqual(unet.description, "UNet 3->32,64,128")
        XCTAssertEqual(ModelSpec.reference.description, "ConvDenoiser 1->32,64")
        XCTAssertEqual(unet.channels, 3)
        XCTAssertEqual(unet.sideMultiple, 4)
        XCTAssertEqual(ModelSpec.unet(UNetSpec(channels: 1, widths: [8, 8, 8, 8, 8])).sideMultiple, 16)
        XCTAssertEqual(ModelSpec.reference.sideMultiple, 4)
        XCTAssertEqual(ModelSpec.stacked(StackedSpec(inputSize: 784, hidden: [100])).sideMultiple, 1)
        for spec in [unet, .reference, .conv(ConvSpec(channels: 4, widths: [8, 16]))] {
            XCTAssertEqual(try ModelSpec(metadata: spec.metadata, path: "m"), spec)
        }
        XCTAssertEqual(ModelSpec.reference.metadata, ["model": "ConvDenoiser", "channels": "1", "widths": "32,64"])
        XCTAssertEqual(try ModelSpec(metadata: [:], path: "old"), .reference)
        XCTAssertEqual(try ModelSpec(metadata: ["model": "ConvDenoiser"], path: "old"), .reference)
        XCTAssertThrowsError(try ModelSpec(metadata: ["model": "UNet", "channels": "3"], path: "u.safetensors")) {
            XCTAssertEqual("\($0)", "u.safetensors: a UNet file needs channels and widths in its metadata")
        }
        XCTAssertThrowsError(try ModelSpec(metadata: ["model": "UNet", "channels": "3", "widths": "8,8,8,8,8,8"], path: "u.safetensors"))
        XCTAssertThrowsError(try ModelSpec(metadata: ["model": "ConvDenoiser", "widths": "8,8,8"], path: "c.safetensors"))
        XCTAssertThrowsError(try ModelSpec(metadata: ["model": "UNet", "channels": "0", "widths": "8,8"], path: "u.safetensors"))

        XCTAssertEqual(try ModelSpec.parseWidths("32, 64,128", flag: "--widths"), [32, 64, 128])
        for bad in ["32", "32,64,0", "32,2000", "a,b", "1,2,3,4,5,6", ""] {
            XCTAssertThrowsError(try ModelSpec.parseWidths(bad, flag: "--widths"), bad) { XCTAssertTrue("\($0)".hasPrefix("--widths: '\(bad)'"), "\($0)") }
        }
        XCTAssertThrowsError(try ModelSpec.unet(UNetSpec(channels: 1, widths: [1024, 1024, 1024, 1024, 1024])).checkSize()) {
            XCTAssertTrue("\($0)".contains("parameters, more than the 100000000 supported"), "\($0)")
        }
        XCTAssertThrowsError(try ModelSpec.conv(ConvSpec(channels: 1, widths: [8, 8, 8])).checkSize())
        XCTAssertNoThrow(try unet.checkSize())

        XCTAssertNoThrow(try unet.check(height: 32, width: 12, channels: 3, source: "d"))
        XCTAssertThrowsError(try unet.check(height: 32, width: 12, channels: 1, source: "gray.png")) {
            XCTAssertEqual("\($0)", "gray.png: images have 1 channel but the model (UNet 3->32,64,128) takes 3")
        }
        XCTAssertThrowsError(try unet.check(height: 30, width: 12, channels: 3, source: "d")) {
            XCTAssertEqual("\($0)", "d: images are 30x12; the U-Net with 3 levels needs sides that are multiples of 4")
        }
        XCTAssertThrowsError(try ModelSpec.reference.check(height: 30, width: 12, source: "d"))
    }

    func testParameterCounts() {
        XCTAssertEqual(ModelSpec.reference.makeLayout().count, 27_169)
        // UNet(1, [32, 64, 64]) in PyTorch: sum(p.numel() for p in model.parameters())
        XCTAssertEqual(ModelSpec.unet(UNetSpec(channels: 1, widths: [32, 64, 64])).makeLayout().count, 255_809)
    }

    /// With DAE_DIST_PYTORCH_CHECK=FOLDER, writes weights files (Weights.save, with the model's
    /// metadata) and their inputs and outputs for Tests/reference/make_unet_fixtures.py --check,
    /// which loads them strictly into the PyTorch classes of docs/pytorch-models.md.
    func testWeightsFileForPyTorch() throws {
        guard let folder = ProcessInfo.processInfo.environment["DAE_DIST_PYTORCH_CHECK"] else {
            throw XCTSkip("set DAE_DIST_PYTORCH_CHECK to a folder to write the files")
        }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for (name, spec) in [("unet", ModelSpec.unet(UNetSpec(channels: 3, widths: [4, 8, 8]))), ("conv", .conv(ConvSpec(channels: 3, widths: [4, 6])))] {
            let layout = spec.makeLayout(), params = FloatBuffer(count: layout.count)
            initializeParameters(params, layout: layout, seed: 11)
            let (n, H, W) = (2, 8, 8), count = n * 3 * H * W
            let network = spec.makeNetwork(height: H, width: W, capacity: n, parameters: params)
            let x = randomArray(count, seed: 12).map { ($0 + 1) / 2 }
            for i in 0..<count { network.input[i] = x[i] }
            network.forward(n: n)
            try Weights.save(params, layout: layout, to: "\(folder)/\(name).safetensors", metadata: spec.metadata)
            let io = [SafeTensor(name: "input", shape: [n, 3, H, W], values: x),
                      SafeTensor(name: "output", shape: [n, 3, H, W], values: Array(UnsafeBufferPointer(start: network.output, count: count)))]
            try writeFileAtomically(SafeTensors.encode(io), to: "\(folder)/\(name).io.safetensors")
        }
    }
}
