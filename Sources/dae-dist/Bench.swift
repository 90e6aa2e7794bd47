// dae-dist bench: the micro-measurements launch/bench needs. Not a training command.

import ArgumentParser
import DAE
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Micro-benchmarks for launch/bench: warm sgemm GFLOP/s on the conv2 shape, and a per-phase breakdown of training steps.")

    @Option(help: "What to measure: gemm or phases.") var what = "phases"
    @Option(name: .customLong("batch-size"), help: "Global batch of the measured steps.") var batchSize = 20
    @Option(name: .customLong("micro-batch"), help: "Micro-batch (as train's exact mode).") var microBatch = 5
    @Option(help: "Steps to measure after 20 warm-up steps.") var steps = 200
    @Option(name: .customLong("data-dir")) var dataDir = "data/mnist"

    func run() throws {
        try runReportingErrors { _ in
            BLASThreads.set(1)
            switch what {
            case "gemm": gemmRate()
            case "phases": try phases()
            default: throw DAEError.badFlag("--what", "use gemm or phases")
            }
        }
    }

    /// Single-threaded sgemm on conv2's forward shape at this batch: [64 x 288] . [288 x batch*196].
    func gemmRate() {
        let m = 64, k = 288, n = batchSize * 196
        let a = FloatBuffer(count: m * k), b = FloatBuffer(count: k * n), c = FloatBuffer(count: m * n)
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.1 }
        for i in 0..<b.count { b[i] = Float(i % 5) * 0.1 }
        for _ in 0..<20 { gemm(m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: n, c: c.pointer, ldc: n) }
        let reps = 200, start = monotonicSeconds()
        for _ in 0..<reps { gemm(m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: n, c: c.pointer, ldc: n) }
        let seconds = monotonicSeconds() - start
        say(String(format: "sgemm %dx%dx%d, 1 thread: %.1f GFLOP/s", m, n, k, 2.0 * Double(m * n * k * reps) / seconds / 1e9))
    }

    /// One process, one thread: where a training step's time goes.
    func phases() throws {
        let data = try Dataset.load(directory: dataDir, split: .train)
        let u = min(microBatch, batchSize)
        let model = ConvDenoiser(height: data.height, width: data.width, capacity: u)
        model.initialize(seed: 0)
        let adam = Adam(parameterCount: model.parameterCount, config: AdamConfig())
        let clean = FloatBuffer(count: u * data.imageSize)
        let accumulator = UnsafeMutablePointer<Int64>.allocate(capacity: model.parameterCount)
        defer { accumulator.deallocate() }
        let grads = FloatBuffer(count: model.parameterCount)
        let layers = UnsafeMutablePointer<Double>.allocate(capacity: ConvDenoiser.phaseNames.count)
        layers.initialize(repeating: 0, count: ConvDenoiser.phaseNames.count)
        defer { layers.deallocate() }
        var assembly = 0.0, lossTime = 0.0, fixedPoint = 0.0, optimizer = 0.0
        let pixels = data.imageSize, noise = NoiseKind.gaussian(factor: 0.5)
        var total = 0.0
        for step in 0..<(20 + steps) {
            if step == 20 { model.phaseSeconds = layers; assembly = 0; lossTime = 0; fixedPoint = 0; optimizer = 0 }
            let stepStart = monotonicSeconds()
            accumulator.update(repeating: 0, count: model.parameterCount)
            var first = 0
            while first < batchSize {
                let n = min(u, batchSize - first)
                var t = monotonicSeconds()
                for i in 0..<n {
                    let index = (step * batchSize + first + i) % data.count
                    data.image(index, into: clean.pointer + i * pixels)
                    noise.corrupt(clean.pointer + i * pixels, into: model.input + i * pixels, count: pixels, seed: 0, epoch: 1, sampleIndex: index)
                }
                assembly += monotonicSeconds() - t
                model.forward(n: n)
                t = monotonicSeconds()
                _ = LossKind.mse.sum(output: model.output, target: clean.pointer, count: n * pixels)
                LossKind.mse.backward(output: model.output, target: clean.pointer, gradient: model.gradOutput, count: n * pixels, meanOver: batchSize * pixels)
                lossTime += monotonicSeconds() - t
                model.backward(n: n)
                t = monotonicSeconds()
                FixedPoint.accumulate(model.grads.pointer, into: accumulator, count: model.parameterCount, limit: 1e6)
                fixedPoint += monotonicSeconds() - t
                first += n
            }
            var t = monotonicSeconds()
            FixedPoint.toFloat(accumulator, into: grads.pointer, count: model.parameterCount)
            fixedPoint += monotonicSeconds() - t
            t = monotonicSeconds()
            adam.update(params: model.params, grads: grads)
            optimizer += monotonicSeconds() - t
            if step >= 20 { total += monotonicSeconds() - stepStart }
        }
        var rows: [(String, Double)] = ConvDenoiser.phaseNames.enumerated().map { ($0.element, layers[$0.offset]) }
        rows += [("batch assembly + noise", assembly), ("loss + its gradient", lossTime), ("fixed-point conversion", fixedPoint), ("Adam", optimizer)]
        let covered = rows.map(\.1).reduce(0, +)
        rows.append(("other", max(0, total - covered)))
        say(String(format: "per-phase breakdown: batch %d, micro-batch %d, 1 thread, %d steps, %.3f ms/step, %.0f samples/s",
                   batchSize, u, steps, 1000 * total / Double(steps), Double(steps * batchSize) / total))
        for (name, seconds) in rows {
            say("  " + name.padding(toLength: 24, withPad: " ", startingAt: 0) + String(format: " %6.1f%%  %7.3f ms/step", 100 * seconds / total, 1000 * seconds / Double(steps)))
        }
        say("  (the encoder's ReLUs are fused into the pools; the decoder's ReLU and Sigmoid are in the slot of the layer before them, forward and backward)")
    }
}
