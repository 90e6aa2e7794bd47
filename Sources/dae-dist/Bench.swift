// dae-dist bench: the micro-measurements launch/bench needs. Not a training command.

import ArgumentParser
import DAE
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Micro-benchmarks for launch/bench: one core's arithmetic peak, warm sgemm GFLOP/s on the conv2 shape, a per-phase breakdown of training steps against that peak, the convolutions' direct and Winograd paths, and loading a dataset (under mpirun too).")

    @Option(help: "What to measure: peak (one core's FP32 FMA and bf16 dot-product peaks), gemm, phases (with each layer's share of the FP32 peak), conv (the convolutions' direct and Winograd paths) or load (decoding --data's training split as train does, on every rank).") var what = "phases"
    @OptionGroup var threads: ThreadOptions
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Global batch of the measured steps.") var batchSize = 20
    @Option(name: .customLong("micro-batch"), parsing: .unconditional, help: "Micro-batch (as train's exact mode).") var microBatch = 5
    @Option(parsing: .unconditional, help: "Steps to measure after 20 warm-up steps.") var steps = 200
    @Option(help: "phases and gemm: the model, conv (the reference) or stacked (784-1000-1000-1000 and its mirror, fine-tuning, mask:0.25 noise; give --batch-size 100 --micro-batch 25 for train's stacked defaults).") var model = "conv"
    @OptionGroup var data: DataOptions

    func validate() throws {
        guard ["peak", "gemm", "phases", "conv", "load"].contains(what) else { throw flagError("--what", "use peak, gemm, phases, conv or load") }
        guard batchSize >= 1 else { throw flagError("--batch-size", "must be at least 1, got \(batchSize)") }
        guard microBatch >= 1 else { throw flagError("--micro-batch", "must be at least 1, got \(microBatch)") }
        guard steps >= 1 else { throw flagError("--steps", "must be at least 1, got \(steps)") }
        guard ["conv", "stacked"].contains(model) else { throw flagError("--model", "use conv or stacked") }
    }

    func run() throws {
        try runReportingErrors { communicatorSlot in
            BLASThreads.set(1)
            switch what {
            case "load":
                let communicator = try Launch.makeCommunicator()
                communicatorSlot = communicator
                try load(communicator)
            case "peak":
                peak()
                gemmRate()
            case "gemm": gemmRate()
            case "conv": convPaths()
            default: try phases()
            }
        }
    }

    /// Seconds to load the training split of --data as train does (header pass, this rank's share
    /// decoded by its threads, shared with the others), and the bytes it holds.
    func load(_ communicator: Communicator) throws(DAEError) {
        let threadCount = threads.count(for: communicator)
        communicator.barrier()
        let start = monotonicSeconds()
        let train = try Dataset.load(path: data.path, valFraction: data.fraction, split: .train, communicator: communicator, threads: threadCount)
        let seconds = monotonicSeconds() - start
        communicator.barrier()
        if communicator.rank == 0 {
            say(String(format: "loaded %d images (%d bytes, %d channel(s)) from %@ in %.2f s: %d rank(s) x %d thread(s)",
                       train.count, train.pixels.count, train.channels, data.path, seconds, communicator.size, threadCount))
        }
    }

    /// One core's arithmetic peaks (ArithmeticPeak): the roofline for the layers' GFLOP/s.
    @discardableResult
    func peak() -> [ArithmeticPeak.Measurement] {
        let peaks = ArithmeticPeak.measure()
        if peaks.isEmpty {
            say(ArithmeticPeak.available ? "peak: no FMA kernel for this CPU (needs x86-64 with AVX2+FMA or AVX-512)"
                                         : "peak: the probes need an optimised build (swift build -c release)")
        }
        for p in peaks { say(String(format: "peak %@, 1 thread: %.1f GFLOP/s", p.name, p.gflops)) }
        say("OpenBLAS core: \(BLASCore.current)")
        return peaks
    }

    /// The convolutions' two paths, direct and Winograd, on conv1's and conv2's shapes for one micro-batch.
    func convPaths() {
        let n = min(microBatch, batchSize)
        for (name, inChannels, outChannels, side, inputGradient) in [("conv1", 1, 32, 28, false), ("conv2", 32, 64, 14, true)] {
            let c = ConvPaths.measure(inChannels: inChannels, outChannels: outChannels, n: n, h: side, w: side,
                                      inputGradient: inputGradient, reps: steps)
            say(String(format: "%@ (%d -> %d, %d x %d, %d images), 1 thread, ms per call:", name, inChannels, outChannels, side, side, n))
            say(String(format: "  forward                 direct %.3f   winograd %.3f", c.direct.forward, c.winograd.forward))
            say(String(format: "  backward (%@)   direct %.3f   winograd %.3f", inputGradient ? "dW, db, dx" : "dW, db    ", c.direct.backward, c.winograd.backward))
            let s = c.winogradStages
            say(String(format: "  winograd forward stages: weights %.3f, input %.3f, 16 GEMMs %.3f, output %.3f", s[0], s[1], s[2], s[3]))
            say(String(format: "  largest difference, relative to the largest value: y %.1e, dW %.1e, dx %.1e", c.difference.y, c.difference.dW, c.difference.dx))
        }
        say("winograd transforms: \(ConvPaths.winogradKernels)")
    }

    /// Single-threaded sgemm on conv2's forward shape at this batch: [64 x 288] . [288 x batch*196]
    /// (with --model stacked: stackedGemmRates).
    func gemmRate() {
        if model == "stacked" { stackedGemmRates(); return }
        let m = 64, k = 288, n = batchSize * 196
        let a = FloatBuffer(count: m * k), b = FloatBuffer(count: k * n), c = FloatBuffer(count: m * n)
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.1 }
        for i in 0..<b.count { b[i] = Float(i % 5) * 0.1 }
        let rate = gflops(multiplyAdds: m * n * k, runs: 1) {
            gemm(m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: n, c: c.pointer, ldc: n)
        }
        say(String(format: "sgemm %dx%dx%d, 1 thread: %.1f GFLOP/s", m, n, k, rate))
    }

    /// The stacked model's three GEMM shapes for a 1000-wide layer and a micro-batch of
    /// M = --micro-batch rows (Linear.swift): the forward x . W^T, the weight gradient dy^T . x and
    /// the input gradient dy . W; best of 3 runs, as bench/torch_gemm.py times PyTorch's. Then the
    /// same products on exact mode's C kernel.
    func stackedGemmRates() {
        let rows = microBatch, width = 1000
        let x = FloatBuffer(count: rows * width), w = FloatBuffer(count: width * width), out = FloatBuffer(count: width * width)
        for i in 0..<x.count { x[i] = Float(i % 7) * 0.1 }
        for i in 0..<w.count { w[i] = Float(i % 5) * 0.1 }
        let shapes: [(String, () -> Void)] = [
            ("forward x . W^T", { gemm(transB: true, m: rows, n: width, k: width, a: x.pointer, lda: width, b: w.pointer, ldb: width, c: out.pointer, ldc: width) }),
            ("weight gradient dy^T . x", { gemm(transA: true, m: width, n: width, k: rows, a: x.pointer, lda: width, b: x.pointer, ldb: width, c: out.pointer, ldc: width) }),
            ("input gradient dy . W", { gemm(m: rows, n: width, k: width, a: x.pointer, lda: width, b: w.pointer, ldb: width, c: out.pointer, ldc: width) }),
        ]
        for (name, call) in shapes {
            let rate = gflops(multiplyAdds: rows * width * width, runs: 3, call)
            say(String(format: "sgemm %@ (M = %d, 1000 x 1000), 1 thread: %.1f GFLOP/s", name, rows, rate))
        }
        // exact mode's products on the C kernel (linear.c), as a rank's lockstep pass calls them:
        // the forward and the input gradient over all of a batch's rows (--batch-size) in one
        // call, the weight gradient over one micro-batch
        guard LockstepLinearKernel.avx2 else { say("lockstep kernel (linear.c): not on this CPU (no AVX2 and FMA)"); return }
        let all = batchSize
        let params = FloatBuffer(count: width * width + width), grads = FloatBuffer(count: width * width + width)
        for i in 0..<params.count { params[i] = Float(i % 5) * 0.1 }
        let layer = Linear(inFeatures: width, outFeatures: width, offsets: (0, width * width), params: params, grads: grads)
        let xs = FloatBuffer(count: all * width), ys = FloatBuffer(count: all * width)
        for i in 0..<xs.count { xs[i] = Float(i % 7) * 0.1 }
        let kernelShapes: [(String, Int, () -> Void)] = [
            ("forward x . W^T", all, { layer.forwardLockstep(x: xs.pointer, y: ys.pointer, n: all, outputs: 0 ..< width) }),
            ("weight gradient dy^T . x", rows, { _ = layer.backwardWeightsLockstep(dy: xs.pointer, x: xs.pointer, n: rows, outputs: 0 ..< width) }),
            ("input gradient dy . W", all, { layer.backwardInputLockstep(dy: xs.pointer, dx: ys.pointer, n: all, inputs: 0 ..< width) }),
        ]
        for (name, m, call) in kernelShapes {
            let rate = gflops(multiplyAdds: m * width * width, runs: 3, call)
            say(String(format: "lockstep kernel %@ (M = %d, 1000 x 1000), 1 thread: %.1f GFLOP/s", name, m, rate))
        }
    }

    /// GFLOP/s of `call` (`multiplyAdds` each): 20 warm-up calls, then the best of `runs` runs of 200.
    func gflops(multiplyAdds: Int, runs: Int, _ call: () -> Void) -> Double {
        for _ in 0..<20 { call() }
        var rate = 0.0
        for _ in 0..<runs {
            let start = monotonicSeconds()
            for _ in 0..<200 { call() }
            rate = max(rate, 2.0 * Double(multiplyAdds * 200) / (monotonicSeconds() - start) / 1e9)
        }
        return rate
    }

    /// One process, one thread: where a training step's time goes, measured on the real training
    /// run (TrainingRun, no outputs) with the trainer's step profile switched on after the warm-up.
    func phases() throws {
        // the roofline first, while nothing else of ours runs
        let fp32Peak = ArithmeticPeak.measure().first
        var config = TrainConfig()
        config.batchSize = batchSize
        config.microBatch = microBatch
        config.epochs = 1_000
        if model == "stacked" {
            config.model = .stacked(StackedSpec(inputSize: 784, hidden: [1000, 1000, 1000]))
            config.pretrainEpochs = 0
            config.noise = .mask(p: 0.25)
        }
        let train = try Dataset.load(path: data.path, valFraction: data.fraction, split: .train, channels: 1)
        var settings = RunSettings(directory: nil)
        settings.evalEvery = 0
        let run = try TrainingRun(config: config, settings: settings, data: train, test: nil, threads: 1)
        let profile = StepProfile(), warmUp = 20
        // stop after warm-up + steps: the request is read during a step and takes effect after it
        final class StopFlag: @unchecked Sendable { var raised = false }
        let stop = StopFlag()
        run.stopRequested = { stop.raised }
        var start = 0.0, end = 0.0
        run.observers = [ClosureObserver { event in
            guard case .stepDone(let step) = event else { return }
            let taken = step.position.globalStep
            if taken == warmUp { run.trainer.profile = profile; profile.reset(); start = monotonicSeconds() }
            if taken == warmUp + steps - 1 { stop.raised = true }
            if taken == warmUp + steps { end = monotonicSeconds() }
        }]
        try run.run()
        let total = end - start
        let samples = Double(steps * batchSize)
        guard let spec = config.model.architecture as? ConvSpec else {
            // the stacked model: its layers are one slot, "forward + backward" (what the others leave)
            say(String(format: "per-phase breakdown: %@, batch %d, micro-batch %d, 1 thread, %d steps, %.3f ms/step, %.0f samples/s",
                       config.model.description, batchSize, run.trainer.effectiveMicroBatch, steps, 1000 * total / Double(steps), samples / total))
            let rows = [("batch assembly + noise", profile.assembly), ("loss + its gradient", profile.loss),
                        ("fixed-point conversion", profile.fixedPoint), ("sum, Float, Adam", profile.update)]
            let covered = rows.map(\.1).reduce(0, +)
            for (name, seconds) in rows + [("forward + backward", max(0, total - covered))] {
                say("  " + name.padding(toLength: 24, withPad: " ", startingAt: 0) + String(format: " %6.1f%%  %7.3f ms/step", 100 * seconds / total, 1000 * seconds / Double(steps)))
            }
            return
        }
        let flops = ConvDenoiser.phaseFlops(spec, height: train.height, width: train.width), stepFlops = flops.reduce(0, +)
        var rows: [(String, Double, Double)] = ConvDenoiser.phaseNames.enumerated().map { ($0.element, profile.layers[$0.offset], flops[$0.offset]) }
        rows += [("batch assembly + noise", profile.assembly, 0), ("loss + its gradient", profile.loss, 0),
                 ("fixed-point conversion", profile.fixedPoint, 0), ("sum, Float, Adam", profile.update, 0)]
        let covered = rows.map(\.1).reduce(0, +)
        rows.append(("other", max(0, total - covered), 0))
        /// "  GFLOP/s  % of peak" for `perSample` FLOPs done in `seconds`, or nothing.
        func rate(_ perSample: Double, _ seconds: Double) -> String {
            guard perSample > 0, seconds > 0 else { return "" }
            let gflops = perSample * samples / seconds / 1e9
            return String(format: "  %6.1f GFLOP/s", gflops) + (fp32Peak.map { String(format: "  %5.1f%% of peak", 100 * gflops / $0.gflops) } ?? "")
        }
        if let fp32Peak { say(String(format: "peak %@, 1 thread: %.1f GFLOP/s (the roofline below)", fp32Peak.name, fp32Peak.gflops)) }
        say(String(format: "per-phase breakdown: batch %d, micro-batch %d, 1 thread, %d steps, %.3f ms/step, %.0f samples/s, %.1f MFLOP/sample",
                   batchSize, run.trainer.effectiveMicroBatch, steps, 1000 * total / Double(steps), samples / total, stepFlops / 1e6)
            + rate(stepFlops, total))
        for (name, seconds, perSample) in rows {
            say("  " + name.padding(toLength: 24, withPad: " ", startingAt: 0) + String(format: " %6.1f%%  %7.3f ms/step", 100 * seconds / total, 1000 * seconds / Double(steps))
                + rate(perSample, seconds))
        }
        say("  (the encoder's ReLUs are fused into the pools; the decoder's ReLU and Sigmoid are in the slot of the layer before them, forward and backward;")
        say("   conv2 runs Winograd F(2x2, 3x3): its GFLOP/s count the direct convolution's multiply-adds, 2.25x those it does)")
    }
}
