// The model registry: every registered model round-trips through config.json's model_spec and
// through checkpoint metadata, unknown kinds are refused (never taken for another model), and
// flags a model does not take are named.

@testable import DAE
import Foundation
import XCTest

final class ModelRegistryTests: XCTestCase {
    static let models: [ModelSpec] = [.reference, .conv(ConvSpec(channels: 3, widths: [8, 16])),
                                      .unet(UNetSpec(channels: 1, widths: [4, 8, 16])),
                                      .stacked(StackedSpec(inputSize: 784, hidden: [100, 50], activation: .relu, tied: true)),
                                      ModelSpec(DnCNNSpec(channels: 3, depth: 5, width: 16))]

    func testEveryKindIsRegisteredOnceWithItsClass() {
        let kinds = ModelSpec.registry.map { $0.kind }, classes = ModelSpec.registry.map { $0.className }
        XCTAssertEqual(kinds, ["conv", "unet", "stacked", "dncnn"])
        XCTAssertEqual(classes, ["ConvDenoiser", "UNet", "StackedDenoiser", "DnCNN"])
        XCTAssertEqual(ModelSpec.kindsText, "conv, unet, stacked or dncnn")
        for model in Self.models {
            XCTAssertTrue(ModelSpec.architecture(kind: model.kind) == type(of: model.architecture), model.kind)
        }
    }

    func testSpecsRoundTripThroughJSONAndMetadata() throws {
        for model in Self.models {
            let json = try JSONEncoder().encode(model)
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: json) as? [String: Any])
            XCTAssertEqual(object["kind"] as? String, model.kind)
            XCTAssertEqual(try JSONDecoder().decode(ModelSpec.self, from: json), model)
            XCTAssertEqual(try ModelSpec(metadata: model.metadata, path: "m.safetensors"), model)
            XCTAssertEqual(model.metadata["model"], model.name)
        }
        XCTAssertNotEqual(ModelSpec.reference, .unet(UNetSpec(channels: 1, widths: [32, 64])))
    }

    func testUnknownKindsAreRefused() {
        XCTAssertThrowsError(try JSONDecoder().decode(ModelSpec.self, from: Data(#"{"kind":"restormer","depth":17}"#.utf8))) {
            XCTAssertTrue("\($0)".contains("model kind 'restormer' is not one this dae-dist knows (conv, unet, stacked or dncnn)"), "\($0)")
        }
        XCTAssertThrowsError(try ModelSpec(metadata: ["model": "Restormer"], path: "d.safetensors")) {
            XCTAssertEqual("\($0)", "d.safetensors: model 'Restormer' is not one this dae-dist knows (ConvDenoiser, UNet, StackedDenoiser, DnCNN); use the dae-dist that wrote it")
        }
    }

    func testFlagsBuildTheModelAndOnesItDoesNotTakeAreNamed() throws {
        var flags = ModelFlags()
        flags.widths = "16,32"
        XCTAssertEqual(try ModelSpec.fromFlags(kind: "unet", flags, base: nil), .unet(UNetSpec(channels: 1, widths: [16, 32])))
        // a resumed run's model carries over what the flags do not change
        flags = ModelFlags()
        flags.channels = 3
        XCTAssertEqual(try ModelSpec.fromFlags(kind: nil, flags, base: .unet(UNetSpec(channels: 1, widths: [8, 16]))),
                       .unet(UNetSpec(channels: 3, widths: [8, 16])))
        flags = ModelFlags()
        flags.hidden = "100"
        XCTAssertThrowsError(try ModelSpec.fromFlags(kind: "conv", flags, base: nil)) {
            XCTAssertEqual("\($0)", "--hidden: applies to the stacked model only, not --model conv; add --model stacked")
        }
        flags = ModelFlags()
        flags.channels = 3
        XCTAssertThrowsError(try ModelSpec.fromFlags(kind: "stacked", flags, base: nil)) {
            XCTAssertEqual("\($0)", "--channels: applies to the conv, unet and dncnn models only, not --model stacked; add --model conv or --model unet or --model dncnn")
        }
    }

    func testAConfigurationNamingAnUnknownModelIsRefused() throws {
        let dir = NSTemporaryDirectory() + "dae-registry-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(Self.configJSON.utf8)) as? [String: Any])
        // a file of an older dae-dist: model_kind only
        config["model_kind"] = "restormer"
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let older = try XCTUnwrap(RunConfiguration.load(directory: dir))
        XCTAssertThrowsError(try older.trainConfig()) {
            XCTAssertTrue("\($0)".contains("names model kind 'restormer', which this dae-dist does not know (conv, unet, stacked or dncnn)"), "\($0)")
        }
        // a newer one: model_spec of a kind this dae-dist does not know
        config["model_spec"] = ["kind": "restormer", "depth": 17]
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/config.json"))
        XCTAssertThrowsError(try RunConfiguration.load(directory: dir)) {
            XCTAssertTrue("\($0)".contains("model kind 'restormer' is not one this dae-dist knows"), "\($0)")
        }
    }

    /// config.json of a conv run written before model_spec existed.
    static let configJSON = """
        {"batch_size":20,"checkpoint_every":0,"command":"dae-dist train","data":"data/mnist","epoch_checkpoints":true,"epochs":2,
         "eval_every":1,"grid_columns":10,"height":28,"keep":3,"log_every":0,"loss":"mse","lr":0.001,"micro_batch":5,
         "model":"ConvDenoiser 1->32,64","model_kind":"conv","noise":"gaussian:0.5","parameters":27169,"reduce":"exact","seed":0,
         "threads_per_rank":2,"train_samples":60000,"width":28,"world_size":1}
        """

    func testAnOlderConfigurationStillResumes() throws {
        let dir = NSTemporaryDirectory() + "dae-registry-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(Self.configJSON.utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        XCTAssertEqual(try XCTUnwrap(RunConfiguration.load(directory: dir)).trainConfig().model, .reference)
    }
}
