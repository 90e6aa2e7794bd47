// The parallel engine: the even split of work items (evenShare) and of buffers (alignedShare),
// the exact reduction (ExactSum) on any number of workers, the evaluator on one or two threads and
// on a shared WorkerPool, and the checks that keep bad indices and labels out.

@testable import DAE
import Foundation
import Synchronization
import XCTest

final class ParallelEngineTests: XCTestCase {
    func testEvenShareMatchesHandComputedRanges() {
        func shares(_ count: Int, _ parts: Int) -> [Range<Int>] { (0..<parts).map { evenShare(count, part: $0, of: parts) } }
        XCTAssertEqual(shares(10, 4), [0..<2, 2..<5, 5..<7, 7..<10])
        XCTAssertEqual(shares(12, 4), [0..<3, 3..<6, 6..<9, 9..<12])           // exact division
        XCTAssertEqual(shares(3, 5), [0..<0, 0..<1, 1..<1, 1..<2, 2..<3])      // fewer items than parts
        XCTAssertEqual(shares(0, 3), [0..<0, 0..<0, 0..<0])                     // nothing to share
        XCTAssertEqual(shares(7, 1), [0..<7])
        // the users: a step's micro-batches and positions, the probe's chunks
        let plan = StepPlan(first: 40, count: 10, microBatch: 3)                 // micro-batches 0..<4
        XCTAssertEqual((0..<3).map { plan.microBatches(rank: $0, size: 3) }, [0..<1, 1..<2, 2..<4])
        XCTAssertEqual((0..<4).map { plan.positions(rank: $0, size: 4) }, [40..<42, 42..<45, 45..<47, 47..<50])
        XCTAssertEqual((0..<2).map { LinearProbe.chunks(650, rank: $0, size: 2) }, [0..<3, 3..<7])   // 7 chunks of 100

        func aligned(_ count: Int, _ parts: Int) -> [Range<Int>] { (0..<parts).map { alignedShare(count, part: $0, of: parts) } }
        XCTAssertEqual(aligned(100, 3), [0..<48, 48..<96, 96..<100])
        XCTAssertEqual(aligned(10, 4), [0..<10, 10..<10, 10..<10, 10..<10])
        XCTAssertEqual(aligned(64, 2), [0..<32, 32..<64])
        XCTAssertEqual(aligned(0, 2), [0..<0, 0..<0])
    }

    /// Five contributions of 37 values (small ones for FixedPoint's fast loop, one with a value
    /// above 2^11 for its careful loop), each with a loss for its extra slot.
    func contributions() -> [[Float]] {
        (0..<5).map { k in
            var v = randomArray(37, seed: UInt64(10 + k)).map { $0 * Float(k + 1) * 0.37 }
            if k == 3 { v[5] = 5000.123 }
            return v
        }
    }

    /// Sums `contributions` with `owner[k]` the worker of contribution k, read back in `parts`
    /// parts; returns the Float sum's bits, the raw Int64 values and the sum of the extras.
    func exactSum(_ values: [[Float]], workers: Int, owner: [Int], parts: Int) -> (bits: [UInt32], raw: [Int64], loss: Double) {
        let n = values[0].count
        let exact = ExactSum(capacity: n + 5, extras: values.count + 2, workers: workers)
        exact.begin(count: n, extras: values.count)
        let limit = FixedPoint.limit(terms: values.count)
        for (k, v) in values.enumerated() {
            v.withUnsafeBufferPointer { exact.add(worker: owner[k], values: $0.baseAddress!, count: n, limit: limit) }
            exact.setExtra(k, Double(v[0]) * 0.1)
        }
        exact.allreduce(over: SingleProcess())
        XCTAssertEqual(exact.overflows, 0)
        XCTAssertFalse(exact.stopRequested)
        let raw = Array(UnsafeBufferPointer(start: exact.values, count: n))
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { for w in 0..<parts { exact.toFloat(exact.part(w, of: parts), into: $0.baseAddress!) } }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: exact.values, count: n)), [Int64](repeating: 0, count: n),
                       "read back, the accumulator is zero for the next round")
        return (out.map(\.bitPattern), raw, exact.sumOfExtras())
    }

    /// No thread passes a barrier before every thread has reached it: each round, each thread
    /// writes its slot, waits, and finds every slot of the round written; over many rounds the
    /// barrier is reused without a stale count letting one through early.
    func testSpinBarrierHoldsEveryThreadUntilAllArrive() {
        let threads = 3, rounds = 2_000
        let barrier = SpinBarrier(parties: threads), pool = WorkerPool(threads: threads)
        let slots = UnsafeMutablePointer<Int>.allocate(capacity: threads), seen = Atomic<Int>(0)
        slots.initialize(repeating: -1, count: threads)
        defer { slots.deallocate() }
        final class Raw: @unchecked Sendable { let p: UnsafeMutablePointer<Int>; init(_ p: UnsafeMutablePointer<Int>) { self.p = p } }
        let raw = Raw(slots)
        pool.run { w in
            for round in 0..<rounds {
                raw.p[w] = round
                barrier.wait()
                var ok = true
                for other in 0..<threads where raw.p[other] < round { ok = false }
                if ok { seen.add(1, ordering: .relaxed) }
                barrier.wait()
            }
        }
        XCTAssertEqual(seen.load(ordering: .relaxed), threads * rounds)
        XCTAssertEqual(TeamPart(index: 1, of: barrier).share(10), 3 ..< 6)
        XCTAssertEqual(TeamPart.alone.share(10), 0 ..< 10)
    }

    func testExactSumIsTheSameWhateverTheWorkers() {
        let values = contributions()
        let one = exactSum(values, workers: 1, owner: [0, 0, 0, 0, 0], parts: 1)
        // the reference: one FixedPoint accumulator over every contribution, converted once
        var acc = [Int64](repeating: 0, count: 37), reference = [Float](repeating: 0, count: 37)
        for v in values { FixedPoint.accumulate(v, into: &acc, count: 37, limit: FixedPoint.limit(terms: 5)) }
        FixedPoint.toFloat(acc, into: &reference, count: 37)
        XCTAssertEqual(one.bits, reference.map(\.bitPattern))
        XCTAssertEqual(one.raw, acc)
        for (workers, owner, parts) in [(3, [0, 1, 2, 0, 1], 1), (3, [2, 2, 0, 1, 2], 3), (3, [1, 1, 1, 1, 1], 2), (4, [3, 0, 3, 0, 1], 4)] {
            let other = exactSum(values, workers: workers, owner: owner, parts: parts)
            XCTAssertEqual(other.bits, one.bits, "\(workers) workers, owners \(owner), \(parts) parts")
            XCTAssertEqual(other.raw, one.raw)
            XCTAssertEqual(other.loss.bitPattern, one.loss.bitPattern)
        }
    }

    /// Worker threads adding into the one accumulator at the same time, over many lock blocks and
    /// at offsets that cut blocks, give the bits of one thread adding everything in order; a round
    /// whose sum was not read back leaves nothing behind.
    func testExactSumWorkersAddingAtOnceUnderBlockLocks() {
        let n = 3 * ExactSum.lockBlock + 1234, contributions = 12
        let values = (0..<contributions).map { randomArray(n, seed: UInt64(40 + $0)) }
        let limit = FixedPoint.limit(terms: contributions)
        var reference = [Int64](repeating: 0, count: n)
        for v in values {
            FixedPoint.accumulate(v, into: &reference, count: 1000, limit: limit)
            v.withUnsafeBufferPointer { FixedPoint.accumulate($0.baseAddress! + 1000, into: &reference[1000], count: n - 1000, limit: limit) }
        }
        let exact = ExactSum(capacity: n, extras: 0, workers: 3)
        let pool = WorkerPool(threads: 3)
        for round in 0..<3 {
            exact.begin(count: n, extras: 0)
            let next = Atomic<Int>(0)
            pool.run { w in
                while true {
                    let k = next.add(1, ordering: .relaxed).oldValue
                    if k >= contributions { break }
                    // as the trainer's overlap does: the tail first, then the head
                    values[k].withUnsafeBufferPointer {
                        exact.add(worker: w, values: $0.baseAddress! + 1000, count: n - 1000, limit: limit, at: 1000)
                        exact.add(worker: w, values: $0.baseAddress!, count: 1000, limit: limit)
                    }
                }
            }
            exact.allreduce(over: SingleProcess())
            XCTAssertEqual(exact.overflows, 0)
            XCTAssertEqual(Array(UnsafeBufferPointer(start: exact.values, count: n)), reference, "round \(round)")
            // round 1 is not read back: the next begin must clear it
            if round != 1 {
                var out = [Float](repeating: 0, count: n)
                out.withUnsafeMutableBufferPointer { exact.toFloat(0 ..< n, into: $0.baseAddress!) }
            }
        }
    }

    func testExactSumReportsOverflowAndNaNAndCarriesTheStopFlag() {
        let exact = ExactSum(capacity: 8, extras: 2, workers: 3)
        let limit = FixedPoint.limit(terms: 4)                     // 2^22 / 4 = 1048576
        func round(_ rows: [(worker: Int, values: [Float])], stop: Bool = false) -> (overflows: Int64, stop: Bool) {
            exact.begin(count: 4, extras: 2)
            for (w, v) in rows { v.withUnsafeBufferPointer { exact.add(worker: w, values: $0.baseAddress!, count: 4, limit: limit) } }
            exact.allreduce(over: SingleProcess(), stop: stop)
            return (exact.overflows, exact.stopRequested)
        }
        XCTAssertEqual(round([(0, [1, 2, 3, 4]), (2, [1, 1, 1, 1])]).overflows, 0)
        XCTAssertEqual(exact.values[3], Int64(5) << 40)
        XCTAssertEqual(round([(1, [1, .nan, 3, 4])]).overflows, 1)
        XCTAssertEqual(round([(0, [2e6, 0, 0, 0]), (2, [0, 0, 0, -.infinity])]).overflows, 2)
        XCTAssertEqual(round([(0, [1.5e6, 0, 0, 0]), (0, [1, 0, 0, 0])]).overflows, 1)   // one worker, counted once
        // a clean round after a bad one: flags and slots start from zero again
        let clean = round([(1, [0.5, 0, 0, 0])], stop: true)
        XCTAssertEqual(clean.overflows, 0)
        XCTAssertTrue(clean.stop)
        XCTAssertFalse(round([(1, [0.5, 0, 0, 0])]).stop)
    }

    func testEvaluatorIsBitwiseTheSameOnOneTwoAndASharedPool() throws {
        let test = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .test).prefix(120)   // batches of 50, 50, 20
        let params = FloatBuffer(count: ConvDenoiser.makeLayout().count)
        initializeParameters(params, layout: ConvDenoiser.makeLayout(), seed: 3)
        func evaluator(threads: Int) -> Evaluator {
            Evaluator(data: test, noise: .gaussian(factor: 0.5), seed: 5, parameters: params, threads: threads)
        }
        let one = evaluator(threads: 1).evaluate(), two = evaluator(threads: 2).evaluate()
        XCTAssertEqual(one, two)
        XCTAssertEqual(one.images, 120)
        // one pool serving two users in turn, as the trainer shares its pool with its evaluator
        let pool = WorkerPool(threads: 2)
        let shared = Evaluator(data: test, noise: .gaussian(factor: 0.5), seed: 5, parameters: params, pool: pool)
        var config = SampleConfig()
        config.chains = 9; config.steps = 2; config.every = 1; config.burnIn = 1
        let sampler = Sampler(config: config, parameters: params, height: 28, width: 28, test: test, pool: pool)
        let alone = Sampler(config: config, parameters: params, height: 28, width: 28, test: test, threads: 1)
        XCTAssertEqual(shared.evaluate(), one)
        sampler.run(); alone.run()
        XCTAssertEqual(shared.evaluate(), one)
        XCTAssertEqual(sampler.finalStates, alone.finalStates)
    }

    func testLinearProbeTakesItsClassesFromTheLabels() throws {
        // three classes (class folders of an image folder, say), linearly separable by pixel 0
        let labels = (0..<300).map { UInt8($0 % 3) }
        var pixels = (0..<(300 * 16)).map { UInt8($0 * 7 % 200) }
        for i in 0..<300 { pixels[i * 16] = 200 + 20 * labels[i] }
        let data = Dataset(count: 300, height: 4, width: 4, pixels: pixels, labels: labels, source: "three")
        var config = ProbeConfig()
        config.iterations = 200
        config.lr = 0.05
        let probe = LinearProbe(features: FeatureExtractor(.pixels, height: 4, width: 4), train: data, test: data, config: config)
        XCTAssertEqual(probe.classes, 3)
        XCTAssertEqual(try probe.run().testAccuracy, 1, accuracy: 0.02)
        // test labels beyond the training ones still name classes of the classifier
        var more = labels
        more[0] = 4
        let test = Dataset(count: 300, height: 4, width: 4, pixels: pixels, labels: more, source: "five")
        XCTAssertEqual(LinearProbe(features: FeatureExtractor(.pixels, height: 4, width: 4), train: data, test: test, config: config).classes, 5)
    }

    /// Dataset.image traps on an index outside 0..<count. A trap ends the process, so the check
    /// runs in a child: this test binary again, running only this test with DAE_IMAGE_INDEX set.
    func testImageTrapsOnAnIndexOutsideTheDataset() throws {
        let data = Dataset(count: 2, height: 28, width: 28, pixels: [UInt8](repeating: 1, count: 2 * 784), labels: [0, 1], source: "two")
        var out = [Float](repeating: 0, count: 784)
        if let index = ProcessInfo.processInfo.environment["DAE_IMAGE_INDEX"].flatMap({ Int($0) }) {
            out.withUnsafeMutableBufferPointer { data.image(index, into: $0.baseAddress!) }
            return                                       // not trapped: the child exits normally
        }
        out.withUnsafeMutableBufferPointer { data.image(1, into: $0.baseAddress!) }
        XCTAssertEqual(out[0], 1 / 255)
        for index in [2, -1] {
            let child = Process()
            child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
            child.arguments = ["DAETests.ParallelEngineTests/testImageTrapsOnAnIndexOutsideTheDataset"]
            var environment = ProcessInfo.processInfo.environment
            environment["DAE_IMAGE_INDEX"] = String(index)
            environment["SWIFT_BACKTRACE"] = "enable=no"  // a quick trap, no symbolication
            child.environment = environment
            child.standardOutput = FileHandle.nullDevice
            child.standardError = FileHandle.nullDevice
            try child.run()
            child.waitUntilExit()
            XCTAssertEqual(child.terminationReason, .uncaughtSignal, "image(\(index)) of a 2-image dataset did not trap")
        }
    }
}
