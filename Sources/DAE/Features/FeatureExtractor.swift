// Features for other tasks: the encoder's code of each clean image (64x7x7 for the reference
// model, the top layer's units for a stacked one), or the raw pixels as the baseline.
//
// Images go through the encoder in fixed batches of 50 counted from the start of the requested
// range; callers keep ranges aligned to 50, so a sample's features (whose rounding depends on the
// GEMM's batch) are the same whichever rank or thread computes them.

import Foundation

public final class FeatureExtractor: @unchecked Sendable {
    public enum Source {
        case pixels
        case encoder(ModelSpec, FloatBuffer)
    }

    public static let batch = 50
    public let featureShape: [Int]
    public var featureSize: Int { featureShape.reduce(1, *) }
    let pool: WorkerPool
    let networks: [DenoisingNetwork]     // one per pool thread (none for pixels)

    /// `afterPhase`: for a stacked checkpoint saved during pre-training, encode with the layers
    /// trained so far only. `pool` runs the encoders (one per pool thread; unused for pixels).
    public init(_ source: Source, height: Int, width: Int, pool: WorkerPool, afterPhase: Int = Int.max) {
        self.pool = pool
        switch source {
        case .pixels:
            featureShape = [height * width]
            networks = []
        case .encoder(let model, let params):
            networks = (0..<pool.count).map { _ in
                model.makeImageAutoencoder(height: height, width: width, capacity: Self.batch, parameters: params, afterPhase: afterPhase)
            }
            featureShape = networks[0].codeShape
        }
    }

    /// As above, with a pool of its own of `threads` threads (of one thread for pixels, which are
    /// copied on the calling thread).
    public convenience init(_ source: Source, height: Int, width: Int, threads: Int = 1, afterPhase: Int = Int.max) {
        let needed: Int
        if case .pixels = source { needed = 1 } else { needed = threads }
        self.init(source, height: height, width: width, pool: WorkerPool(threads: needed), afterPhase: afterPhase)
    }

    /// Features of samples `range` of `data`, row i of `out` [range.count, featureSize] for sample
    /// range.lowerBound + i. Worker threads take turns over the batches.
    public func extract(_ data: Dataset, range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let size = featureSize, pixels = data.imageSize
        guard !networks.isEmpty else {
            for i in range { data.image(i, into: out + (i - range.lowerBound) * size) }
            return
        }
        let batches = (range.count + Self.batch - 1) / Self.batch
        let output = UncheckedPointer(out)   // each batch writes its own rows
        let body: @Sendable (Int) -> Void = { [self] w in
            let out = output.pointer
            let network = networks[w]
            var b = w
            while b < batches {
                let first = range.lowerBound + b * Self.batch, n = min(Self.batch, range.upperBound - first)
                for i in 0..<n { data.image(first + i, into: network.input + i * pixels) }
                network.encode(n: n)
                for i in 0..<n { network.copyCode(sample: i, n: n, into: out + (first - range.lowerBound + i) * size) }
                b += networks.count
            }
        }
        pool.run(body)     // a closure per extraction: not a hot path
    }
}

/// A pointer handed to worker threads that write disjoint parts of it.
struct UncheckedPointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(_ pointer: UnsafeMutablePointer<Float>) { self.pointer = pointer }
}
