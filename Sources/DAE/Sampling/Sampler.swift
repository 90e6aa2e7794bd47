// Sampling from a trained denoising autoencoder (Bengio, Yao, Alain and Vincent, "Generalized
// Denoising Auto-Encoders as Generative Models", NeurIPS 2013): the DAE defines a Markov chain
//
//   x_0 = a start (uniform noise, or a test image)
//   x_t = denoise(corrupt(x_{t-1}))      corrupt: the training noise; denoise: the model's output,
//                                        or (--binarize) a Bernoulli draw of each pixel from it
//
// whose states, after a burn-in, look like samples of the data. Chains run in fixed groups of 8
// (one batched forward per group and step); ranks take contiguous runs of groups and worker threads
// take turns, and every random number is keyed by (seed, step, chain), so the chains are the same
// on any number of ranks and threads.

import Foundation

public struct SampleConfig: Sendable {
    public enum Start: String, Sendable { case noise, test }
    public var chains = 16
    public var steps = 40
    public var burnIn = 10
    public var every = 4
    public var noise = NoiseKind.gaussian(factor: 0.5)
    public var start = Start.noise
    public var seed: UInt64 = 0
    public var binarize = false
    public init() {}

    public func validate() throws(DAEError) {
        guard chains >= 1 && chains <= 100_000 else { throw .badFlag("--chains", "must be between 1 and 100000, got \(chains)") }
        guard steps >= 1 else { throw .badFlag("--steps", "must be at least 1, got \(steps)") }
        guard burnIn >= 0 && burnIn <= steps else { throw .badFlag("--burn-in", "must be between 0 and --steps (\(steps)), got \(burnIn)") }
        guard every >= 1 && every <= steps else { throw .badFlag("--every", "must be between 1 and --steps (\(steps)), got \(every)") }
    }

    /// The steps at which a chain's state is kept for the film strip: 0, every, 2*every, ..., steps.
    public var frameSteps: [Int] { Array(Swift.stride(from: 0, through: steps, by: every)) + (steps % every == 0 ? [] : [steps]) }
}

public final class Sampler: @unchecked Sendable {
    public static let group = 8
    public let config: SampleConfig
    let height: Int, width: Int
    let test: Dataset?
    let communicator: Communicator
    let pool: WorkerPool
    let workers: [DenoisingNetwork]                    // one per pool thread
    public let frames: UnsafeMutablePointer<Float>     // [chain][frame][pixel]
    let frameCount: Int

    /// `afterPhase`: for a stacked checkpoint saved during pre-training, the layers trained so far
    /// (`Weights.trainedPhase`), as `eval`, `denoise`, `encode` and `probe` use. `pool` runs the
    /// chains (a network per pool thread).
    public init(config: SampleConfig, model: ModelSpec = .reference, parameters: FloatBuffer, height: Int, width: Int, test: Dataset?,
                communicator: Communicator = SingleProcess(), pool: WorkerPool, afterPhase: Int = Int.max) {
        self.config = config; self.height = height; self.width = width; self.test = test; self.communicator = communicator
        self.pool = pool
        workers = (0..<pool.count).map { _ in
            model.makeImageAutoencoder(height: height, width: width, capacity: Self.group, parameters: parameters, afterPhase: afterPhase)
        }
        frameCount = config.frameSteps.count
        frames = .allocate(capacity: config.chains * frameCount * height * width)
    }

    /// As above, with a pool of its own of `threads` threads.
    public convenience init(config: SampleConfig, model: ModelSpec = .reference, parameters: FloatBuffer, height: Int, width: Int, test: Dataset?,
                            communicator: Communicator = SingleProcess(), threads: Int = 1, afterPhase: Int = Int.max) {
        self.init(config: config, model: model, parameters: parameters, height: height, width: width, test: test,
                  communicator: communicator, pool: WorkerPool(threads: threads), afterPhase: afterPhase)
    }

    deinit { frames.deallocate() }

    var pixels: Int { height * width }

    /// Runs every chain; all ranks must call it and end with the same `frames`.
    public func run() {
        let groups = (config.chains + Self.group - 1) / Self.group
        let mine = evenShare(groups, part: communicator.rank, of: communicator.size)
        frames.update(repeating: 0, count: config.chains * frameCount * pixels)
        let body: @Sendable (Int) -> Void = { [unowned self] w in
            var g = mine.lowerBound + w
            while g < mine.upperBound {
                self.runGroup(g, on: self.workers[w])
                g += self.workers.count
            }
        }
        pool.run(body)     // a closure per run: not a hot path
        // each chain's frames come from one rank; the others add zeros
        communicator.allreduceSum(frames, count: config.chains * frameCount * pixels)
    }

    func runGroup(_ g: Int, on model: DenoisingNetwork) {
        let first = g * Self.group, n = min(Self.group, config.chains - first)
        let state = model.output          // x_t lives in the output buffer between steps
        for i in 0..<n {
            let chain = first + i, x = state + i * pixels
            switch config.start {
            case .noise:
                var rng = RandomStream(seed: config.seed, purpose: .chainStart, 0, UInt64(chain))
                for p in 0..<pixels { x[p] = rng.uniform() }
            case .test:
                test!.image(chain % test!.count, into: x)
            }
        }
        var frame = 0
        let frameSteps = config.frameSteps
        func record(_ t: Int) {
            guard frame < frameSteps.count, frameSteps[frame] == t else { return }
            for i in 0..<n {
                (frames + ((first + i) * frameCount + frame) * pixels).update(from: state + i * pixels, count: pixels)
            }
            frame += 1
        }
        record(0)
        for t in 1...config.steps {
            for i in 0..<n {
                config.noise.corrupt(state + i * pixels, into: model.input + i * pixels, count: pixels,
                                     seed: config.seed, epoch: t, sampleIndex: first + i, purpose: .sampling)
            }
            model.forward(n: n)
            if config.binarize {
                for i in 0..<n {
                    var rng = RandomStream(seed: config.seed, purpose: .binarize, UInt64(t), UInt64(first + i))
                    let x = state + i * pixels
                    for p in 0..<pixels { x[p] = rng.uniform() < x[p] ? 1 : 0 }
                }
            }
            record(t)
        }
    }

    /// Chain c's state at frame f.
    public func frame(chain: Int, frame: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: frames + (chain * frameCount + frame) * pixels, count: pixels))
    }

    public var finalStates: [[Float]] { (0..<config.chains).map { frame(chain: $0, frame: frameCount - 1) } }

    /// Every recorded state at or after the burn-in (step >= burnIn, step > 0): the samples the
    /// quality line is measured on.
    public var statesAfterBurnIn: [[Float]] {
        let kept = config.frameSteps.enumerated().filter { $0.element >= max(config.burnIn, 1) }.map(\.offset)
        return (0..<config.chains).flatMap { c in kept.map { frame(chain: c, frame: $0) } }
    }
}

/// How digit-like a set of images is: a classifier's class histogram and mean confidence, and the
/// mean distance of each image to its nearest training image (a copy of a training digit scores 0).
public struct SampleQuality: Sendable, Codable, Equatable {
    public var classHistogram: [Int]
    public var meanConfidence: Double
    public var meanNearestTrainingDistance: Double
    public var meanPixel: Double
    public var fractionDark: Double          // pixels below 0.1 (MNIST: about 0.8; uniform noise: 0.1)

    enum CodingKeys: String, CodingKey {
        case classHistogram = "class_histogram", meanConfidence = "mean_confidence"
        case meanNearestTrainingDistance = "mean_nearest_training_distance", meanPixel = "mean_pixel"
        case fractionDark = "fraction_dark_pixels"
    }

    public static func measure(_ images: [[Float]], classifier: DigitClassifier, training: Dataset) -> SampleQuality {
        let n = images.count, pixels = training.imageSize, classes = classifier.classes
        let flat = FloatBuffer(count: n * pixels)
        for (i, image) in images.enumerated() { for p in 0..<pixels { flat[i * pixels + p] = image[p] } }
        let probabilities = FloatBuffer(count: n * classes)
        classifier.predict(flat.pointer, n: n, probabilities: probabilities.pointer)
        var histogram = [Int](repeating: 0, count: classes), confidence = 0.0
        for i in 0..<n {
            var best = 0
            for c in 1..<classes where probabilities[i * classes + c] > probabilities[i * classes + best] { best = c }
            histogram[best] += 1
            confidence += Double(probabilities[i * classes + best])
        }
        // nearest training image: |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, the dot products by GEMM in chunks
        var best = [Double](repeating: .infinity, count: n)
        var norms = [Double](repeating: 0, count: n)
        for i in 0..<n { for p in 0..<pixels { norms[i] += Double(flat[i * pixels + p] * flat[i * pixels + p]) } }
        let chunk = 2000
        let block = FloatBuffer(count: chunk * pixels), dots = FloatBuffer(count: n * chunk)
        var start = 0
        while start < training.count {
            let k = min(chunk, training.count - start)
            for j in 0..<k { training.image(start + j, into: block.pointer + j * pixels) }
            gemm(transB: true, m: n, n: k, k: pixels, a: flat.pointer, lda: pixels, b: block.pointer, ldb: pixels, beta: 0, c: dots.pointer, ldc: k)
            for j in 0..<k {
                var tn = 0.0
                let t = block.pointer + j * pixels
                for p in 0..<pixels { tn += Double(t[p] * t[p]) }
                for i in 0..<n { best[i] = min(best[i], norms[i] + tn - 2 * Double(dots[i * k + j])) }
            }
            start += k
        }
        var meanPixel = 0.0, dark = 0
        for v in flat.buffer { meanPixel += Double(v); if v < 0.1 { dark += 1 } }
        return SampleQuality(classHistogram: histogram, meanConfidence: confidence / Double(n),
                             meanNearestTrainingDistance: best.map { max($0, 0).squareRoot() }.reduce(0, +) / Double(n),
                             meanPixel: meanPixel / Double(n * pixels), fractionDark: Double(dark) / Double(n * pixels))
    }

    public var summary: String {
        String(format: "classes %@  confidence %.3f  nearest-training distance %.2f  mean pixel %.3f  dark pixels %.2f",
               classHistogram.map(String.init).joined(separator: "/"), meanConfidence, meanNearestTrainingDistance, meanPixel, fractionDark)
    }
}
