// A linear probe: how useful a set of features is, measured as the test accuracy of a linear
// softmax classifier trained on them (logits = W x + b, cross-entropy, W [K, F] for K classes: 10 for digits).
//
// Distributed like training, and like it exact: the training set is cut into fixed chunks of 100
// samples, each rank extracts and keeps the features of its own contiguous run of chunks (so the
// feature memory is split over the ranks), and every iteration is one full-batch gradient step:
//   per chunk (on a worker thread): logits [100,K] = X [100,F] . W^T + b; softmax;
//     dlogits = (p - onehot) / N; dW [K,F] = dlogits^T . X; db = column sums; rounded to fixed
//     point and added to the rank's integer accumulator; the chunk's loss in its own slot
//   one Int64 allreduce of the accumulator, back to Float, Adam (ExactSum)
// Features are standardised first (mean 0, variance 1 over the training set, from fixed-point
// sums), as a linear probe usually is. Results are bitwise the same on any number of ranks.

import Foundation

public struct ProbeConfig: Sendable {
    public var iterations = 300
    public var lr: Float = 0.01
    /// L2 penalty weightDecay/2 * |W|^2 on the weights (not the biases), as a regularised
    /// logistic regression: it keeps 3,136-dimensional features from being memorised.
    public var weightDecay: Float = 0
    public static let chunk = 100
    public init() {}
}

public struct ProbeResult: Sendable {
    public var features: Int
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var testAccuracy: Double
    public var seconds: Double
}

public final class LinearProbe: @unchecked Sendable {
    let config: ProbeConfig
    let communicator: Communicator
    let featureSize: Int
    /// Classes: one past the largest label of either set (10 for MNIST's digits, the class folders
    /// of an image folder), at least 2.
    public let classes: Int
    let train: Dataset, test: Dataset
    let trainRange: Range<Int>, testRange: Range<Int>          // this rank's samples
    let trainChunks: Range<Int>                                 // this rank's chunks of the training set
    let xTrain: FloatBuffer, xTest: FloatBuffer                 // [samples of this rank, F], standardised
    let params: FloatBuffer, grads: FloatBuffer                 // [W (K x F) | b (K)]
    let adam: Adam
    let pool: WorkerPool
    let workers: [ProbeWorker]                                  // one per pool thread
    let exact: ExactSum                                         // [params | a loss slot per chunk | overflow | stop]
    let extractionSeconds: Double

    final class ProbeWorker {
        let logits: FloatBuffer, grads: FloatBuffer             // [chunk, K], [params]
        init(parameters: Int, classes: Int) {
            logits = FloatBuffer(count: ProbeConfig.chunk * classes)
            grads = FloatBuffer(count: parameters)
        }
    }

    /// The contiguous run of chunks of a set of `count` samples that rank r of `size` owns.
    static func chunks(_ count: Int, rank: Int, size: Int) -> Range<Int> {
        evenShare((count + ProbeConfig.chunk - 1) / ProbeConfig.chunk, part: rank, of: size)
    }

    static func samples(_ chunks: Range<Int>, count: Int) -> Range<Int> {
        min(chunks.lowerBound * ProbeConfig.chunk, count) ..< min(chunks.upperBound * ProbeConfig.chunk, count)
    }

    /// Extracts this rank's features (with `features`' own pool) and standardises them; `pool`
    /// runs the chunks of each iteration (one worker per pool thread).
    public init(features: FeatureExtractor, train: Dataset, test: Dataset, config: ProbeConfig = ProbeConfig(),
                communicator: Communicator = SingleProcess(), pool: WorkerPool) {
        self.config = config; self.communicator = communicator; self.train = train; self.test = test
        self.pool = pool
        featureSize = features.featureSize
        let classes = max(2, Int(max(train.labels.max() ?? 0, test.labels.max() ?? 0)) + 1)
        self.classes = classes
        let (rank, size) = (communicator.rank, communicator.size)
        trainChunks = Self.chunks(train.count, rank: rank, size: size)
        trainRange = Self.samples(trainChunks, count: train.count)
        testRange = Self.samples(Self.chunks(test.count, rank: rank, size: size), count: test.count)
        let start = Date()
        xTrain = FloatBuffer(count: trainRange.count * featureSize)
        xTest = FloatBuffer(count: testRange.count * featureSize)
        features.extract(train, range: trainRange, into: xTrain.pointer)
        features.extract(test, range: testRange, into: xTest.pointer)
        extractionSeconds = Date().timeIntervalSince(start)
        let count = classes * (featureSize + 1)
        params = FloatBuffer(count: count); grads = FloatBuffer(count: count)
        adam = Adam(parameterCount: count, config: AdamConfig(lr: config.lr))
        workers = (0..<pool.count).map { _ in ProbeWorker(parameters: count, classes: classes) }
        let allChunks = (train.count + ProbeConfig.chunk - 1) / ProbeConfig.chunk
        exact = ExactSum(capacity: count, extras: allChunks, workers: pool.count)
        standardize()
    }

    /// As above, with a pool of its own of `threads` threads.
    public convenience init(features: FeatureExtractor, train: Dataset, test: Dataset, config: ProbeConfig = ProbeConfig(),
                            communicator: Communicator = SingleProcess(), threads: Int = 1) {
        self.init(features: features, train: train, test: test, config: config, communicator: communicator,
                  pool: WorkerPool(threads: threads))
    }

    /// Per-feature mean and standard deviation over the whole training set (fixed-point sums per
    /// chunk, so exact on any number of ranks), applied to this rank's train and test features.
    func standardize() {
        let f = featureSize, scale = 1048576.0   // 2^20: features up to ~1e3, squares ~1e6, 60k samples fit in Int64
        let sums = UnsafeMutablePointer<Int64>.allocate(capacity: 2 * f)
        defer { sums.deallocate() }
        sums.initialize(repeating: 0, count: 2 * f)
        var chunkSum = [Double](repeating: 0, count: 2 * f)
        for chunk in trainChunks {
            let rows = Self.samples(chunk ..< chunk + 1, count: train.count)
            for k in 0..<(2 * f) { chunkSum[k] = 0 }
            for r in rows {
                let x = xTrain.pointer + (r - trainRange.lowerBound) * f
                for k in 0..<f { let v = Double(x[k]); chunkSum[k] += v; chunkSum[f + k] += v * v }
            }
            // (clamped: absurdly large features must not trap the conversion)
            for k in 0..<(2 * f) { sums[k] &+= Int64(min(max((chunkSum[k] * scale).rounded(.toNearestOrEven), -1e17), 1e17)) }
        }
        communicator.allreduceSum(sums, count: 2 * f)
        let n = Double(train.count)
        var mean = [Float](repeating: 0, count: f), inverse = [Float](repeating: 0, count: f)
        for k in 0..<f {
            let m = Double(sums[k]) / scale / n
            let variance = max(Double(sums[f + k]) / scale / n - m * m, 0)
            mean[k] = Float(m)
            inverse[k] = variance > 1e-12 ? Float(1 / variance.squareRoot()) : 0   // a constant feature carries nothing
        }
        for buffer in [xTrain, xTest] {
            for row in 0..<(buffer.count / max(f, 1)) {
                let x = buffer.pointer + row * f
                for k in 0..<f { x[k] = (x[k] - mean[k]) * inverse[k] }
            }
        }
    }

    /// logits [rows, 10] = X [rows, F] . W^T + b
    func logits(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
        let c = classes, bias = params.pointer + c * featureSize
        for r in 0..<rows { (out + r * c).update(from: bias, count: c) }
        gemm(transB: true, m: rows, n: c, k: featureSize, a: x, lda: featureSize, b: params.pointer, ldb: featureSize,
             beta: 1, c: out, ldc: c)
    }

    /// One chunk's gradient (of the mean loss over all N training samples) into `worker.grads`;
    /// returns the chunk's summed cross-entropy.
    func chunkGradient(_ chunk: Int, _ worker: ProbeWorker) -> Double {
        let c = classes, f = featureSize
        let rows = Self.samples(chunk ..< chunk + 1, count: train.count)
        let x = xTrain.pointer + (rows.lowerBound - trainRange.lowerBound) * f, p = worker.logits.pointer
        logits(x, rows: rows.count, into: p)
        var loss = 0.0
        let inverseN = 1 / Float(train.count)
        for (r, sample) in rows.enumerated() {
            let row = p + r * c
            var top = row[0]
            for k in 1..<c { top = max(top, row[k]) }
            var total: Float = 0
            for k in 0..<c { row[k] = expf(row[k] - top); total += row[k] }
            let label = Int(train.labels[sample])
            loss -= Double(logf(max(row[label] / total, 1e-30)))
            for k in 0..<c { row[k] = (row[k] / total - (k == label ? 1 : 0)) * inverseN }   // dlogits
        }
        gemm(transA: true, m: c, n: f, k: rows.count, a: p, lda: c, b: x, ldb: f, beta: 0, c: worker.grads.pointer, ldc: f)
        let db = worker.grads.pointer + c * f
        for k in 0..<c {
            var s: Float = 0
            for r in 0..<rows.count { s += p[r * c + k] }
            db[k] = s
        }
        return loss
    }

    /// Trains the classifier and scores it; every rank must call it and gets the same result.
    public func run() throws(DAEError) -> ProbeResult {
        let start = Date()
        let count = params.count, allChunks = (train.count + ProbeConfig.chunk - 1) / ProbeConfig.chunk
        let limit = FixedPoint.limit(terms: allChunks)
        // worker w takes chunks w, w + W, ... of this rank's run; the integer sums do not depend on who took which
        let gradientBody: @Sendable (Int) -> Void = { [self] w in
            let worker = workers[w]
            var chunk = trainChunks.lowerBound + w
            while chunk < trainChunks.upperBound {
                exact.setExtra(chunk, chunkGradient(chunk, worker))
                exact.add(worker: w, values: worker.grads.pointer, count: count, limit: limit)
                chunk += workers.count
            }
        }
        var trainLoss = 0.0
        for _ in 0..<config.iterations {
            exact.begin(count: count, extras: allChunks)     // chunks of other ranks: 0 in their loss slots
            pool.run(gradientBody)
            exact.allreduce(over: communicator)
            guard exact.overflows == 0 else {
                throw .numeric("the probe's gradient left the exact reduction's range (NaN or |g| > \(limit)): the features hold NaN or huge values; lower --lr")
            }
            exact.toFloat(0 ..< count, into: grads.pointer)
            if config.weightDecay > 0 {
                for i in 0..<(classes * featureSize) { grads[i] += config.weightDecay * params[i] }
            }
            trainLoss = exact.sumOfExtras() / Double(train.count)
            adam.update(params: params, grads: grads)
        }
        var correct: [Int64] = [accuracyCount(xTrain, train, trainRange), accuracyCount(xTest, test, testRange)]
        correct.withUnsafeMutableBufferPointer { communicator.allreduceSum($0.baseAddress!, count: 2) }
        return ProbeResult(features: featureSize, trainLoss: trainLoss, trainAccuracy: Double(correct[0]) / Double(train.count),
                           testAccuracy: Double(correct[1]) / Double(test.count),
                           seconds: Date().timeIntervalSince(start) + extractionSeconds)
    }

    /// How many of this rank's samples the classifier gets right.
    func accuracyCount(_ x: FloatBuffer, _ data: Dataset, _ range: Range<Int>) -> Int64 {
        let c = classes, out = workers[0].logits.pointer
        var right: Int64 = 0, first = 0
        while first < range.count {
            let rows = min(ProbeConfig.chunk, range.count - first)
            logits(x.pointer + first * featureSize, rows: rows, into: out)
            for r in 0..<rows {
                var best = 0
                for k in 1..<c where out[r * c + k] > out[r * c + best] { best = k }
                if best == Int(data.labels[range.lowerBound + first + r]) { right += 1 }
            }
            first += rows
        }
        return right
    }
}
