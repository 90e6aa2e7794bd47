// The sample command's quality line, callable from a script: a digit classifier trained on the
// training images judges the chains' samples after burn-in, real test images (the same count as
// the chains) and, when given, an untrained model's samples, with the nearest-training-image
// distance and pixel statistics (SampleQuality, Sampler.swift). What `dae-dist sample` prints and
// writes in summary.json.

public struct SampleQualityLine: Sendable {
    public var classifierKind: String
    public var classifierEpochs: Int
    public var classifierTestAccuracy: Double
    /// The trained model's samples after burn-in, and how many were measured.
    public var samples: SampleQuality
    public var samplesMeasured: Int
    /// As many real test images as there are chains.
    public var testImages: SampleQuality
    /// The untrained model's samples (nil without that baseline).
    public var untrainedModelSamples: SampleQuality?

    /// Trains the classifier on `train` for `epochs` (seeded by `seed`) and measures.
    public static func measure(sampler: Sampler, untrained: Sampler?, chains: Int, train: Dataset, test: Dataset,
                               epochs: Int, seed: UInt64) throws(DAEError) -> SampleQualityLine {
        let classifier = DigitClassifier(inputs: train.imageSize, seed: seed)
        try classifier.train(on: train, epochs: epochs, seed: seed)
        let accuracy = try classifier.accuracy(on: test)
        let states = sampler.statesAfterBurnIn
        let real = (0..<chains).map { i in
            var image = [Float](repeating: 0, count: test.imageSize)
            image.withUnsafeMutableBufferPointer { test.image(i % test.count, into: $0.baseAddress!) }
            return image
        }
        return SampleQualityLine(classifierKind: classifier.architecture, classifierEpochs: epochs, classifierTestAccuracy: accuracy,
                                 samples: SampleQuality.measure(states, classifier: classifier, training: train),
                                 samplesMeasured: states.count,
                                 testImages: SampleQuality.measure(real, classifier: classifier, training: train),
                                 untrainedModelSamples: untrained.map { SampleQuality.measure($0.statesAfterBurnIn, classifier: classifier, training: train) })
    }
}
