// TrainedModel, the start-up every command that applies a trained model shares: the file checked
// before it is read, the model and parameters read, data loaded and checked against the model.

@testable import DAE
import Foundation
import XCTest

final class TrainedModelTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Weights of an untrained model of `spec` (what is in them does not matter here).
    func weights(_ spec: ModelSpec, patch: Int? = nil) throws -> String {
        var config = TrainConfig(model: spec)
        config.patches = patch.map { PatchSampling(size: $0) }
        let data = Dataset(count: 4, height: 8, width: 8, pixels: [UInt8](repeating: 9, count: 256), labels: [0, 0, 0, 0], source: "d")
        let trainer = try Trainer(config: config, data: data)
        let path = dir + "/run/model.safetensors"
        try trainer.saveWeights(to: path)
        return path
    }

    func testTheFileIsCheckedBeforeItIsRead() throws {
        let path = try weights(.conv(ConvSpec(channels: 1, widths: [4, 4])))
        XCTAssertThrowsError(try TrainedModel(path: dir + "/run")) {
            XCTAssertTrue("\($0)".contains("is a folder; pass --checkpoint") && "\($0)".contains("did you mean \(path)?"), "\($0)")
        }
        try FileManager.default.createDirectory(atPath: dir + "/run/checkpoints", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: path, toPath: dir + "/run/checkpoints/step-000000004.safetensors")
        try FileManager.default.removeItem(atPath: path)
        XCTAssertThrowsError(try TrainedModel(path: path)) {
            XCTAssertEqual("\($0)", "--checkpoint: \(path): no such file; the newest checkpoint of that run is \(dir)/run/checkpoints/step-000000004.safetensors")
        }
        let model = try TrainedModel(path: dir + "/run/checkpoints/step-000000004.safetensors")
        XCTAssertEqual(model.spec, .conv(ConvSpec(channels: 1, widths: [4, 4])))
        XCTAssertEqual(model.parameters.count, model.spec.makeLayout().count)
        XCTAssertEqual(model.trainingSeed, 0)
        XCTAssertEqual(try model.trainingNoise(), .gaussian(factor: 0.5))
    }

    func testImagesOfSeveralSizesAreRefusedWhereOneSizeIsNeeded() throws {
        let model = try TrainedModel(path: try weights(.conv(ConvSpec(channels: 1, widths: [4, 4]))))
        let folder = dir + "/images"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for (name, side) in [("a.png", 8), ("b.png", 12)] {
            FileManager.default.createFile(atPath: folder + "/" + name,
                                           contents: Data(PNG.encode(GrayImage(width: side, height: side, pixels: [UInt8](repeating: 7, count: side * side)))))
        }
        XCTAssertThrowsError(try model.loadImages(folder, valFraction: 0, split: .train, use: .oneSize(why: "encode writes one array"))) {
            XCTAssertTrue("\($0)".contains("the images differ in size: a.png is 8x8 but b.png is 12x12; encode writes one array of one size"), "\($0)")
        }
        XCTAssertEqual(try model.loadImages(folder, valFraction: 0, split: .train, use: .anySize).count, 2)
        XCTAssertEqual(try model.loadImages(folder, valFraction: 0, split: .train, limit: 1, use: .oneSize(why: "x")).count, 1)
    }

    func testAModelTrainedOnCropsIsEvaluatedOnCropsOfThatSide() throws {
        let model = try TrainedModel(path: try weights(.unet(UNetSpec(channels: 1, widths: [4, 4])), patch: 4))
        XCTAssertEqual(model.trainingPatch, 4)
        let data = Dataset(count: 3, height: 8, width: 8, pixels: [UInt8](repeating: 1, count: 192), labels: [0, 0, 0], source: "d")
        let crops = try model.evaluationImages(data)
        XCTAssertEqual([crops.height, crops.width], [4, 4])
        XCTAssertEqual(crops.count, TrainingRun.evalPatches)
    }

    func testADenoiseJobPlansEverythingThenWrites() throws {
        let model = try TrainedModel(path: try weights(.unet(UNetSpec(channels: 1, widths: [4, 4]))))
        let folder = dir + "/in"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for (name, w, h) in [("a.png", 10, 6), ("b.png", 7, 9)] {
            FileManager.default.createFile(atPath: folder + "/" + name,
                                           contents: Data(PNG.encode(GrayImage(width: w, height: h, pixels: [UInt8](repeating: 99, count: w * h)))))
        }
        let job = try DenoiseJob(model: model, inputs: [folder], out: dir + "/out", addNoise: .gaussian(factor: 0.1))
        XCTAssertEqual(job.plans.map { $0.outputs.map(\.target) }, [[dir + "/out/a.png"], [dir + "/out/b.png"]])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "planning wrote something")
        var lines: [String] = []
        try job.run { lines.append($0) }
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines[1].hasPrefix("wrote \(dir)/out/b.png (7x9) and \(dir)/out/b.noisy.png: MSE to the original"), lines[1])
        XCTAssertEqual(try ImageFile.decode(path: dir + "/out/b.png", channels: 1).first?.width, 7)
        // an output onto an input is refused before anything is written
        XCTAssertThrowsError(try DenoiseJob(model: model, inputs: [folder], out: folder)) {
            XCTAssertTrue("\($0)".contains("which this command reads"), "\($0)")
        }
    }
}
