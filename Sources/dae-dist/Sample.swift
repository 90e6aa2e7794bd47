// dae-dist sample: generate digits by running Markov chains of corrupt-then-denoise steps.

import ArgumentParser
import DAE
import Foundation

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample new images from a trained denoising autoencoder (corrupt, denoise, repeat).",
        discussion: "Writes DIR/samples.png (final states), DIR/chains.png (a row per chain, a column every --every steps), DIR/samples.idx and DIR/summary.json. See docs/sampling.md. --data gives the test images (--start test, the quality line) and the classifier's training images.")

    @OptionGroup var trained: CheckpointOptions
    @Option(parsing: .unconditional, help: "Number of chains.") var chains = 16
    @Option(parsing: .unconditional, help: "Steps per chain (40: see docs/sampling.md for why not more with an MSE-trained model).") var steps = 40
    @Option(name: .customLong("burn-in"), parsing: .unconditional, help: "Steps before a chain's states count as samples (the quality line measures the recorded states from then on).")
    var burnIn = 10
    @Option(parsing: .unconditional, help: "Keep a chain's state every N steps for chains.png.") var every = 4
    @Option(help: "Corruption of each step, F >= 0 and P in [0,1] (default: the checkpoint's training noise, else gaussian:0.5).")
    var noise: NoiseKind?
    @Option(help: "Start from uniform noise or from test images.") var start = SampleConfig.Start.noise
    @Option(parsing: .unconditional, help: "Seed of the chains' randomness.") var seed: UInt64 = 0
    @Flag(help: "Sample each pixel from Bernoulli(reconstruction) instead of taking the reconstruction itself.") var binarize = false
    @Option(help: "Output folder.") var out: String
    @OptionGroup var data: DataOptions
    @Option(name: .customLong("classifier-epochs"), parsing: .unconditional, help: "Epochs of the pixel classifier used to judge the samples (0: skip the quality line).")
    var classifierEpochs = 3
    @Flag(name: .customLong("no-untrained-baseline"), help: "Skip the comparison with chains from an untrained model.")
    var noUntrainedBaseline = false
    @OptionGroup var threads: ThreadOptions

    /// The chains' settings from the flags; the noise is settled in run() (it may come from the checkpoint).
    var config: SampleConfig {
        var config = SampleConfig()
        config.chains = chains; config.steps = steps; config.burnIn = burnIn; config.every = every
        config.seed = seed; config.binarize = binarize; config.start = start
        return config
    }

    func validate() throws {
        try validating { () throws(DAEError) in try config.validate() }
        guard classifierEpochs >= 0 else { throw flagError("--classifier-epochs", "must be 0 or more, got \(classifierEpochs)") }
    }

    /// The outputs, checked before the chains run: --out must be a folder (or not exist yet) and
    /// none of the files written into it may be an input or a trained model's file.
    func checkOutputs(checkpoint: String) throws(DAEError) {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: out, isDirectory: &isFolder), !isFolder.boolValue {
            throw DAEError.badFlag("--out", "\(out) is a file; sample writes a folder of outputs: choose a folder (created if missing)")
        }
        var outputs = OutputPaths(reading: [("the --checkpoint file", checkpoint), ("the --data path", data.path)])
        for name in Self.outputNames { try outputs.claim(out + "/" + name, flag: "--out") }
    }

    static let outputNames = ["samples.png", "chains.png", "samples.idx", "summary.json"]

    func run() throws {
        try runReportingErrors { communicatorSlot in
            let communicator = try Launch.makeCommunicator()
            communicatorSlot = communicator
            let isRoot = communicator.rank == 0
            var config = self.config
            let threadCount = threads.count(for: communicator)
            let checkpoint = try trained.file()
            try checkOutputs(checkpoint: checkpoint)
            let trainedModel = try TrainedModel(path: checkpoint)
            let model = trainedModel.spec, params = trainedModel.parameters
            config.noise = try noise ?? trainedModel.trainingNoise()
            let layout = model.makeLayout()
            // chains and the quality line's digit classifier work on gray images of one size
            guard model.channels == 1 else {
                throw DAEError.checkpoint(path: checkpoint, problem: "sample runs chains of gray models; this \(model.description) model takes \(model.channels) channels")
            }
            let test = try trainedModel.loadImages(data.path, valFraction: data.fraction, split: .test,
                                                   use: .oneSize(why: "sample runs its chains on images"))
            // The quality line's classifier learns from the training images and then judges test
            // images and samples (test-sized), so all must be of one size. Rank 0 alone writes the
            // outputs; it loads and checks the training set before the chains run, not after.
            var train: Dataset? = nil
            if isRoot && classifierEpochs > 0 {
                let loaded = try Dataset.load(path: data.path, valFraction: data.fraction, split: .train, channels: 1)
                guard loaded.height == test.height && loaded.width == test.width else {
                    throw DAEError.data(path: data.path, problem: "test images are \(test.height)x\(test.width) but training images \(loaded.height)x\(loaded.width); the classifier of the quality line needs one size (or pass --classifier-epochs 0)")
                }
                train = loaded
            }
            BLASThreads.set(1)

            let started = Date()
            let phase = trainedModel.trainedPhase
            let sampler = Sampler(config: config, model: model, parameters: params, height: test.height, width: test.width, test: test,
                                  communicator: communicator, threads: threadCount, afterPhase: phase)
            sampler.run()
            var untrained: Sampler? = nil
            if !noUntrainedBaseline {
                let random = FloatBuffer(count: layout.count)
                initializeParameters(random, layout: layout, seed: seed)
                untrained = Sampler(config: config, model: model, parameters: random, height: test.height, width: test.width, test: test,
                                    communicator: communicator, threads: threadCount, afterPhase: phase)
                untrained!.run()
            }
            let chainSeconds = Date().timeIntervalSince(started)
            if isRoot {
                do {
                    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                } catch {
                    throw DAEError.write(path: out, problem: "cannot create the output folder")
                }
                let finals = sampler.finalStates
                let columns = min(config.chains, 8)
                try writeFileAtomically(PNG.encode(Grid.make(finals, height: test.height, width: test.width, columns: columns)),
                                        to: out + "/samples.png")
                var strip: [[Float]] = []
                for c in 0..<config.chains { for f in 0..<config.frameSteps.count { strip.append(sampler.frame(chain: c, frame: f)) } }
                try writeFileAtomically(PNG.encode(Grid.make(strip, height: test.height, width: test.width, columns: config.frameSteps.count)),
                                        to: out + "/chains.png")
                let bytes = finals.flatMap { $0.map { UInt8(min(max($0 * 255 + 0.5, 0), 255)) } }
                try writeFileAtomically(IDX.encode(dims: [config.chains, test.height, test.width], values: bytes), to: out + "/samples.idx")
                say("dae-dist sample: \(config.chains) chains x \(config.steps) steps, noise \(config.noise), start \(config.start.rawValue)\(config.binarize ? ", binarized" : ""), \(communicator.size) rank(s), \(String(format: "%.1f", chainSeconds)) s")

                var summary = SampleSummary(checkpoint: checkpoint, chains: config.chains, steps: config.steps, burnIn: config.burnIn,
                                            every: config.every, noise: config.noise.description, start: config.start.rawValue,
                                            binarize: config.binarize, seed: config.seed, worldSize: communicator.size)
                if let train {
                    let q = try SampleQualityLine.measure(sampler: sampler, untrained: untrained, chains: config.chains, train: train,
                                                          test: test, epochs: classifierEpochs, seed: seed)
                    summary.classifier = .init(kind: q.classifierKind, epochs: q.classifierEpochs, testAccuracy: q.classifierTestAccuracy)
                    summary.samples = q.samples
                    summary.samplesMeasured = q.samplesMeasured
                    summary.testImages = q.testImages
                    summary.untrainedModelSamples = q.untrainedModelSamples
                    say(String(format: "classifier: %@ on pixels, %d epochs, test accuracy %.2f%%", q.classifierKind, q.classifierEpochs, 100 * q.classifierTestAccuracy))
                    say("samples:         " + q.samples.summary + "  (\(q.samplesMeasured) states at steps >= \(max(config.burnIn, 1)))")
                    say("test images:     " + q.testImages.summary)
                    if let baseline = q.untrainedModelSamples { say("untrained model: " + baseline.summary) }
                }
                try writeFileAtomically(Array((jsonLine(summary) + "\n").utf8), to: out + "/summary.json")
                say("wrote \(out)/samples.png, chains.png, samples.idx, summary.json")
            }
            communicator.barrier()
        }
    }
}

/// DIR/summary.json: the sampling settings and, with the quality line, its figures.
struct SampleSummary: Encodable {
    struct Classifier: Encodable {
        var kind: String, epochs: Int, testAccuracy: Double
        enum CodingKeys: String, CodingKey { case kind, epochs, testAccuracy = "test_accuracy" }
    }
    var checkpoint: String, chains: Int, steps: Int, burnIn: Int, every: Int
    var noise: String, start: String, binarize: Bool, seed: UInt64, worldSize: Int
    var classifier: Classifier? = nil
    var samples: SampleQuality? = nil
    var samplesMeasured: Int? = nil
    var testImages: SampleQuality? = nil
    var untrainedModelSamples: SampleQuality? = nil

    enum CodingKeys: String, CodingKey {
        case checkpoint, chains, steps, burnIn = "burn_in", every, noise, start, binarize, seed, worldSize = "world_size"
        case classifier, samples, samplesMeasured = "samples_measured", testImages = "test_images"
        case untrainedModelSamples = "untrained_model_samples"
    }
}
