// dae-dist eval: scores any checkpoint or weights file on the test set.

import ArgumentParser
import DAE
import Foundation

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a checkpoint or weights file on the test set: MSE, PSNR and SSIM against the clean images.",
        discussion: "The noisy input's scores are printed as the baseline to beat. Under mpirun the test set is split over the ranks; the figures are the same on any number of ranks.")

    @OptionGroup var trained: CheckpointOptions
    @Option(help: "Corruption of the test inputs, F >= 0 and P in [0,1] (default: the checkpoint's, else gaussian:0.5).")
    var noise: NoiseKind?
    @OptionGroup var data: DataOptions
    @Option(parsing: .unconditional, help: "Seed of the fixed noise draw (default: the checkpoint's, else 0).") var seed: UInt64?
    @Option(parsing: .unconditional, help: "Evaluate on the first N test images only.") var limit: Int?
    @OptionGroup var threads: ThreadOptions
    @Option(help: "Also write the sample grid (noisy / reconstructed / clean) to this PNG file.") var grid: String?
    @Option(name: .customLong("grid-columns"), parsing: .unconditional, help: "Test images per row of the grid.") var gridColumns = 10
    @Flag(help: "Print the metrics as one JSON object.") var json = false

    func validate() throws {
        if let limit, limit < 1 { throw flagError("--limit", "must be at least 1, got \(limit)") }
        guard gridColumns >= 1 && gridColumns <= 1000 else { throw flagError("--grid-columns", "must be between 1 and 1000, got \(gridColumns)") }
    }

    func run() throws {
        try runReportingErrors { communicatorSlot in
            let communicator = try Launch.makeCommunicator()
            communicatorSlot = communicator
            let threadCount = threads.count(for: communicator)
            let checkpoint = try trained.file()
            if let grid { try OutputPaths.check(grid, flag: "--grid", reading: [("the --checkpoint file", checkpoint), ("the --data path", data.path)]) }
            let trainedModel = try TrainedModel(path: checkpoint)
            let model = trainedModel.spec, params = trainedModel.parameters
            let noiseKind = try noise ?? trainedModel.trainingNoise()
            let noiseSeed = seed ?? trainedModel.trainingSeed
            // a model trained on crops is scored as training scored it: fixed crops of that side
            let test = try trainedModel.evaluationImages(
                trainedModel.loadImages(data.path, valFraction: data.fraction, split: .test, limit: limit, use: .anySize))
            BLASThreads.set(1)
            let evaluator = Evaluator(model: model, data: test, noise: noiseKind, seed: noiseSeed, parameters: params, communicator: communicator,
                                      threads: threadCount)
            evaluator.setPhase(trainedModel.trainedPhase)
            let start = Date()
            let metrics = evaluator.evaluate()
            if communicator.rank == 0 {
                if json {
                    say(jsonLine(EvalLine(metrics: metrics, checkpoint: trained.checkpoint, noise: noiseKind.description)))
                } else {
                    say("\(checkpoint): \(metrics.images) test images, noise \(noiseKind), \(communicator.size) rank(s), \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
                    say(metrics.summary)
                }
                if let grid {
                    let image = Grid.make(evaluator.sampleImages(columns: gridColumns), channels: test.channels, height: test.height, width: test.width,
                                          columns: gridColumns)
                    try writeFileAtomically(PNG.encode(image), to: grid)
                    if !json { say("wrote \(grid)") }
                }
            }
            communicator.barrier()
        }
    }
}

/// `eval --json`: the metrics (metrics.jsonl's keys) with what was evaluated, as one object.
struct EvalLine: Encodable {
    var metrics: EvalMetrics, checkpoint: String, noise: String
    enum CodingKeys: String, CodingKey { case checkpoint, noise }
    func encode(to encoder: Encoder) throws {
        try metrics.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(checkpoint, forKey: .checkpoint)
        try container.encode(noise, forKey: .noise)
    }
}
