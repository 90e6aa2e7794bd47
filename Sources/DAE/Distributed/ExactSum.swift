// The exact reduction of a data-parallel gradient step, shared by the trainer's exact mode and
// the linear probe. One round, with W worker threads on each rank:
//   1. begin(count:extras:)          caller: this round's layout; extra slots and flags zeroed
//   2. add(worker:...)               worker w, in a WorkerPool job: its contributions (micro-batch
//                                    or chunk gradients) rounded to fixed point and added into the
//                                    rank's one Int64 accumulator; setExtra(j, ...) for its items
//   3. allreduce(over:stop:)         caller: overflow count and stop flag filled in, then one Int64
//                                    allreduce of the whole buffer over the ranks
//   4. toFloat(_:into:)              pool job or caller: the sum back to Float, a range at a time
//                                    (the trainer runs Adam on each range while it is in cache);
//                                    the range is zeroed as it is read, ready for the next round
// With overlap (the trainer's, on several ranks), 3 runs in two buckets: as soon as every
// worker's contributions to the values from `split` on are in (a model's decoder, whose backward
// runs first), one worker calls startTail(from:over:), which starts their allreduce without
// waiting; the rest of the step computes meanwhile; then allreduce(over:stop:headValues: split)
// reduces the head and waits for both. Integer sums: the buckets change no bit.
// Buffers are allocated once, at init; a round allocates nothing.

import Foundation
import Synchronization

/// Exact, world-size independent sums of Float vectors: every contribution is rounded once to
/// 64-bit fixed point (FixedPoint, 2^-40 resolution) and from then on only integers are added.
/// Integer addition is associative and commutative, so neither how contributions are spread over
/// worker threads, nor in which order the threads add them, nor how many ranks there are, nor the
/// order of MPI's reduction tree changes a bit of the sum; it is converted back to Float once,
/// after the allreduce. The extra slots carry one Double per work item (e.g. a chunk's loss) as a
/// bit pattern: exactly one rank writes each slot and the others add 0, so it arrives unchanged,
/// and `sumOfExtras` adds them in item order.
///
/// The worker threads of a rank add into the same accumulator, which is the reduce buffer itself:
/// each holds a lock on a block of 8,192 values while it adds there, and starts its walk over the
/// blocks at its own place, so that two workers seldom want the same block. One accumulator
/// instead of one per worker saves, every round, zeroing each worker's copy, summing the copies
/// and their memory (8 bytes a value and worker: 45 MB each for the stacked model).
///
/// Reduce buffer: [extras slots | overflow count | stop flag | count values], Int64: the values
/// last, so that a tail of them can be reduced on its own, ahead of the rest (the overlap).
public final class ExactSum: @unchecked Sendable {
    /// The most values and extra slots a round can have.
    public let capacity: Int, extrasCapacity: Int
    /// Worker threads that may add at the same time.
    public let workers: Int
    /// This round's layout (see `begin`).
    public private(set) var count: Int, extras: Int
    /// [extras (extrasCapacity) | overflow | stop | count values]; after `allreduce`, the sum over
    /// all workers and ranks.
    let buffer: UnsafeMutablePointer<Int64>
    /// The values' part of the buffer (buffer + header): the accumulator, then the sum.
    public let values: UnsafeMutablePointer<Int64>
    /// Slots in front of the values: the extras, the overflow count and the stop flag.
    let header: Int
    /// Values per lock, and the locks (0 free, 1 held); none with one worker.
    static let lockBlock = 8192
    let locks: UnsafeMutablePointer<Atomic<Int32>>
    let lockCount: Int
    let overflowed: UnsafeMutablePointer<Int64>          // worker w's flag at w * 8 (one cache line each)
    /// Values of this round already read back by `toFloat` (and so zeroed); when a round ends
    /// with fewer (an error, a test), `begin` zeroes the accumulator itself.
    let drained = Atomic<Int>(0)

    public init(capacity: Int, extras: Int, workers: Int) {
        precondition(capacity >= 0 && extras >= 0 && workers >= 1)
        self.capacity = capacity; extrasCapacity = extras; self.workers = workers
        count = capacity; self.extras = extras
        header = extras + 2
        buffer = .allocate(capacity: header + capacity)
        buffer.initialize(repeating: 0, count: header + capacity)
        values = buffer + header
        drained.store(capacity, ordering: .relaxed)          // all zero: nothing to clear
        lockCount = workers > 1 ? (capacity + Self.lockBlock - 1) / Self.lockBlock : 0
        locks = .allocate(capacity: max(lockCount, 1))
        for k in 0..<lockCount { (locks + k).initialize(to: Atomic(0)) }
        overflowed = .allocate(capacity: workers * 8)
        overflowed.initialize(repeating: 0, count: workers * 8)
    }

    deinit {
        locks.deinitialize(count: lockCount); locks.deallocate()
        buffer.deallocate(); overflowed.deallocate()
    }

    var overflowSlot: Int { extrasCapacity }
    var stopSlot: Int { extrasCapacity + 1 }

    /// Starts a round over the first `count` values with `extras` extra slots (both may change
    /// from round to round: a stacked model trains one layer's slice, a short last batch has
    /// fewer micro-batches). Zeroes the extra, overflow and stop slots (all of them: the whole
    /// header is reduced) and the workers' overflow flags; the accumulator is already zero unless
    /// the last round's sum was not read back whole, and then it is zeroed here. Call before the
    /// workers run.
    public func begin(count: Int, extras: Int) {
        precondition(count <= capacity && extras <= extrasCapacity)
        if drained.load(ordering: .acquiring) < self.count { values.update(repeating: 0, count: self.count) }
        self.count = count; self.extras = extras
        drained.store(0, ordering: .relaxed)
        buffer.update(repeating: 0, count: header)
        for w in 0..<workers { overflowed[w * 8] = 0 }
    }

    /// accumulator[offset + i] += round(values[i] * 2^40) for i in 0 ..< count, by worker w
    /// (offset + count <= this round's count). A value that is not finite or exceeds `limit`
    /// (FixedPoint.limit(terms:) of the round's number of contributions) marks the worker as
    /// overflowed; `allreduce` counts it. Workers may call it at the same time; `exclusive`: the
    /// caller guarantees that no other worker adds to these values meanwhile (a team whose threads
    /// own disjoint chunks), and no lock is taken.
    public func add(worker w: Int, values: UnsafePointer<Float>, count: Int, limit: Double, at offset: Int = 0, exclusive: Bool = false) {
        precondition(offset >= 0 && offset + count <= self.count && w < workers)
        guard count > 0 else { return }
        guard workers > 1 && !exclusive else {
            if !FixedPoint.accumulate(values, into: self.values + offset, count: count, limit: limit) { overflowed[w * 8] = 1 }
            return
        }
        // the lock blocks the range touches, walked from worker w's share of them on, wrapping
        let first = offset / Self.lockBlock, last = (offset + count - 1) / Self.lockBlock
        let blocks = last - first + 1
        var ok = true
        for step in 0..<blocks {
            let k = first + (step + w * blocks / workers) % blocks
            let lower = max(offset, k * Self.lockBlock), upper = min(offset + count, (k + 1) * Self.lockBlock)
            var spins = 0
            while !locks[k].compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
                spins += 1
                if spins & 255 == 0 { sched_yield() }      // the holder may have lost its core
            }
            ok = FixedPoint.accumulate(values + (lower - offset), into: self.values + lower, count: upper - lower, limit: limit) && ok
            locks[k].store(0, ordering: .releasing)
        }
        if !ok { overflowed[w * 8] = 1 }
    }

    /// Worker w's way to add values in fixed point itself (FixedPointTarget), the values of a
    /// flat parameter buffer from index `first` on being this round's values from 0 on: what
    /// `add(worker: w, ..., limit: limit, at: i - first, exclusive: true)` would do. Only for values
    /// no other worker adds to meanwhile.
    public func directTarget(worker w: Int, limit: Double, first: Int) -> FixedPointTarget {
        precondition(w < workers)
        return FixedPointTarget(accumulator: values, first: first, limit: limit, overflowFlag: overflowed + w * 8)
    }

    /// Extra slot j (0 ..< extras) holds `value`'s bit pattern. Only one rank and worker may write
    /// a given slot in a round.
    @inline(__always)
    public func setExtra(_ j: Int, _ value: Double) {
        buffer[j] = Int64(bitPattern: value.bitPattern)
    }

    /// Extra slot j as a Double (after `allreduce`: whatever the one writing rank put there).
    public func extra(_ j: Int) -> Double { Double(bitPattern: UInt64(bitPattern: buffer[j])) }

    /// The extra slots added in slot order, so the same on any number of ranks.
    public func sumOfExtras() -> Double {
        var total = 0.0
        for j in 0..<extras { total += extra(j) }
        return total
    }

    /// Part w of `parts` of this round's values, in blocks of 16 (alignedShare).
    public func part(_ w: Int, of parts: Int) -> Range<Int> { alignedShare(count, part: w, of: parts) }

    /// The overlap's first bucket: the allreduce of values[split ..< count] started over the ranks
    /// without waiting. Call once every worker's contributions to those values are in; it may run
    /// on a worker thread (see Communicator.overlapsReductions). `allreduce(over:stop:headValues:
    /// split)` completes it.
    public func startTail(from split: Int, over communicator: Communicator) {
        communicator.startAllreduceSum(values + split, count: count - split)
    }

    /// Fills in how many workers overflowed and this rank's stop request, then sums the buffer
    /// over all ranks: the header and values[0 ..< headValues] (default: all values) in one
    /// allreduce; with a tail started by `startTail(from: headValues)`, then waits for that too.
    public func allreduce(over communicator: Communicator, stop: Bool = false, headValues: Int? = nil) {
        var overflows: Int64 = 0
        for w in 0..<workers where overflowed[w * 8] != 0 { overflows += 1 }
        buffer[overflowSlot] = overflows
        buffer[stopSlot] = stop ? 1 : 0
        communicator.allreduceSum(buffer, count: header + (headValues ?? count))
        if headValues != nil { communicator.finishPending() }
    }

    /// After `allreduce`: the number of workers, over all ranks, that met a value out of range.
    public var overflows: Int64 { buffer[overflowSlot] }
    /// After `allreduce`: whether any rank asked to stop.
    public var stopRequested: Bool { buffer[stopSlot] != 0 }

    /// out[i] = Float(sum[i] / 2^40) for i in `range` of this round's values, which are zeroed
    /// for the next round as they are read. Every value must be read back once per round (ranges
    /// may go to different threads).
    public func toFloat(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        precondition(range.upperBound <= count)
        FixedPoint.drain(values + range.lowerBound, into: out + range.lowerBound, count: range.count)
        drained.add(range.count, ordering: .releasing)
    }
}
