// Evaluation on the test set with a fixed noise draw (keyed by (seed, image index) under its own
// purpose, the same every epoch, so epochs compare). Reconstruction and noisy input are each scored
// against the clean image; the noisy input's scores are the baseline a denoiser must beat.
//
// The test set is cut into fixed batches of 50 (their composition decides the GEMMs' rounding);
// ranks take contiguous runs of batches, worker threads take turns within a run. Each image's
// scores land in its own slots of one array; the allreduce adds zeros to every slot but the one
// rank's value, so it is exact, and the means are then summed in image order: the reported
// metrics do not depend on the number of ranks or threads.

import Foundation

public struct EvalMetrics: Sendable, Equatable, Codable {
    public var images: Int
    public var mse: Double, psnr: Double, ssim: Double                 // reconstruction vs clean
    public var noisyMSE: Double, noisyPSNR: Double, noisySSIM: Double  // noisy input vs clean

    enum CodingKeys: String, CodingKey {
        case images, mse, psnr, ssim, noisyMSE = "noisy_mse", noisyPSNR = "noisy_psnr", noisySSIM = "noisy_ssim"
    }

    public init(images: Int, mse: Double, psnr: Double, ssim: Double, noisyMSE: Double, noisyPSNR: Double, noisySSIM: Double) {
        self.images = images; self.mse = mse; self.psnr = psnr; self.ssim = ssim
        self.noisyMSE = noisyMSE; self.noisyPSNR = noisyPSNR; self.noisySSIM = noisySSIM
    }

    public var summary: String {
        String(format: "eval: MSE %.6f  PSNR %.2f dB  SSIM %.4f   (noisy input: MSE %.6f  PSNR %.2f dB  SSIM %.4f)",
               mse, psnr, ssim, noisyMSE, noisyPSNR, noisySSIM)
    }
}

public final class Evaluator: @unchecked Sendable {
    public let data: Dataset
    public let noise: NoiseKind
    public let seed: UInt64
    let communicator: Communicator
    let batch: Int
    let pool: WorkerPool
    let workers: [EvalWorker]                    // one per pool thread
    let scores: UnsafeMutablePointer<Double>     // [image][6]
    static let perImage = 6

    final class EvalWorker: @unchecked Sendable {
        let model: DenoisingNetwork
        let clean: FloatBuffer
        let scratch: UnsafeMutablePointer<Double>
        init(model spec: ModelSpec, data: Dataset, batch: Int, parameters: FloatBuffer) {
            model = spec.makeImageAutoencoder(height: data.height, width: data.width, capacity: batch, parameters: parameters)
            clean = FloatBuffer(count: batch * data.imageSize)
            scratch = .allocate(capacity: 5 * data.imageSize)
        }
        deinit { scratch.deallocate() }
    }

    /// Scores `model` (reading `parameters`) on `data`: by default the whole image autoencoder;
    /// `setPhase` selects a stacked model's layers trained so far. `pool` runs the workers (one per
    /// pool thread); it may be shared with the trainer, whose rounds never overlap evaluation.
    public init(model: ModelSpec = .reference, data: Dataset, noise: NoiseKind, seed: UInt64, parameters: FloatBuffer,
                communicator: Communicator = SingleProcess(), pool: WorkerPool, batch: Int = 50) {
        self.data = data; self.noise = noise; self.seed = seed; self.communicator = communicator; self.pool = pool
        self.batch = min(batch, data.count)
        workers = (0..<pool.count).map { _ in EvalWorker(model: model, data: data, batch: min(batch, data.count), parameters: parameters) }
        scores = .allocate(capacity: data.count * Self.perImage)
        scores.initialize(repeating: 0, count: data.count * Self.perImage)
    }

    /// As above, with a pool of its own of `threads` threads.
    public convenience init(model: ModelSpec = .reference, data: Dataset, noise: NoiseKind, seed: UInt64, parameters: FloatBuffer,
                            communicator: Communicator = SingleProcess(), threads: Int = 1, batch: Int = 50) {
        self.init(model: model, data: data, noise: noise, seed: seed, parameters: parameters, communicator: communicator,
                  pool: WorkerPool(threads: threads), batch: batch)
    }

    deinit { scores.deallocate() }

    /// Evaluates the image autoencoder made of what training phases 0...phase have trained.
    public func setPhase(_ phase: Int) {
        for worker in workers { worker.model.setImageAutoencoder(afterPhase: phase) }
    }

    /// Runs worker's model on test images first ..< first+n: clean targets in worker.clean, noisy
    /// inputs in model.input, reconstructions in model.output.
    func reconstruct(_ worker: EvalWorker, first: Int, n: Int) {
        let pixels = data.imageSize
        for i in 0..<n {
            let target = worker.clean.pointer + i * pixels
            data.image(first + i, into: target)
            noise.corrupt(target, into: worker.model.input + i * pixels, count: pixels,
                          seed: seed, epoch: 0, sampleIndex: first + i, purpose: .evalNoise)
        }
        worker.model.forward(n: n)
    }

    /// Scores the whole test set; every rank must call it and gets the same result.
    public func evaluate() -> EvalMetrics {
        // The test set is cut into fixed batches (their composition decides the GEMMs' rounding);
        // ranks take contiguous runs of batches, worker threads take turns within a run.
        let n = data.count
        let batches = (n + batch - 1) / batch
        let mine = evenShare(batches, part: communicator.rank, of: communicator.size)
        scores.update(repeating: 0, count: n * Self.perImage)
        let body: @Sendable (Int) -> Void = { [unowned self] w in
            let worker = self.workers[w], pixels = self.data.imageSize
            var b = mine.lowerBound + w
            while b < mine.upperBound {
                let first = b * self.batch
                let count = min(self.batch, n - first)
                self.reconstruct(worker, first: first, n: count)
                for i in 0..<count {
                    let clean = worker.clean.pointer + i * pixels
                    let out = worker.model.output + i * pixels, noisy = worker.model.input + i * pixels
                    let s = self.scores + (first + i) * Self.perImage
                    s[0] = ImageMetrics.mse(out, clean, count: pixels)
                    s[1] = ImageMetrics.psnr(mse: s[0])
                    s[2] = self.ssim(out, clean, scratch: worker.scratch)
                    s[3] = ImageMetrics.mse(noisy, clean, count: pixels)
                    s[4] = ImageMetrics.psnr(mse: s[3])
                    s[5] = self.ssim(noisy, clean, scratch: worker.scratch)
                }
                b += self.workers.count
            }
        }
        pool.run(body)     // a closure per evaluation: not a hot path
        communicator.allreduceSum(scores, count: n * Self.perImage)
        var sums = [Double](repeating: 0, count: Self.perImage)
        for i in 0..<n { for k in 0..<Self.perImage { sums[k] += scores[i * Self.perImage + k] } }
        let m = sums.map { $0 / Double(n) }
        return EvalMetrics(images: n, mse: m[0], psnr: m[1], ssim: m[2], noisyMSE: m[3], noisyPSNR: m[4], noisySSIM: m[5])
    }

    /// SSIM of one [C, H, W] sample: the mean over its channels (as scikit-image's
    /// structural_similarity with channel_axis).
    func ssim(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Double>) -> Double {
        let plane = data.height * data.width
        var sum = 0.0
        for c in 0..<data.channels {
            sum += ImageMetrics.ssim(x + c * plane, y + c * plane, height: data.height, width: data.width, scratch: scratch)
        }
        return sum / Double(data.channels)
    }

    /// The sample grid's images: the first `columns` test images as rows of noisy inputs, their
    /// reconstructions and the clean images, in make_grid order (row-major), each [C*H*W] in [0,1].
    public func sampleImages(columns: Int) -> [[Float]] {
        let worker = workers[0], pixels = data.imageSize
        var noisy: [[Float]] = [], recon: [[Float]] = [], clean: [[Float]] = []
        var first = 0
        let total = min(columns, data.count)
        while first < total {
            let count = min(batch, total - first)
            reconstruct(worker, first: first, n: count)
            for i in 0..<count {
                noisy.append(Array(UnsafeBufferPointer(start: worker.model.input + i * pixels, count: pixels)))
                recon.append(Array(UnsafeBufferPointer(start: worker.model.output + i * pixels, count: pixels)))
                clean.append(Array(UnsafeBufferPointer(start: worker.clean.pointer + i * pixels, count: pixels)))
            }
            first += count
        }
        return noisy + recon + clean
    }
}
