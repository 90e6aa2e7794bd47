// dae-dist encode: the trained encoder's features of a whole split, as a safetensors file.

import ArgumentParser
import DAE
import Foundation

struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the encoder's code of every image of a split (and the labels) to a safetensors file.",
        discussion: """
            The file holds 'features' [N, 64, 7, 7] for the reference model ([N, units] for a stacked model) and 'labels' [N]
            (uint8), readable with safetensors.numpy.load_file. Images are encoded clean (no noise).
            """)

    @OptionGroup var trained: CheckpointOptions
    @Option(help: "Which images.") var split = Split.test
    @Option(help: "Output file (.safetensors).") var out: String
    @OptionGroup var data: DataOptions
    @Option(parsing: .unconditional, help: "Encode the first N images only.") var limit: Int?
    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        if let limit, limit < 1 { throw flagError("--limit", "must be at least 1, got \(limit)") }
    }

    func run() throws {
        try runReportingErrors { _ in
            let threadCount = threads.count(for: SingleProcess())
            let checkpoint = try trained.file()
            try OutputPaths.check(out, flag: "--out", reading: [("the --checkpoint file", checkpoint), ("the --data path", data.path)])
            let trainedModel = try TrainedModel(path: checkpoint)
            let model = trainedModel.spec, params = trainedModel.parameters
            let images = try trainedModel.loadImages(data.path, valFraction: data.fraction, split: split, limit: limit,
                                                     use: .oneSize(why: "encode writes one feature array for images"))
            BLASThreads.set(1)
            let start = Date()
            let extractor = FeatureExtractor(.encoder(model, params), height: images.height, width: images.width, threads: threadCount,
                                             afterPhase: trainedModel.trainedPhase)
            let features = FloatBuffer(count: images.count * extractor.featureSize)
            extractor.extract(images, range: 0..<images.count, into: features.pointer)
            var metadata = model.metadata
            metadata["format"] = "dae-dist features"
            metadata["checkpoint"] = checkpoint
            metadata["split"] = split.rawValue
            metadata["source"] = images.source
            let tensors = [SafeTensor(name: "features", shape: [images.count] + extractor.featureShape, values: features.array),
                           SafeTensor(name: "labels", shape: [images.count], values: images.labels.map(Float.init), dtype: .u8)]
            try writeFileAtomically(SafeTensors.encode(tensors, metadata: metadata), to: out)
            say("wrote \(out): features [\(([images.count] + extractor.featureShape).map(String.init).joined(separator: ", "))], labels [\(images.count)] (\(String(format: "%.1f", Date().timeIntervalSince(start))) s)")
        }
    }
}
