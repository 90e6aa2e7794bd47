// Sampling chains: deterministic for a seed, independent of the thread count, the right shapes,
// and on a briefly trained model the states move away from noise towards the data's statistics.

import DAE
import Foundation
import XCTest

final class SamplingTests: XCTestCase {
    static let test: Dataset = try! Dataset.load(directory: repositoryRoot + "/data/mnist", split: .test).prefix(50)

    func makeSampler(_ config: SampleConfig, params: FloatBuffer, threads: Int) -> Sampler {
        Sampler(config: config, parameters: params, height: 28, width: 28, test: Self.test, threads: threads)
    }

    func randomParameters(seed: UInt64) -> FloatBuffer {
        let layout = ConvDenoiser.makeLayout()
        let params = FloatBuffer(count: layout.count)
        initializeParameters(params, layout: layout, seed: seed)
        return params
    }

    func testChainsAreDeterministicAndIndependentOfThreads() {
        var config = SampleConfig()
        config.chains = 11; config.steps = 6; config.every = 2; config.burnIn = 2
        let params = randomParameters(seed: 1)
        let a = makeSampler(config, params: params, threads: 1), b = makeSampler(config, params: params, threads: 3)
        a.run(); b.run()
        XCTAssertEqual(config.frameSteps, [0, 2, 4, 6])
        XCTAssertEqual(a.finalStates, b.finalStates)
        XCTAssertEqual(a.statesAfterBurnIn.count, 11 * 3)
        config.seed = 2
        let c = makeSampler(config, params: params, threads: 1)
        c.run()
        XCTAssertNotEqual(a.finalStates, c.finalStates)
        // binarized chains hold only 0 and 1; test starts begin at the test images
        config.binarize = true; config.start = .test
        let d = makeSampler(config, params: params, threads: 2)
        d.run()
        XCTAssertTrue(d.finalStates.allSatisfy { $0.allSatisfy { $0 == 0 || $0 == 1 } })
        var first = [Float](repeating: 0, count: 784)
        first.withUnsafeMutableBufferPointer { Self.test.image(0, into: $0.baseAddress!) }
        XCTAssertEqual(d.frame(chain: 0, frame: 0), first)
        config.steps = 7; config.every = 3
        XCTAssertEqual(config.frameSteps, [0, 3, 6, 7])
    }

    func testSamplesOfATrainedModelMoveTowardsTheData() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(400)
        var train = TrainConfig()
        train.epochs = 3
        let run = try makeRun(train, data: data, threads: 2)
        try run.run()
        let trainer = run.trainer
        var config = SampleConfig()
        config.chains = 8; config.steps = 10; config.every = 5
        let sampler = makeSampler(config, params: trainer.params, threads: 2)
        sampler.run()
        // The statistics: the mean pixel and the share of bright pixels (> 0.5). Uniform noise has
        // 0.5 and 50%, MNIST about 0.13 and 10%; the chains' states must move most of the way.
        func stats(_ images: [[Float]]) -> (mean: Double, bright: Double) {
            let all = images.flatMap { $0 }
            return (all.map(Double.init).reduce(0, +) / Double(all.count), Double(all.filter { $0 > 0.5 }.count) / Double(all.count))
        }
        let real = stats((0..<400).map { i in
            var image = [Float](repeating: 0, count: 784)
            image.withUnsafeMutableBufferPointer { data.image(i, into: $0.baseAddress!) }
            return image
        })
        let start = stats((0..<8).map { sampler.frame(chain: $0, frame: 0) })
        let end = stats(sampler.finalStates)
        XCTAssertEqual(start.mean, 0.5, accuracy: 0.02)
        XCTAssertLessThan(abs(end.mean - real.mean), 0.25 * abs(start.mean - real.mean), "mean pixel: start \(start), samples \(end), data \(real)")
        XCTAssertLessThan(abs(end.bright - real.bright), 0.5 * abs(start.bright - real.bright), "bright share: start \(start), samples \(end), data \(real)")
    }

    func testSampleQualityOfRealDigits() {
        let images: [[Float]] = (0..<10).map { i in
            var image = [Float](repeating: 0, count: 784)
            image.withUnsafeMutableBufferPointer { Self.test.image(i, into: $0.baseAddress!) }
            return image
        }
        let classifier = DigitClassifier(inputs: 784, seed: 0)
        let quality = SampleQuality.measure(images, classifier: classifier, training: Self.test)
        // every image is in the "training" set here: nearest distance 0
        XCTAssertEqual(quality.meanNearestTrainingDistance, 0, accuracy: 1e-2)   // |a|^2 + |b|^2 - 2ab in float
        // the histogram against a count made here from the classifier's own probabilities
        var probabilities = [Float](repeating: 0, count: 10 * classifier.classes), expected = [Int](repeating: 0, count: classifier.classes)
        classifier.predict(images.flatMap { $0 }, n: 10, probabilities: &probabilities)
        for i in 0..<10 {
            let row = Array(probabilities[(i * classifier.classes)..<((i + 1) * classifier.classes)])
            expected[row.firstIndex(of: row.max()!)!] += 1
        }
        XCTAssertEqual(quality.classHistogram, expected)
        XCTAssertGreaterThan(quality.fractionDark, 0.6)
    }

    func testBadSampleSettingsAreRejected() {
        var config = SampleConfig()
        config.chains = 0
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".hasPrefix("--chains:")) }
        config = SampleConfig(); config.burnIn = 100
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".hasPrefix("--burn-in:")) }
        config = SampleConfig(); config.every = 0
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".hasPrefix("--every:")) }
    }
}
