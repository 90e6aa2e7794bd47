// The pieces that make results independent of the world size: the step plan (disjoint, complete,
// independent of the number of ranks), the fixed-point sums (exact, order-free, range-checked),
// and the trainer giving the same bits with any number of worker threads. The runs over real
// MPI ranks are in Tests/mpi-checks.sh.

@testable import DAE
import XCTest

final class DistributedTests: XCTestCase {
    func testStepPlanCoversTheBatchOnceForEveryWorldSize() {
        for (count, micro) in [(20, 5), (20, 1), (17, 5), (128, 5), (3, 2)] {
            let plan = StepPlan(first: 40, count: count, microBatch: micro)
            // micro-batches tile the batch in order
            let tiles = (0..<plan.microBatches).flatMap { Array(plan.positions(ofMicroBatch: $0)) }
            XCTAssertEqual(tiles, Array(40..<(40 + count)))
            for size in 1...plan.microBatches {
                // each micro-batch belongs to exactly one rank, in order
                let owners = (0..<size).flatMap { Array(plan.microBatches(rank: $0, size: size)) }
                XCTAssertEqual(owners, Array(0..<plan.microBatches), "count \(count) micro \(micro) size \(size)")
                // as even as possible
                let sizes = (0..<size).map { plan.microBatches(rank: $0, size: size).count }
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1)
            }
            for size in 1...count {
                let parts = (0..<size).flatMap { Array(plan.positions(rank: $0, size: size)) }
                XCTAssertEqual(parts, Array(40..<(40 + count)))
            }
        }
    }

    func testEpochShardsAreDisjointAndComplete() {
        // Over a whole epoch with a partial last step, the union over ranks of each step's shards is
        // the step's batch, and the union over steps is the permutation: no padding, no duplicates.
        var order: [Int32] = []
        epochPermutation(count: 103, seed: 3, epoch: 2, into: &order)
        for size in [1, 2, 3, 4] {
            var seen: [Int32] = []
            for first in stride(from: 0, to: 103, by: 20) {
                let plan = StepPlan(first: first, count: min(20, 103 - first), microBatch: 5)
                for rank in 0..<size {
                    for j in plan.microBatches(rank: rank, size: size) {
                        seen += plan.positions(ofMicroBatch: j).map { order[$0] }
                    }
                }
            }
            XCTAssertEqual(seen, order, "world size \(size)")
        }
    }

    func testFixedPointSumsAreExactAndOrderFree() {
        let values: [[Float]] = [[0.1, -3.5e-7, 1e-3, 7], [1e-9, 2.5e-7, -1e-3, -7], [0.3, 1, 2, 3]]
        func sum(_ order: [Int]) -> [Int64] {
            var acc = [Int64](repeating: 0, count: 4)
            for k in order {
                XCTAssertTrue(FixedPoint.accumulate(values[k], into: &acc, count: 4, limit: FixedPoint.limit(terms: 3)))
            }
            return acc
        }
        XCTAssertEqual(sum([0, 1, 2]), sum([2, 0, 1]))
        XCTAssertEqual(sum([0, 1, 2]), sum([1, 2, 0]))
        var out = [Float](repeating: 0, count: 4)
        FixedPoint.toFloat(sum([0, 1, 2]), into: &out, count: 4)
        // 7 + -7 + 3 is exact; 1e-3 - 1e-3 + 2 is 2 to within one quantum
        XCTAssertEqual(out[3], 3)
        XCTAssertEqual(out[2], 2, accuracy: 1e-11)
        XCTAssertEqual(out[0], 0.4, accuracy: 1e-7)
        // the quantum: 2^-40
        var one = [Int64](repeating: 0, count: 1)
        FixedPoint.accumulate([Float(1)], into: &one, count: 1, limit: 1)
        XCTAssertEqual(one[0], 1 << 40)
    }

    func testFixedPointRoundsHalfToEvenAtEveryMagnitude() {
        // ties (k + 1/2) * 2^-40 for even and odd k, both signs, small and near the 2^11 switch
        // between the vectorised and the plain loop, and random values: each must give exactly
        // round-half-even of x * 2^40
        var values: [Float] = []
        for k: Float in [0, 1, 2, 3, 1000, 1001] {
            values += [(k + 0.5) * 0x1p-40, -(k + 0.5) * 0x1p-40]
        }
        values += [0x1p10, -0x1p10, 0x1p11 * 0.999, -0x1p11 * 0.999]
        values += randomArray(1000, seed: 9).map { $0 * 0.01 }
        // all below 2^11: the vectorised path; with larger values added: the careful loop; over
        // several blocks of 2,048 (each block chooses its own loop), the large values in the last
        let large: [Float] = [0x1p11, -0x1p11, 0x1p11 * 1.001, 3000.25, -3000.75]
        // on every version of the kernel this CPU runs (baseline SSE2, and AVX2 where it has it)
        forEachUpdateKernel { kernel in
            for set in [values, values + large, values + values + values + large + values] {
                var acc = [Int64](repeating: 0, count: set.count)
                XCTAssertTrue(FixedPoint.accumulate(set, into: &acc, count: set.count, limit: 1e6))
                for (x, a) in zip(set, acc) {
                    XCTAssertEqual(a, Int64((Double(x) * 0x1p40).rounded(.toNearestOrEven)), "\(x), \(kernel)")
                }
                XCTAssertEqual(acc[0], 0); XCTAssertEqual(acc[2], 2); XCTAssertEqual(acc[4], 2); XCTAssertEqual(acc[6], 4)
            }
        }
    }

    /// Draining the accumulator gives `toFloat`'s bits and leaves zeros, on every kernel version:
    /// sums of every sign and magnitude, among them values at and beyond the 2^51 switch between
    /// the vectorised conversion and the plain one, at places that cut the 4-value grid.
    func testFixedPointDrainGivesToFloatsBitsAndClears() {
        var sums: [Int64] = [0, 1, -1, 3, -(1 << 40), 1 << 40, (1 << 51) - 1, -(1 << 51) + 1, 1 << 51, -(1 << 51),
                             (1 << 53) + 3, -(1 << 60) - 12345, Int64.max / 2, Int64.min / 2]
        sums += randomArray(1001, seed: 31).map { Int64(Double($0) * 0x1p45) }
        sums.insert(1 << 52, at: 700)
        var reference = [Float](repeating: 0, count: sums.count)
        FixedPoint.toFloat(sums, into: &reference, count: sums.count)
        forEachUpdateKernel { kernel in
            var acc = sums, out = [Float](repeating: .nan, count: sums.count)
            FixedPoint.drain(&acc, into: &out, count: sums.count)
            XCTAssertEqual(out.map(\.bitPattern), reference.map(\.bitPattern), kernel)
            XCTAssertTrue(acc.allSatisfy { $0 == 0 }, kernel)
        }
    }

    /// Runs `body` with each version of the update kernels (Adam, fixed point) this CPU can run.
    func forEachUpdateKernel(_ body: (String) -> Void) {
        let detected = UpdateKernels.avx2
        defer { UpdateKernels.avx2 = detected }
        for avx2 in detected ? [false, true] : [false] {
            UpdateKernels.avx2 = avx2
            body(UpdateKernels.name)
        }
        if !detected { print("note: this CPU has no AVX2; only the baseline update kernels were checked") }
    }

    /// Adam's update, 4 (SSE2) or 8 (AVX2) values at a time, gives the bits of the plain per-value
    /// loop (torch's formulas, in this order), on a range that starts and ends off both grids;
    /// also from three gradient buffers summed as it reads them (fast mode's workers), in order.
    func testAdamVectorisedUpdateGivesThePlainLoopsBits() {
        forEachUpdateKernel { kernel in
            adamAgainstThePlainLoop(kernel, buffers: 1)
            adamAgainstThePlainLoop(kernel, buffers: 3)
        }
    }

    func adamAgainstThePlainLoop(_ kernel: String, buffers: Int) {
        let count = 45, range = 3 ..< 42
        let params = FloatBuffer(randomArray(count, seed: 41))
        let grads = (0..<buffers).map { FloatBuffer(randomArray(count, seed: 42 + UInt64($0)).map { $0 * 0.1 }) }
        let table = grads.map { UnsafePointer($0.pointer) }
        let adam = Adam(parameterCount: count, config: AdamConfig(lr: 2e-3))
        var p = params.array, m = [Float](repeating: 0, count: count), v = m
        for step in 1...3 {
            let c = adam.beginStep()
            if buffers == 1 {
                adam.apply(c, params: params, grads: grads[0], range: range)
            } else {
                table.withUnsafeBufferPointer { adam.apply(c, params: params, summing: $0.baseAddress!, count: buffers, range: range) }
            }
            let (lr, beta1, beta2) = (Double(Float(2e-3)), Double(Float(0.9)), Double(Float(0.999)))
            let stepSize = Float(lr / (1 - pow(beta1, Double(step)))), correction2 = Float((1 - pow(beta2, Double(step))).squareRoot())
            XCTAssertEqual(c.stepSize, stepSize); XCTAssertEqual(c.correction2, correction2)
            for i in range {
                var g = grads[0][i]
                for k in 1..<buffers { g = g + grads[k][i] }
                m[i] = m[i] + (1 - 0.9) * (g - m[i])
                v[i] = v[i] * 0.999 + (1 - 0.999) * g * g
                let denom = v[i].squareRoot() / correction2 + 1e-8
                p[i] = p[i] + -stepSize * m[i] / denom
            }
        }
        XCTAssertEqual(params.array.map(\.bitPattern), p.map(\.bitPattern), "\(kernel), \(buffers) gradient buffer(s)")
    }

    func testFixedPointRejectsOverflowAndNaN() {
        forEachUpdateKernel { _ in
            var acc = [Int64](repeating: 0, count: 1)
            let limit = FixedPoint.limit(terms: 4)
            XCTAssertEqual(limit, 1_048_576)             // 2^22 / 4
            XCTAssertTrue(FixedPoint.accumulate([Float(limit)], into: &acc, count: 1, limit: limit))
            XCTAssertFalse(FixedPoint.accumulate([Float(limit * 2)], into: &acc, count: 1, limit: limit))
            XCTAssertFalse(FixedPoint.accumulate([Float.nan], into: &acc, count: 1, limit: limit))
            XCTAssertFalse(FixedPoint.accumulate([-Float.infinity], into: &acc, count: 1, limit: limit))
            // one NaN or infinity among many small values (the vectorised path's check)
            for (bad, at) in [(Float.nan, 500), (-Float.nan, 2), (Float.infinity, 998), (Float.nan, 4500)] {
                var values = randomArray(at < 999 ? 999 : 4999, seed: 4).map { $0 * 0.01 }
                values[at] = bad
                var many = [Int64](repeating: 0, count: values.count)
                XCTAssertFalse(FixedPoint.accumulate(values, into: &many, count: values.count, limit: limit), "\(bad) at \(at)")
            }
            // four values at the limit sum without wrapping around
            var big = [Int64](repeating: 0, count: 1)
            for _ in 0..<4 { XCTAssertTrue(FixedPoint.accumulate([-Float(limit)], into: &big, count: 1, limit: limit)) }
            XCTAssertEqual(big[0], -(1 << 62))
        }
    }

    func testWorkerThreadCountDoesNotChangeTheBits() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(120)
        var config = TrainConfig()
        config.batchSize = 20
        var results: [[Float]] = []
        var losses: [Double] = []
        for threads in [1, 2, 3] {
            let trainer = try Trainer(config: config, data: data, threads: threads)
            losses.append(try trainer.trainEpoch().meanLoss)
            results.append(trainer.params.array)
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
        XCTAssertEqual(losses[0], losses[1])
        XCTAssertEqual(losses[0], losses[2])
    }

    /// The decoder's gradients reduced ahead of the encoder's (a second bucket whose sum is
    /// started during the backward) change no bit: 2 and 3 ranks, 1 or 2 threads each (one
    /// worker accumulates straight into the reduce buffer), conv and U-Net, against one process.
    /// The test world traps if a started sum's buffer is written to before it is finished.
    func testOverlappedReductionGivesTheSameBits() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(60)
        for (model, threads) in [(ModelSpec.reference, 2), (.reference, 1), (.unet(UNetSpec(widths: [4, 8])), 2)] {
            var settings = TrainConfig(model: model)
            settings.batchSize = 30
            let config = settings
            let single = try Trainer(config: config, data: data, threads: threads)
            let loss = try single.trainEpoch().meanLoss
            for size in [2, 3] {
                let world = ThreadWorld(size: size, overlap: true)
                let results = ThreadWorld.run(world) { (communicator: Communicator) throws(DAEError) in
                    let trainer = try Trainer(config: config, data: data, communicator: communicator, threads: threads)
                    return (try trainer.trainEpoch().meanLoss, trainer.params.array)
                }
                for result in results {
                    let (rankLoss, params) = try result.get()
                    XCTAssertEqual(params, single.params.array, "\(model.name), \(size) ranks")
                    XCTAssertEqual(rankLoss, loss)
                }
                XCTAssertEqual(world.started.load(ordering: .relaxed), size * 2, "one started sum per rank and step")
            }
        }
    }

    /// Fast mode overlaps too: the decoder's float sum started during the backward gives what one
    /// sum at the end gives (the test world sums in rank order either way), and a started sum's
    /// buffer is never written to before it is finished.
    func testFastModeOverlapGivesWhatOneSumGives() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(60)
        var settings = TrainConfig()
        settings.reduce = .fast
        let config = settings
        for (size, threads) in [(2, 1), (3, 1), (2, 2)] {
            var results: [[Float]] = []
            for overlap in [false, true] {
                let world = ThreadWorld(size: size, overlap: true)
                let ranks = ThreadWorld.run(world) { (communicator: Communicator) throws(DAEError) in
                    let trainer = try Trainer(config: config, data: data, communicator: communicator, threads: threads)
                    trainer.overlapReduction = overlap
                    _ = try trainer.trainEpoch()
                    return trainer.params.array
                }
                for rank in ranks { results.append(try rank.get()) }
                XCTAssertEqual(world.started.load(ordering: .relaxed), overlap ? size * 3 : 0, "\(size) ranks")
            }
            for r in results { XCTAssertEqual(r, results[0], "\(size) ranks x \(threads) threads") }
        }
    }

    /// Fast mode's worker threads split a rank's share as ranks split the batch, and their
    /// gradients are summed in worker order as the test world sums ranks in rank order: T threads
    /// on one rank give the weights and losses of T ranks with one thread each, also when the
    /// epoch's last step (41 samples, batch 20: one sample) leaves workers without samples.
    func testFastModeWorkerThreadsSumAsRanksDo() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(41)
        var settings = TrainConfig()
        settings.reduce = .fast
        let config = settings
        for threads in [2, 3] {
            let one = try Trainer(config: config, data: data, threads: threads)
            XCTAssertEqual(one.workerCount, threads)
            let oneLoss = try one.trainEpoch().meanLoss
            let world = ThreadWorld(size: threads, overlap: false)
            let ranks = ThreadWorld.run(world) { (communicator: Communicator) throws(DAEError) in
                let trainer = try Trainer(config: config, data: data, communicator: communicator, threads: 1)
                return (try trainer.trainEpoch().meanLoss, trainer.params.array)
            }
            for rank in ranks {
                let (loss, params) = try rank.get()
                XCTAssertEqual(params, one.params.array, "\(threads) threads")
                XCTAssertEqual(loss, oneLoss, "\(threads) threads")
            }
        }
        // a rank's share smaller than its threads: as many workers as samples
        settings.batchSize = 2
        XCTAssertEqual(try Trainer(config: settings, data: data, threads: 4).workerCount, 2)
    }

    func testExactAndFastModesAgreeClosely() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .train).prefix(60)
        var config = TrainConfig()
        let exact = try Trainer(config: config, data: data)
        config.reduce = .fast
        let fast = try Trainer(config: config, data: data)
        _ = try exact.trainEpoch(); _ = try fast.trainEpoch()
        XCTAssertLessThan(relativeError(exact.params.array, fast.params.array), 1e-3)
    }

    func testTooManyRanksForTheBatchIsAnError() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .test).prefix(100)
        var config = TrainConfig()   // batch 20, micro-batch 5: 4 micro-batches for 8 ranks
        XCTAssertThrowsError(try Trainer(config: config, data: data, communicator: FakeWorld(size: 8))) {
            XCTAssertTrue("\($0)".hasPrefix("--micro-batch: 8 ranks need at least 8 micro-batches"), "\($0)")
        }
        config.microBatch = 2
        XCTAssertNoThrow(try Trainer(config: config, data: data, communicator: FakeWorld(size: 8)))
        config.reduce = .fast
        config.batchSize = 4
        XCTAssertThrowsError(try Trainer(config: config, data: data, communicator: FakeWorld(size: 8))) {
            XCTAssertTrue("\($0)".hasPrefix("--batch-size: 8 ranks"), "\($0)")
        }
    }

    func testLauncherDetection() throws {
        XCTAssertFalse(Launch.startedByLauncher([:]))
        XCTAssertTrue(Launch.startedByLauncher(["OMPI_COMM_WORLD_SIZE": "2"]))
        XCTAssertTrue(Launch.startedByLauncher(["PMIX_RANK": "0"]))
        XCTAssertTrue(Launch.startedByLauncher(["PMI_RANK": "0"]))
        XCTAssertEqual(try Launch.makeCommunicator([:]).size, 1)
        XCTAssertThrowsError(try Launch.makeCommunicator(["SLURM_NTASKS": "4"])) {
            XCTAssertTrue("\($0)".contains("srun --mpi=pmix"), "\($0)")
        }
        XCTAssertEqual(try Launch.makeCommunicator(["SLURM_NTASKS": "1"]).size, 1)
    }
}

final class WorkerPoolTests: XCTestCase {
    /// Every part runs exactly once per round, on spinning helpers and on parked ones (a zero spin
    /// budget parks them between rounds), and a pool that goes away lets its threads end.
    func testEveryPartRunsOncePerRound() {
        for spin in [0.005, 0] {
            let pool = WorkerPool(threads: 3, spinSeconds: spin)
            let counts = UnsafeMutablePointer<Int>.allocate(capacity: 3)
            counts.initialize(repeating: 0, count: 3)
            defer { counts.deallocate() }
            nonisolated(unsafe) let shared = counts
            for round in 1...300 {
                pool.run { part in shared[part] += 1 }
                XCTAssertEqual([counts[0], counts[1], counts[2]], [round, round, round], "spin \(spin)")
                if round % 100 == 0 { usleep(20_000) }      // a pause longer than the spin budget
            }
        }
        let single = WorkerPool(threads: 1)
        var ran = 0
        withUnsafeMutablePointer(to: &ran) { p in
            nonisolated(unsafe) let p = p
            single.run { _ in p.pointee += 1 }
        }
        XCTAssertEqual(ran, 1)
    }
}
