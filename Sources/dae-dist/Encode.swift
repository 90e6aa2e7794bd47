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

    @Option(help: "A checkpoint or weights file (model.safetensors).") var checkpoint: String
    @Option(help: "Which images: train or test.") var split = "test"
    @Option(help: "Output file (.safetensors).") var out: String
    @Option(name: .customLong("data-dir"), help: "Folder with IDX files in MNIST's layout.") var dataDir = "data/mnist"
    @Option(help: "Encode the first N images only.") var limit: Int?
    @Option(help: "Threads (default: the machine's cores).") var threads: Int?

    func run() throws {
        try runReportingErrors { _ in
            guard let which = Split(rawValue: split.lowercased()) else { throw DAEError.badFlag("--split", "unknown split '\(split)'; use train or test") }
            if let limit, limit < 1 { throw DAEError.badFlag("--limit", "must be at least 1, got \(limit)") }
            let threadCount = try threadsPerRank(threads, SingleProcess())
            let (model, params, stored) = try Weights.loadModel(path: checkpoint)
            var data = try Dataset.load(directory: dataDir, split: which)
            if let limit { data = data.prefix(limit) }
            try model.check(height: data.height, width: data.width, source: data.source)
            BLASThreads.set(1)
            let start = Date()
            let extractor = FeatureExtractor(.encoder(model, params), height: data.height, width: data.width, threads: threadCount,
                                             afterPhase: Weights.trainedPhase(stored))
            let features = FloatBuffer(count: data.count * extractor.featureSize)
            extractor.extract(data, range: 0..<data.count, into: features.pointer)
            var metadata = model.metadata
            metadata["format"] = "dae-dist features"
            metadata["checkpoint"] = checkpoint
            metadata["split"] = which.rawValue
            metadata["source"] = data.source
            let tensors = [SafeTensor(name: "features", shape: [data.count] + extractor.featureShape, values: features.array),
                           SafeTensor(name: "labels", shape: [data.count], values: data.labels.map(Float.init), dtype: .u8)]
            try writeFileAtomically(SafeTensors.encode(tensors, metadata: metadata), to: out)
            say("wrote \(out): features [\(([data.count] + extractor.featureShape).map(String.init).joined(separator: ", "))], labels [\(data.count)] (\(String(format: "%.1f", Date().timeIntervalSince(start))) s)")
        }
    }
}
