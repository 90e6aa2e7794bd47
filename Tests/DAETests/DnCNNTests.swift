// DnCNN against PyTorch (Tests/DAETests/Fixtures/dncnn.safetensors, computed by
// Tests/reference/make_dncnn_fixtures.py with the class of docs/pytorch-models.md): output, MSE,
// every gradient and one Adam step; then what dae-dist promises of any model: the same bits on any
// thread count and world size (world sizes in Tests/mpi-checks.sh), tiled denoising equal to the
// whole image, and a resume that refuses BCE.

import DAE
import Foundation
import XCTest

final class DnCNNTests: XCTestCase {
    static let fixture: [String: SafeTensor] = {
        let url = Bundle.module.url(forResource: "Fixtures/dncnn", withExtension: "safetensors")!
        let (list, _) = try! SafeTensors.read(path: url.path)
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
    }()
    static let cases: [(name: String, spec: DnCNNSpec, shape: [Int])] = [
        ("gray", DnCNNSpec(channels: 1, depth: 4, width: 8), [2, 1, 9, 7]),
        ("rgb", DnCNNSpec(channels: 3, depth: 3, width: 5), [1, 3, 6, 11]),
    ]

    func values(_ name: String) -> [Float] { Self.fixture[name]!.values }

    func testOutputGradientsAndAdamStepMatchPyTorch() throws {
        for (name, spec, shape) in Self.cases {
            let layout = spec.makeLayout()
            XCTAssertEqual(layout.slots.map(\.name), (0..<spec.depth).flatMap { ["body.\(2 * $0).weight", "body.\(2 * $0).bias"] })
            let params = FloatBuffer(count: layout.count)
            try Weights.load(Array(Self.fixture.values), into: params, layout: layout, prefix: name + ".weights.", path: "dncnn fixture")
            let network = DnCNN(spec, height: shape[2], width: shape[3], capacity: shape[0], sharedParameters: params)
            let n = shape[0], count = shape.reduce(1, *)
            let input = values(name + ".input"), target = values(name + ".target")
            for i in 0..<count { network.input[i] = input[i] }
            network.forward(n: n)
            XCTAssertEqual(network.outputActivation, .identity)
            XCTAssertLessThan(relativeError(Array(UnsafeBufferPointer(start: network.output, count: count)), values(name + ".output")), 1e-5, name)
            let loss = target.withUnsafeBufferPointer { LossKind.mse.sum(output: network.output, target: $0.baseAddress!, count: count) } / Double(count)
            XCTAssertEqual(Float(loss), values(name + ".loss.mse")[0], accuracy: values(name + ".loss.mse")[0] * 1e-5, name)
            target.withUnsafeBufferPointer {
                LossKind.mse.backward(output: network.output, target: $0.baseAddress!, gradient: network.gradOutput, count: count,
                                      meanOver: count, activation: .identity)
            }
            network.backward(n: n)
            for slot in layout.slots {
                let ours = Array(UnsafeBufferPointer(start: network.grads.pointer + slot.offset, count: slot.count))
                XCTAssertLessThan(relativeError(ours, values("\(name).grad.mse.\(slot.name)")), 1e-5, "\(name) gradient of \(slot.name)")
            }
            let adam = Adam(parameterCount: layout.count, config: AdamConfig(lr: 1e-3))
            adam.update(params: params, grads: network.grads)
            for slot in layout.slots {
                let ours = Array(UnsafeBufferPointer(start: params.pointer + slot.offset, count: slot.count))
                XCTAssertLessThan(relativeError(ours, values("\(name).adam.\(slot.name)")), 1e-5, "\(name) Adam step of \(slot.name)")
            }
        }
    }

    func testTrainingIsTheSameOnAnyThreadCountAndRefusesBCE() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(40)
        var config = TrainConfig(model: ModelSpec(DnCNNSpec(channels: 1, depth: 3, width: 4)))
        config.epochs = 1
        let weights = try [1, 2].map { threads in try weightsAfterOneEpoch(config, data: data, threads: threads) }
        XCTAssertEqual(weights[0], weights[1])
        config.loss = .bce
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".hasPrefix("--loss: bce needs outputs in [0,1]"), "\($0)") }
    }

    func testTiledDenoisingEqualsTheWholeImage() throws {
        let spec = DnCNNSpec(channels: 1, depth: 3, width: 4)
        let params = FloatBuffer(count: spec.makeLayout().count)
        initializeParameters(params, layout: spec.makeLayout(), seed: 3)
        let (h, w) = (29, 37)
        let image = (0..<(h * w)).map { Float(($0 * 7919) % 256) / 255 }
        func denoise(tile: Int?) throws -> [Float] {
            let denoiser = try ImageDenoiser(model: ModelSpec(spec), params: params, geometry: TileGeometry(model: ModelSpec(spec)), tile: tile)
            var out = [Float](repeating: 0, count: h * w)
            image.withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { denoiser.denoise(src.baseAddress!, count: 1, height: h, width: w, into: $0.baseAddress!) } }
            return out
        }
        let geometry = TileGeometry(model: ModelSpec(spec))
        XCTAssertEqual(geometry.halo, 3)
        XCTAssertEqual(try denoise(tile: geometry.smallestTile + 1), try denoise(tile: 64))
    }
}
