// The stacked denoising autoencoder: finite-difference gradients in every phase (pre-training
// each layer, fine-tuning the stack) with untied and tied weights and both activations; the
// tied decoder against an explicit transposed copy; layer-wise training on a small subset.

@testable import DAE
import Foundation
import XCTest

final class StackedTests: XCTestCase {
    /// Checks the trainable parameters' gradients of `model` in `phase` against central differences.
    func checkPhase(_ model: StackedDenoiser, phase: Int, n: Int, label: String) {
        model.setPhase(phase)
        let images = randomArray(n * model.spec.inputSize, seed: 21).map { ($0 + 1) / 2 }
        let target = images.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: model.target(images: $0.baseAddress!, n: n), count: n * model.inputSize)) }
        // a fixed corrupted input: the target with every third value zeroed (masking noise)
        for i in 0..<target.count { model.input[i] = i % 3 == 0 ? 0 : target[i] }
        let loss = Trainer.loss(.bce, for: model)
        func value() -> Double {
            model.forward(n: n)
            return target.withUnsafeBufferPointer { loss.sum(output: model.output, target: $0.baseAddress!, count: n * model.inputSize) }
        }
        _ = value()
        target.withUnsafeBufferPointer {
            loss.backward(output: model.output, target: $0.baseAddress!, gradient: model.gradOutput, count: n * model.inputSize,
                          meanOver: 1, activation: model.outputActivation)
        }
        model.backward(n: n)
        let range = model.trainable
        // Sigmoid units are smooth: a larger step keeps Float rounding of the loss out of the
        // differences. ReLU has kinks, so a small step and skipping the points that straddle one.
        let smooth = model.spec.activation == .sigmoid
        for slot in model.layout.slots where range.contains(slot.offset) {
            let indices = sampleIndices(slot.count, 30).map { $0 + slot.offset }
            gradientCheck("\(label) phase \(phase) \(slot.name)", values: model.params.pointer, indices: indices,
                          analytic: indices.map { model.grads[$0] }, h: smooth ? 3e-2 : 1e-3, tolerance: 3e-2, skipKinks: !smooth, loss: value)
        }
    }

    func testGradientsInEveryPhase() {
        for tied in [false, true] {
            for activation in StackedSpec.Activation.allCases {
                let spec = StackedSpec(inputSize: 12, hidden: [7, 5], activation: activation, tied: tied)
                let model = StackedDenoiser(spec, capacity: 3)
                model.initialize(seed: 4)
                for phase in 0...2 {
                    checkPhase(model, phase: phase, n: 3, label: "\(activation)\(tied ? " tied" : "")")
                }
            }
        }
    }

    /// A team of threads on one replica (fast mode), each computing its share of every layer's
    /// features, gives the outputs and gradients of one thread alone, in every phase, untied and
    /// tied, for both activations; with 8 threads some have no features of the 5- and 7-wide
    /// layers. (Not bit for bit: OpenBLAS may round a slice of a product's columns differently.)
    func testTeamGivesWhatOneThreadGives() {
        let n = 4
        for tied in [false, true] {
            for activation in StackedSpec.Activation.allCases {
                let spec = StackedSpec(inputSize: 12, hidden: [7, 5], activation: activation, tied: tied)
                let alone = StackedDenoiser(spec, capacity: n)
                alone.initialize(seed: 4)
                let images = randomArray(n * 12, seed: 21).map { ($0 + 1) / 2 }
                for phase in 0...2 {
                    let label = "\(activation)\(tied ? " tied" : ""), phase \(phase)"
                    alone.setPhase(phase)
                    let size = alone.inputSize, loss = Trainer.loss(.mse, for: alone)
                    /// target, masked input, forward, loss gradient, backward: the output and the trainable gradients
                    func run(_ model: StackedDenoiser, _ team: TeamPart) -> ([Float], [Float]) {
                        let target = images.withUnsafeBufferPointer { model.target(images: $0.baseAddress!, n: n, team: team) }
                        team.sync()
                        if team.index == 0 { for i in 0..<n * size { model.input[i] = i % 3 == 0 ? 0 : target[i] } }
                        team.sync()
                        model.forward(n: n, team: team)
                        team.sync()
                        if team.index == 0 {
                            loss.backward(output: model.output, target: target, gradient: model.gradOutput, count: n * size,
                                          meanOver: n * size, activation: model.outputActivation)
                        }
                        team.sync()
                        model.backward(n: n, team: team)
                        team.sync()
                        return (Array(UnsafeBufferPointer(start: model.output, count: n * size)), Array(model.grads.array[model.trainable]))
                    }
                    let (output, grads) = run(alone, .alone)
                    for threads in [3, 8] {
                        let shared = StackedDenoiser(spec, capacity: n, sharedParameters: alone.params)
                        shared.setPhase(phase)
                        let barrier = SpinBarrier(parties: threads), pool = WorkerPool(threads: threads)
                        // the team's threads share the model and the job (the test's own sync)
                        final class Job: @unchecked Sendable {
                            let body: (TeamPart) -> ([Float], [Float]); var result: ([Float], [Float]) = ([], [])
                            init(_ body: @escaping (TeamPart) -> ([Float], [Float])) { self.body = body }
                        }
                        let box = Job { run(shared, $0) }
                        pool.run { w in
                            let r = box.body(TeamPart(index: w, of: barrier))
                            if w == 0 { box.result = r }
                        }
                        XCTAssertLessThan(relativeError(box.result.0, output), 1e-6, "\(label), \(threads) threads: output")
                        XCTAssertLessThan(relativeError(box.result.1, grads), 1e-5, "\(label), \(threads) threads: gradients")
                    }
                }
            }
        }
    }

    func testPhasesTrainTheirOwnSlices() {
        let spec = StackedSpec(inputSize: 12, hidden: [7, 5], tied: true)
        let model = StackedDenoiser(spec, capacity: 2)
        let layout = model.layout
        XCTAssertEqual(layout.slots.map(\.name), ["encoders.0.weight", "encoders.0.bias", "decoders.0.bias",
                                                  "encoders.1.weight", "encoders.1.bias", "decoders.1.bias"])
        model.setPhase(0); XCTAssertEqual(model.trainable, 0 ..< 7 * 12 + 7 + 12)
        model.setPhase(1); XCTAssertEqual(model.trainable, 7 * 12 + 7 + 12 ..< layout.count)
        XCTAssertEqual(model.inputSize, 7)
        model.setPhase(2); XCTAssertEqual(model.trainable, 0 ..< layout.count)
        XCTAssertEqual(model.inputSize, 12)
        XCTAssertEqual(StackedDenoiser.makeLayout(StackedSpec(inputSize: 12, hidden: [7])).slots.map(\.shape),
                       [[7, 12], [7], [12, 7], [12]])
    }

    func testTiedDecoderEqualsAnExplicitTranspose() {
        // decoder(y) with tied weights must equal a Linear whose weight is W^T, written out.
        let (inF, outF, n) = (5, 3, 2)
        var layout = ParameterLayout()
        let enc = Linear.register(&layout, prefix: "enc", inFeatures: inF, outFeatures: outF)
        let bias = layout.add("dec.bias", shape: [inF], fanIn: outF)
        let params = FloatBuffer(randomArray(layout.count, seed: 5)), grads = FloatBuffer(count: layout.count)
        let tied = Linear(inFeatures: outF, outFeatures: inF, offsets: (enc.weight, bias), params: params, grads: grads, storedTransposed: true)
        var plain = ParameterLayout()
        let p = Linear.register(&plain, prefix: "dec", inFeatures: outF, outFeatures: inF)
        let plainParams = FloatBuffer(count: plain.count), plainGrads = FloatBuffer(count: plain.count)
        for o in 0..<outF { for i in 0..<inF { plainParams[p.weight + i * outF + o] = params[enc.weight + o * inF + i] } }
        for i in 0..<inF { plainParams[p.bias + i] = params[bias + i] }
        let explicit = Linear(inFeatures: outF, outFeatures: inF, offsets: p, params: plainParams, grads: plainGrads)
        let y = FloatBuffer(randomArray(n * outF, seed: 6)), a = FloatBuffer(count: n * inF), b = FloatBuffer(count: n * inF)
        tied.forward(x: y.pointer, y: a.pointer, n: n)
        explicit.forward(x: y.pointer, y: b.pointer, n: n)
        XCTAssertLessThan(relativeError(a.array, b.array), 1e-6)
        let dy = FloatBuffer(randomArray(n * inF, seed: 7)), dxA = FloatBuffer(count: n * outF), dxB = FloatBuffer(count: n * outF)
        tied.backward(dy: dy.pointer, x: y.pointer, dx: dxA.pointer, n: n)
        explicit.backward(dy: dy.pointer, x: y.pointer, dx: dxB.pointer, n: n)
        XCTAssertLessThan(relativeError(dxA.array, dxB.array), 1e-6)
        for o in 0..<outF { for i in 0..<inF {
            XCTAssertEqual(grads[enc.weight + o * inF + i], plainGrads[p.weight + i * outF + o], accuracy: 1e-6)
        } }
    }

    /// Fast mode's team through the trainer, pre-training and fine-tuning: the same bits on every
    /// run with the same threads (the team's syncs leave nothing to timing), within rounding of
    /// one thread, also on two ranks.
    func testFastModeTeamIsRepeatableAndAgreesWithOneThread() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(250)
        var config = TrainConfig()
        config.model = .stacked(StackedSpec(inputSize: data.imageSize, hidden: [40, 30], tied: true))
        config.pretrainEpochs = 1
        config.epochs = 1
        config.batchSize = 50
        config.noise = .mask(p: 0.25)
        config.reduce = .fast
        func train(threads: Int) throws -> [Float] {
            let trainer = try Trainer(config: config, data: data, threads: threads)
            XCTAssertEqual(trainer.workerCount, 1, "one replica for the team")
            XCTAssertEqual(trainer.pool.count, threads)
            while !trainer.finished { _ = try trainer.trainEpoch(); trainer.advancePhase() }
            return trainer.params.array
        }
        let one = try train(threads: 1)
        for threads in [2, 3] {
            let first = try train(threads: threads), second = try train(threads: threads)
            XCTAssertEqual(first, second, "\(threads) threads, two runs")
            XCTAssertLessThan(relativeError(first, one), 1e-4, "\(threads) threads against one")
        }
        // two ranks of a two-thread team each: the team's gradient goes into the float allreduce
        let settings = config
        for rank in ThreadWorld.run(size: 2, { (communicator: Communicator) throws(DAEError) in
            let trainer = try Trainer(config: settings, data: data, communicator: communicator, threads: 2)
            while !trainer.finished { _ = try trainer.trainEpoch(); trainer.advancePhase() }
            return trainer.params.array
        }) {
            XCTAssertLessThan(relativeError(try rank.get(), one), 1e-4, "2 ranks x 2 threads against one thread")
        }
    }

    /// Exact mode's lockstep: a pass over three groups (micro-batches) reports every gradient
    /// value once per group, with the bits three passes of one group each report (the unit that
    /// makes the bits independent of how micro-batches fall on workers and ranks), and the
    /// outputs of those passes; so do teams of 2 and 3 threads, each value reported by one thread;
    /// summed, the reports are the whole batch's gradient. Untied layers wider than a weight
    /// chunk (their gradients come a chunk at a time), tied ones (group after group, alone), both
    /// activations, every phase; the products on the C kernel (where the CPU has it) and on OpenBLAS.
    func testLockstepGroupsReportWhatOneGroupAtATimeReports() {
        let groups = 3, size = 2, n = groups * size
        let kernel = LockstepLinearKernel.avx2
        defer { LockstepLinearKernel.avx2 = kernel }
        for (tied, cKernel) in [(false, true), (true, true), (false, false), (true, false)] where kernel || !cKernel {
            LockstepLinearKernel.avx2 = cKernel
            for activation in StackedSpec.Activation.allCases {
                let spec = StackedSpec(inputSize: 12, hidden: [StackedDenoiser.weightChunk + 6, 20], activation: activation, tied: tied)
                let lockstep = StackedDenoiser(spec, capacity: n)
                let single = StackedDenoiser(spec, capacity: size, sharedParameters: lockstep.params)
                XCTAssertEqual(lockstep.lockstepKernel, cKernel)
                let whole = StackedDenoiser(spec, capacity: n, sharedParameters: lockstep.params)
                lockstep.initialize(seed: 5)
                let images = randomArray(n * 12, seed: 22).map { ($0 + 1) / 2 }
                for phase in 0...2 {
                    let label = "\(activation)\(tied ? " tied" : "")\(cKernel ? "" : " OpenBLAS"), phase \(phase)"
                    for model in [lockstep, single, whole] { model.setPhase(phase) }
                    let trainable = lockstep.trainable, width = lockstep.inputSize, loss = Trainer.loss(.mse, for: lockstep)
                    /// target (from `rows` of the images), masked input, forward, loss gradient, lockstep backward,
                    /// each thread of `team` on its groups: the output, and the values the thread was
                    /// given, in order of reports per element (an empty list for all of them if a
                    /// reported range was outside the trainable slice)
                    func run(_ model: StackedDenoiser, rows: Range<Int>, team: TeamPart = .alone,
                             fixedPoint: FixedPointTarget? = nil) -> ([Float], [[Float]]) {
                        let m = rows.count, mine = team.share(m, inUnitsOf: size)
                        var reports = [[Float]](repeating: [], count: trainable.count), outside = false
                        let target = images.withUnsafeBufferPointer {
                            model.target(images: $0.baseAddress! + rows.lowerBound * 12, n: m, groupSize: size, team: team)
                        }
                        for i in mine.lowerBound * width ..< mine.upperBound * width { model.input[i] = i % width % 3 == 0 ? 0 : target[i] }
                        team.sync()
                        model.forward(n: m, groupSize: size, team: team)
                        team.sync()
                        let first = mine.lowerBound * width
                        loss.backward(output: model.output + first, target: target + first, gradient: model.gradOutput + first,
                                      count: mine.count * width, meanOver: n * width, activation: model.outputActivation)
                        team.sync()
                        model.backward(n: m, groupSize: size, team: team, fixedPoint: fixedPoint) { range in
                            guard trainable.contains(range.lowerBound) && range.upperBound <= trainable.upperBound else { outside = true; return }
                            for i in range { reports[i - trainable.lowerBound].append(model.grads[i]) }
                        }
                        team.sync()
                        return (Array(UnsafeBufferPointer(start: model.output, count: m * width)), outside ? [] : reports)
                    }
                    let (output, together) = run(lockstep, rows: 0 ..< n)
                    var outputs: [Float] = [], apart = [[Float]](repeating: [], count: trainable.count)
                    for g in 0..<groups {
                        let (out, reports) = run(single, rows: g * size ..< (g + 1) * size)
                        outputs += out
                        for i in apart.indices { apart[i] += reports[i] }
                    }
                    XCTAssertEqual(output, outputs, "\(label): outputs")
                    XCTAssertEqual(together.count, trainable.count, "\(label): reports inside the trainable slice")
                    XCTAssertTrue(together.allSatisfy { $0.count == groups }, "\(label): every value once per group")
                    XCTAssertEqual(together, apart, "\(label): reports")
                    if cKernel && !tied {
                        // the kernel adding the weight gradients to a fixed-point target itself
                        // (the rest reported): the integers of the reports, alone and in teams
                        var expected = [Int64](repeating: 0, count: trainable.count)
                        for (i, values) in together.enumerated() { for v in values { _ = FixedPoint.accumulate([v], into: &expected[i], count: 1, limit: 1e6) } }
                        for threads in [1, 2] {
                            let acc = UnsafeMutablePointer<Int64>.allocate(capacity: trainable.count), flag = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
                            defer { acc.deallocate(); flag.deallocate() }
                            acc.initialize(repeating: 0, count: trainable.count); flag.pointee = 0
                            let target = FixedPointTarget(accumulator: acc, first: trainable.lowerBound, limit: 1e6, overflowFlag: flag)
                            let shared = StackedDenoiser(spec, capacity: n, sharedParameters: lockstep.params)
                            shared.setPhase(phase)
                            let barrier = SpinBarrier(parties: threads), pool = WorkerPool(threads: threads)
                            final class Reports: @unchecked Sendable { let lock = NSLock(); var byThread: [[[Float]]] = [] }
                            let reports = Reports()
                            reports.byThread = Array(repeating: [], count: threads)
                            nonisolated(unsafe) let body = { (w: Int) in
                                let mine = run(shared, rows: 0 ..< n, team: TeamPart(index: w, of: barrier), fixedPoint: target).1
                                reports.lock.withLock { reports.byThread[w] = mine }
                            }
                            pool.run { w in body(w) }
                            for (i, values) in reports.byThread.flatMap({ $0.enumerated() }) {
                                for v in values { _ = FixedPoint.accumulate([v], into: acc + i, count: 1, limit: 1e6) }
                            }
                            XCTAssertEqual(Array(UnsafeBufferPointer(start: acc, count: trainable.count)), expected, "\(label), \(threads) threads: fixed point")
                            XCTAssertEqual(flag.pointee, 0, "\(label): no overflow")
                        }
                    }
                    for threads in tied ? [] : [2, 3] {
                        let shared = StackedDenoiser(spec, capacity: n, sharedParameters: lockstep.params)
                        shared.setPhase(phase)
                        let barrier = SpinBarrier(parties: threads), pool = WorkerPool(threads: threads)
                        final class Results: @unchecked Sendable {
                            let lock = NSLock(); var output: [Float] = []; var reports: [[[Float]]] = []
                        }
                        let results = Results()
                        results.reports = Array(repeating: [], count: threads)
                        nonisolated(unsafe) let body = { (w: Int) in
                            let (out, reports) = run(shared, rows: 0 ..< n, team: TeamPart(index: w, of: barrier))
                            results.lock.withLock {
                                results.reports[w] = reports
                                if w == 0 { results.output = out }
                            }
                        }
                        pool.run { w in body(w) }
                        XCTAssertEqual(results.output, output, "\(label), \(threads) threads: outputs")
                        guard results.reports.allSatisfy({ $0.count == trainable.count }) else {
                            XCTFail("\(label), \(threads) threads: a report outside the trainable slice"); continue
                        }
                        for i in together.indices {
                            let given = results.reports.map { $0[i] }.filter { !$0.isEmpty }
                            XCTAssertEqual(given, [together[i]], "\(label), \(threads) threads: value \(i) reported by one thread, the same")
                            if given != [together[i]] { break }
                        }
                    }
                    // summed over the groups: the batch's gradient from one pass over all of it
                    let target = images.withUnsafeBufferPointer { whole.target(images: $0.baseAddress!, n: n) }
                    for i in 0..<n * width { whole.input[i] = i % width % 3 == 0 ? 0 : target[i] }
                    whole.forward(n: n)
                    loss.backward(output: whole.output, target: target, gradient: whole.gradOutput, count: n * width,
                                  meanOver: n * width, activation: whole.outputActivation)
                    whole.backward(n: n)
                    let sums = together.map { $0.reduce(Float(0), +) }
                    XCTAssertLessThan(relativeError(sums, Array(whole.grads.array[trainable])), 1e-5, "\(label): sum")
                }
            }
        }
    }

    /// The lockstep products' C kernel: every value of the forward (with its bias), of the input
    /// gradient and (untied) of the weight gradient is the chain of fused multiply-adds over k in
    /// order from 0 (computed here one value at a time), for untied and tied (stored [in, out])
    /// layers whose widths leave partial panels and row tiles and, at 300 and 260 features or 300
    /// rows (the weight gradient's k), more than one block of k; a call on some of the columns
    /// writes only those, a call on some of the rows gives them the same bits.
    func testLockstepLinearKernelIsOneFusedChainPerValue() throws {
        try XCTSkipUnless(LockstepLinearKernel.avx2, "no AVX2 and FMA on this CPU: the lockstep products run on OpenBLAS")
        for (inFeatures, outFeatures, n) in [(37, 21, 13), (16, 40, 6), (300, 33, 1), (5, 260, 8), (9, 20, 300)] {
            for tied in [false, true] {
                let label = "\(inFeatures) -> \(outFeatures)\(tied ? " tied" : "")"
                let weights = inFeatures * outFeatures, params = FloatBuffer(count: weights + outFeatures)
                let grads = FloatBuffer(count: weights + outFeatures)
                for (i, v) in randomArray(weights + outFeatures, seed: UInt64(inFeatures + outFeatures)).enumerated() { params[i] = v }
                let layer = Linear(inFeatures: inFeatures, outFeatures: outFeatures, offsets: (0, weights), params: params, grads: grads,
                                   storedTransposed: tied)
                /// W[o, i], stored [out, in] or (tied) [in, out]
                func w(_ o: Int, _ i: Int) -> Float { tied ? params[i * outFeatures + o] : params[o * inFeatures + i] }
                let x = randomArray(n * inFeatures, seed: 3), dy = randomArray(n * outFeatures, seed: 4)
                var y = [Float](repeating: .nan, count: n * outFeatures), dx = [Float](repeating: .nan, count: n * inFeatures)
                // columns 1 ..< width - 1 only: the first and last stay NaN
                layer.forwardLockstep(x: x, y: &y, n: n, outputs: 1 ..< outFeatures - 1)
                layer.backwardInputLockstep(dy: dy, dx: &dx, n: n, inputs: 1 ..< inFeatures - 1)
                for r in 0..<n {
                    for o in 0..<outFeatures {
                        var s: Float = 0
                        for i in 0..<inFeatures { s = s.addingProduct(x[r * inFeatures + i], w(o, i)) }
                        let value = y[r * outFeatures + o]
                        if o == 0 || o == outFeatures - 1 { XCTAssertTrue(value.isNaN, "\(label): forward \(r), \(o) outside the columns"); continue }
                        XCTAssertEqual(value.bitPattern, (s + params[weights + o]).bitPattern, "\(label): forward \(r), \(o)")
                    }
                    for i in 0..<inFeatures {
                        var s: Float = 0
                        for o in 0..<outFeatures { s = s.addingProduct(dy[r * outFeatures + o], w(o, i)) }
                        let value = dx[r * inFeatures + i]
                        if i == 0 || i == inFeatures - 1 { XCTAssertTrue(value.isNaN, "\(label): input gradient \(r), \(i) outside"); continue }
                        XCTAssertEqual(value.bitPattern, s.bitPattern, "\(label): input gradient \(r), \(i)")
                    }
                }
                if !tied {
                    // output features 1 ..< out - 1 (leaving the rest of dW as it was)
                    let chunk = 1 ..< outFeatures - 1
                    for i in 0..<weights { grads[i] = .nan }
                    layer.backwardWeightsLockstep(dy: dy, x: x, n: n, outputs: chunk)
                    for o in 0..<outFeatures {
                        for i in 0..<inFeatures {
                            var s: Float = 0
                            for r in 0..<n { s = s.addingProduct(dy[r * outFeatures + o], x[r * inFeatures + i]) }
                            let value = grads[o * inFeatures + i]
                            if chunk.contains(o) { XCTAssertEqual(value.bitPattern, s.bitPattern, "\(label): weight gradient \(o), \(i)") }
                            else { XCTAssertTrue(value.isNaN, "\(label): weight gradient \(o), \(i) outside the chunk") }
                        }
                    }
                    // added to a fixed-point target instead: what FixedPoint.accumulate makes of the
                    // values above; with values of 2^11 and more (a row of x scaled up; or one
                    // column, the rest scaled down to where 2^40 x is not a whole number), beyond
                    // the limit (left out, the overflow marked) and not finite
                    for (scale, limit, special, column) in [(Float(1), 1e6, Float(0), false), (4000, 1e9, 0, false), (4000, 30, 0, false),
                                                           (1, 1e6, .nan, false), (4000, 1e9, 0, true)] {
                        var big = x
                        if column { for i in big.indices { big[i] *= i % inFeatures == 2 ? scale : 1e-7 } }
                        else { for i in 0..<inFeatures { big[i] *= scale } }
                        big[inFeatures / 2] += special
                        for i in 0..<weights { grads[i] = .nan }
                        layer.backwardWeightsLockstep(dy: dy, x: big, n: n, outputs: chunk)
                        let stored = grads.array
                        var expected = (0..<weights).map { Int64($0) * 1_000_003 }, acc = expected
                        let start = inFeatures * chunk.lowerBound
                        let expectedOK = expected.withUnsafeMutableBufferPointer {
                            FixedPoint.accumulate(Array(stored[start...]), into: $0.baseAddress! + start, count: chunk.count * inFeatures, limit: limit)
                        }
                        var flag: Int64 = 0
                        let ok = acc.withUnsafeMutableBufferPointer { a in
                            withUnsafeMutablePointer(to: &flag) { f in
                                layer.backwardWeightsLockstep(dy: dy, x: big, n: n, outputs: chunk,
                                                              into: FixedPointTarget(accumulator: a.baseAddress!, first: 0, limit: limit, overflowFlag: f))
                            }
                        }
                        XCTAssertEqual(acc, expected, "\(label), scale \(scale), limit \(limit), \(special), \(column): fixed point")
                        XCTAssertEqual(ok, expectedOK, "\(label), scale \(scale), limit \(limit), \(special): within the limit")
                        if scale > 1 && limit < 100 { XCTAssertFalse(ok, "\(label): some value beyond the limit") }
                    }
                }
                // the rows from the second on, in a call of their own
                guard n > 1 else { continue }
                var part = [Float](repeating: .nan, count: (n - 1) * outFeatures)
                x.withUnsafeBufferPointer { layer.forwardLockstep(x: $0.baseAddress! + inFeatures, y: &part, n: n - 1, outputs: 0 ..< outFeatures) }
                var all = [Float](repeating: .nan, count: n * outFeatures)
                layer.forwardLockstep(x: x, y: &all, n: n, outputs: 0 ..< outFeatures)
                XCTAssertEqual(part, Array(all[outFeatures...]), "\(label): rows 1..<\(n) alone")
            }
        }
    }

    /// Exact mode on the stacked model: the same weights and losses for 1, 2 and 3 threads and
    /// 2 and 4 ranks (1 or 2 threads), through a pre-training phase and fine-tuning, with
    /// layers wider than a weight chunk, and epochs ending in a step of one micro-batch (41
    /// samples, batch 20, micro-batch 5): micro-batches in lockstep, on a team (untied) or a
    /// worker each (tied), give the bits of the same micro-batches anywhere else.
    func testExactModeBitsDoNotDependOnThreadsOrRanks() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(41)
        for tied in [false, true] {
            var settings = TrainConfig()
            settings.model = .stacked(StackedSpec(inputSize: data.imageSize, hidden: [StackedDenoiser.weightChunk + 6, 10], tied: tied))
            settings.pretrainEpochs = 1
            settings.epochs = 1
            settings.batchSize = 20
            settings.microBatch = 5
            settings.noise = .mask(p: 0.25)
            let config = settings
            @Sendable func train(_ communicator: Communicator, threads: Int, reduce: ReduceMode = .exact) throws(DAEError) -> ([Float], [Double]) {
                var config = config
                config.reduce = reduce
                let trainer = try Trainer(config: config, data: data, communicator: communicator, threads: threads)
                var losses: [Double] = []
                while !trainer.finished { losses.append(try trainer.trainEpoch().meanLoss); trainer.advancePhase() }
                return (trainer.params.array, losses)
            }
            let one = try train(SingleProcess(), threads: 1)
            // the same training as fast mode's (its products and sums in other orders)
            let fast = try train(SingleProcess(), threads: 1, reduce: .fast)
            XCTAssertLessThan(relativeError(one.0, fast.0), 1e-4, "tied \(tied): exact against fast mode")
            for threads in [2, 3] {
                let other = try train(SingleProcess(), threads: threads)
                XCTAssertEqual(other.0, one.0, "tied \(tied), \(threads) threads")
                XCTAssertEqual(other.1, one.1, "tied \(tied), \(threads) threads: losses")
            }
            for (size, threads) in [(2, 1), (2, 2), (4, 1)] {
                for rank in ThreadWorld.run(size: size, { (communicator: Communicator) throws(DAEError) in try train(communicator, threads: threads) }) {
                    let result = try rank.get()
                    XCTAssertEqual(result.0, one.0, "tied \(tied), \(size) ranks x \(threads) threads")
                    XCTAssertEqual(result.1, one.1, "tied \(tied), \(size) ranks x \(threads) threads: losses")
                }
            }
        }
    }

    /// Exact mode's team on the stacked model, stopped mid-epoch in the second pre-training phase
    /// and resumed from its checkpoint, ends with the uninterrupted run's weights, bit for bit.
    func testExactTeamResumesBitwise() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(100)
        var config = TrainConfig()
        config.model = .stacked(StackedSpec(inputSize: data.imageSize, hidden: [StackedDenoiser.weightChunk + 6, 10]))
        config.pretrainEpochs = 1
        config.epochs = 1
        config.batchSize = 20
        config.microBatch = 5
        config.noise = .mask(p: 0.25)
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let straight = try makeRun(config, data: data, threads: 2)
        XCTAssertEqual(try straight.run(), .finished)
        XCTAssertTrue(straight.trainer.runsAsTeam)
        let stopped = try makeRun(config, data: data, directory: dir, threads: 2, stopAfter: 7)   // 5 steps a phase
        XCTAssertEqual(try stopped.run(), .stopped)
        XCTAssertEqual(stopped.trainer.position.phase, 1)
        let resumed = try makeRun(config, data: data, directory: dir, resume: .auto, threads: 2)
        XCTAssertEqual(try resumed.run(), .finished)
        XCTAssertEqual(resumed.trainer.params.array, straight.trainer.params.array)
    }

    func testLayerWiseTrainingLowersEachLayersLoss() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(400)
        var config = TrainConfig()
        config.model = .stacked(StackedSpec(inputSize: data.imageSize, hidden: [64, 32]))
        config.pretrainEpochs = 4
        config.epochs = 1
        config.noise = .mask(p: 0.25)
        config.adam.lr = 3e-3
        let run = try makeRun(config, data: data), log = EventLog()
        run.observers = [log]
        try run.run()
        let trainer = run.trainer
        var firstAndLast: [Int: (Double, Double)] = [:]
        for r in log.epochs { firstAndLast[r.phase] = (firstAndLast[r.phase]?.0 ?? r.meanLoss, r.meanLoss) }
        let began = log.events.compactMap { event -> Int? in if case .phaseBegan(let phase, _, _) = event { return phase } else { return nil } }
        XCTAssertEqual(began, [1, 2], "each later phase announces itself")
        XCTAssertEqual(firstAndLast.count, 3)
        for phase in 0..<2 {
            let (first, last) = firstAndLast[phase]!
            XCTAssertLessThan(last, 0.9 * first, "layer \(phase + 1)'s reconstruction loss should fall: \(first) -> \(last)")
        }
        XCTAssertEqual(trainer.position.globalStep, 9 * 20)
        XCTAssertEqual(trainer.optimizer.step, 20, "fine-tuning starts a fresh Adam")
    }
}
