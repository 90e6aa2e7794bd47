// dae-dist probe: how useful the learned features are, as a linear classifier's test accuracy.

import ArgumentParser
import DAE
import Foundation

struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a linear softmax classifier on the encoder's features and report its test accuracy, next to raw pixels and an untrained encoder.",
        discussion: """
            Each classifier is full-batch Adam on standardised features of the training set. Under mpirun every rank holds
            the features of its share of the training set; the results are the same on any number of ranks.
            """)

    @OptionGroup var trained: CheckpointOptions
    @Option(parsing: .unconditional, help: "Full-batch Adam iterations per classifier.") var iterations = 300
    @Option(parsing: .unconditional, help: "Adam learning rate.") var lr: Float = 0.01
    @Option(name: .customLong("weight-decay"), parsing: .unconditional, help: "L2 penalty on the classifier's weights (weight-decay/2 * |W|^2).") var weightDecay: Float = 1e-3
    @OptionGroup var data: DataOptions
    @Option(parsing: .unconditional, help: "Train the classifier on the first N training images only.") var limit: Int?
    @Option(name: .customLong("test-limit"), parsing: .unconditional, help: "Score on the first N test images only.") var testLimit: Int?
    @Option(parsing: .unconditional, help: "Seed of the untrained encoder's initialisation.") var seed: UInt64 = 0
    @Flag(name: .customLong("no-baselines"), help: "Probe only the checkpoint's features (not raw pixels nor an untrained encoder).")
    var noBaselines = false
    @OptionGroup var threads: ThreadOptions
    @Flag(help: "Print each result as one JSON object.") var json = false

    func validate() throws {
        guard iterations >= 1 else { throw flagError("--iterations", "must be at least 1, got \(iterations)") }
        guard lr.isFinite, lr > 0 else { throw flagError("--lr", "must be a positive number, got \(lr)") }
        guard weightDecay.isFinite, weightDecay >= 0 else { throw flagError("--weight-decay", "must be 0 or more, got \(weightDecay)") }
        if let limit, limit < 1 { throw flagError("--limit", "must be at least 1, got \(limit)") }
        if let testLimit, testLimit < 1 { throw flagError("--test-limit", "must be at least 1, got \(testLimit)") }
    }

    func run() throws {
        try runReportingErrors { communicatorSlot in
            let communicator = try Launch.makeCommunicator()
            communicatorSlot = communicator
            let threadCount = threads.count(for: communicator)
            let checkpoint = try trained.file()
            let trainedModel = try TrainedModel(path: checkpoint)
            let model = trainedModel.spec, params = trainedModel.parameters
            let use = TrainedModel.ImageUse.oneSize(why: "probe encodes whole images")
            let train = try trainedModel.loadImages(data.path, valFraction: data.fraction, split: .train, limit: limit, use: use,
                                                    communicator: communicator, threads: threadCount)
            let test = try trainedModel.loadImages(data.path, valFraction: data.fraction, split: .test, limit: testLimit, use: use,
                                                   communicator: communicator, threads: threadCount)
            if test.height != train.height || test.width != train.width {
                throw DAEError.data(path: test.source, problem: "test images are \(test.height)x\(test.width) but training images \(train.height)x\(train.width)")
            }
            let phase = trainedModel.trainedPhase
            BLASThreads.set(1)
            var config = ProbeConfig()
            config.iterations = iterations
            config.lr = lr
            config.weightDecay = weightDecay
            var rows: [(String, FeatureExtractor.Source)] = []
            if !noBaselines {
                let random = FloatBuffer(count: model.makeLayout().count)
                initializeParameters(random, layout: model.makeLayout(), seed: seed)
                rows += [("raw pixels", .pixels), ("untrained encoder (seed \(seed))", .encoder(model, random))]
            }
            rows.append(("trained encoder", .encoder(model, params)))
            if communicator.rank == 0 && !json {
                say("linear probe: \(train.count) training / \(test.count) test images, \(iterations) full-batch Adam iterations, lr \(lr), weight decay \(weightDecay), \(communicator.size) rank(s)")
                say("features of \(checkpoint) (\(model.description))")
                say("  " + "features".padding(toLength: 32, withPad: " ", startingAt: 0) + "    dims  train loss  train acc  test acc  seconds")
            }
            let pool = WorkerPool(threads: threadCount)     // one set of threads for every extractor and probe
            for (name, source) in rows {
                let extractor = FeatureExtractor(source, height: train.height, width: train.width, pool: pool, afterPhase: phase)
                let probe = LinearProbe(features: extractor, train: train, test: test, config: config,
                                        communicator: communicator, pool: pool)
                let r = try probe.run()
                guard communicator.rank == 0 else { continue }
                if json {
                    say(jsonLine(ProbeLine(features: name, dims: r.features, trainLoss: r.trainLoss, trainAccuracy: r.trainAccuracy,
                                           testAccuracy: r.testAccuracy, seconds: r.seconds, checkpoint: checkpoint,
                                           iterations: iterations, trainImages: train.count, testImages: test.count)))
                } else {
                    say("  " + name.padding(toLength: 32, withPad: " ", startingAt: 0)
                        + String(format: " %7d  %10.4f  %8.2f%%  %7.2f%%  %7.1f", r.features, r.trainLoss, 100 * r.trainAccuracy, 100 * r.testAccuracy, r.seconds))
                }
            }
            communicator.barrier()
        }
    }
}

/// `probe --json`: one object per feature set.
struct ProbeLine: Encodable {
    var features: String, dims: Int, trainLoss: Double, trainAccuracy: Double, testAccuracy: Double, seconds: Double
    var checkpoint: String?, iterations: Int, trainImages: Int, testImages: Int
    enum CodingKeys: String, CodingKey {
        case features, dims, trainLoss = "train_loss", trainAccuracy = "train_accuracy", testAccuracy = "test_accuracy", seconds
        case checkpoint, iterations, trainImages = "train_images", testImages = "test_images"
    }
}
