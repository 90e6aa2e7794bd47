// A trained model ready to use: the one start-up of every command that applies one (eval,
// denoise, encode, probe, sample) and of scripts that do the same. It finds the file (a folder or
// a missing path named with what to pass instead), reads the model and its parameters, and loads
// data checked against the model: its channels, one image size where the use needs one (with the
// advice that applies), sides the model takes.

import Foundation

public struct TrainedModel {
    /// The checkpoint or weights file it was read from.
    public let path: String
    public let spec: ModelSpec
    public let parameters: FloatBuffer
    /// The file's metadata: what it was trained with (noise, seed, patch, image size, phase).
    public let metadata: [String: String]

    /// Reads the checkpoint or weights file at `path` (`flag` names it in errors: --checkpoint).
    public init(path: String, flag: String = "--checkpoint") throws(DAEError) {
        try Self.checkFile(path, flag: flag)
        let (spec, parameters, metadata) = try Weights.loadModel(path: path)
        self.path = path; self.spec = spec; self.parameters = parameters; self.metadata = metadata
    }

    /// The image autoencoder to use: a stacked model saved during pre-training is the layers
    /// trained so far (Weights.trainedPhase).
    public var trainedPhase: Int { Weights.trainedPhase(metadata) }
    /// The noise it was trained with (files that do not say: the reference recipe's).
    public func trainingNoise() throws(DAEError) -> NoiseKind { try NoiseKind(parsing: metadata["noise"] ?? "gaussian:0.5") }
    /// The seed it was trained with (0 when the file does not say).
    public var trainingSeed: UInt64 { metadata["seed"].flatMap { UInt64($0) } ?? 0 }
    /// The side of the crops it was trained on, if it was trained on crops.
    public var trainingPatch: Int? { metadata["patch"].flatMap { Int($0) } }

    /// A path that is a folder or cannot be read, named before anything reads it: a run
    /// directory gets the weights file in it suggested, a path into a run still training (no
    /// model.safetensors yet) its newest checkpoint.
    public static func checkFile(_ path: String, flag: String = "--checkpoint") throws(DAEError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            let weights = (path as NSString).appendingPathComponent("model.safetensors")
            let hint = FileManager.default.fileExists(atPath: weights) ? "; did you mean \(weights)?" : ""
            throw DAEError.checkpoint(path: path, problem: "is a folder; pass \(flag) a checkpoint file (<run-dir>/checkpoints/step-N.safetensors) or weights file (<run-dir>/model.safetensors)\(hint)")
        }
        guard FileManager.default.isReadableFile(atPath: path) else {
            let folder = (path as NSString).deletingLastPathComponent
            let newest = [folder, (folder as NSString).deletingLastPathComponent].lazy
                .compactMap { Checkpoint.list(in: ($0 as NSString).appendingPathComponent("checkpoints")).first }.first
            let advice = newest.map { "; the newest checkpoint of that run is \($0)" }
                ?? "; pass a checkpoint (<run-dir>/checkpoints/step-N.safetensors) or a run's weights file (<run-dir>/model.safetensors, written when its training ends)"
            throw DAEError.badFlag(flag, "\(path): \(unreadableReason(path))\(advice)")
        }
    }

    /// What a use of the model needs of the images it loads.
    public enum ImageUse {
        /// Whole images of one size; `why` says why in the advice ("eval scores whole images").
        case oneSize(why: String)
        /// Any sizes (each image goes through alone, or in crops).
        case anySize
    }

    /// The images of `split` at `dataPath`, with the model's channels, the first `limit` of them,
    /// checked for `use` and against the model's sides. Every rank of `communicator` loads them.
    public func loadImages(_ dataPath: String, valFraction: Double, split: Split, limit: Int? = nil, use: ImageUse,
                           communicator: Communicator = SingleProcess(), threads: Int = 1) throws(DAEError) -> Dataset {
        let data = try Dataset.load(path: dataPath, valFraction: valFraction, split: split, channels: spec.channels, limit: limit,
                                    communicator: communicator, threads: threads)
        if case .oneSize(let why) = use {
            try requireOneSize(data, why: why)
            try spec.check(height: data.height, width: data.width, channels: data.channels, source: data.source)
        }
        return data
    }

    /// Refuses images of several sizes where `why` needs one: names two that differ, the size the
    /// model was trained on when the file says, and the ways out (one size, or denoise, which
    /// takes any size).
    public func requireOneSize(_ data: Dataset, why: String) throws(DAEError) {
        guard let shapes = data.shapes, let first = shapes.first,
              let other = shapes.firstIndex(where: { $0.height != first.height || $0.width != first.width }) else { return }
        func name(_ i: Int) -> String { data.names?[i] ?? "image \(i)" }
        func size(_ s: ImageShape) -> String { "\(s.width)x\(s.height)" }
        let trained = metadata["image_size"].map { $0.split(separator: "x") }.flatMap { $0.count == 2 ? " (the model was trained on \($0[1])x\($0[0]) images)" : nil } ?? ""
        throw DAEError.data(path: data.source, problem: "the images differ in size: \(name(0)) is \(size(first)) but \(name(other)) is \(size(shapes[other])); \(why) of one size\(trained): resize them to one size, or use dae-dist denoise for images of other sizes (it takes any size; --reference scores one against its clean version)")
    }

    /// The evaluation images of `data` as training scored them: for a model trained on crops, fixed
    /// crops of that side (at least TrainingRun.evalPatches); else the whole images, of one size.
    public func evaluationImages(_ data: Dataset) throws(DAEError) -> Dataset {
        guard let patch = trainingPatch else {
            try requireOneSize(data, why: "eval scores whole images")
            try spec.check(height: data.height, width: data.width, channels: data.channels, source: data.source)
            return data
        }
        try TrainingSamples(data: data, patches: PatchSampling(size: patch), seed: 0).check()
        let crops = data.fixedCrops(size: patch, count: max(data.count, TrainingRun.evalPatches))
        try spec.check(height: crops.height, width: crops.width, channels: crops.channels, source: crops.source)
        return crops
    }
}
