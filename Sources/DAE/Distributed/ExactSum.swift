// The exact reduction of a data-parallel gradient step, shared by the trainer's exact mode and
// the linear probe. One round, with W worker threads on each rank:
//   1. begin(count:extras:)          caller: this round's layout, extra slots zeroed
//   2. clear(worker:), add(worker:)  worker w, in a WorkerPool job: its contributions (micro-batch
//                                    or chunk gradients) rounded to fixed point and summed into its
//                                    own Int64 accumulator; setExtra(j, ...) for its items' slots
//   3. sumWorkers(part:of:)          pool job: values = sum of the W accumulators, part w of it
//   4. allreduce(over:stop:)         caller: overflow count and stop flag filled in, then one Int64
//                                    allreduce of the whole buffer over the ranks
//   5. toFloat(part:of:into:)        pool job or caller: the sum back to Float, part w of it
// With overlap (the trainer's, on several ranks), 3 and 4 run in two buckets: as soon as every
// worker's share of the values from `split` on is final (a model's decoder, whose backward runs
// first), one worker calls startTail(from:over:), which sums that tail of the accumulators and
// starts its allreduce without waiting; the rest of the step computes meanwhile; then the head
// (sumWorkers with `below: split`, and allreduce(over:stop:headValues: split)) goes as usual and
// waits for both. Integer sums: the buckets change no bit.
// Buffers are allocated once, at init; a round allocates nothing.

/// Exact, world-size independent sums of Float vectors: every contribution is rounded once to
/// 64-bit fixed point (FixedPoint, 2^-40 resolution) and from then on only integers are added.
/// Integer addition is associative and commutative, so neither how contributions are spread over
/// worker threads, nor how many ranks there are, nor the order of MPI's reduction tree changes a
/// bit of the sum; it is converted back to Float once, after the allreduce. The extra slots carry
/// one Double per work item (e.g. a chunk's loss) as a bit pattern: exactly one rank writes each
/// slot and the others add 0, so it arrives unchanged, and `sumOfExtras` adds them in item order.
///
/// Reduce buffer: [extras slots | overflow count | stop flag | count values], Int64: the values
/// last, so that a tail of them can be reduced on its own, ahead of the rest (the overlap).
public final class ExactSum: @unchecked Sendable {
    /// The most values and extra slots a round can have.
    public let capacity: Int, extrasCapacity: Int
    /// Accumulators, one per worker thread.
    public let workers: Int
    /// This round's layout (see `begin`).
    public private(set) var count: Int, extras: Int
    /// [extras (extrasCapacity) | overflow | stop | count values]; after `allreduce`, the sum over
    /// all workers and ranks.
    let buffer: UnsafeMutablePointer<Int64>
    /// The values' part of the buffer: buffer + header.
    public let values: UnsafeMutablePointer<Int64>
    /// Slots in front of the values: the extras, the overflow count and the stop flag.
    let header: Int
    let accumulators: [UnsafeMutablePointer<Int64>]      // [workers][capacity]; one worker's is `values`
    let overflowed: UnsafeMutablePointer<Int64>          // worker w's flag at w * 8 (one cache line each)

    public init(capacity: Int, extras: Int, workers: Int) {
        precondition(capacity >= 0 && extras >= 0 && workers >= 1)
        self.capacity = capacity; extrasCapacity = extras; self.workers = workers
        count = capacity; self.extras = extras
        header = extras + 2
        buffer = .allocate(capacity: header + capacity)
        buffer.initialize(repeating: 0, count: header + capacity)
        values = buffer + header
        // One worker accumulates straight into the buffer's values: nothing to sum, and for a
        // large model no copy of 8 bytes a value (the usual case of one rank per core).
        accumulators = workers == 1 ? [values] : (0..<workers).map { _ in
            let a = UnsafeMutablePointer<Int64>.allocate(capacity: max(capacity, 1))
            a.initialize(repeating: 0, count: max(capacity, 1))
            return a
        }
        overflowed = .allocate(capacity: workers * 8)
        overflowed.initialize(repeating: 0, count: workers * 8)
    }

    deinit {
        buffer.deallocate(); overflowed.deallocate()
        if workers > 1 { for a in accumulators { a.deallocate() } }
    }

    var overflowSlot: Int { extrasCapacity }
    var stopSlot: Int { extrasCapacity + 1 }

    /// Starts a round over the first `count` values with `extras` extra slots (both may change
    /// from round to round: a stacked model trains one layer's slice, a short last batch has
    /// fewer micro-batches). Zeroes the extra, overflow and stop slots (all of them: the whole
    /// header is reduced). Call before the workers run.
    public func begin(count: Int, extras: Int) {
        precondition(count <= capacity && extras <= extrasCapacity)
        self.count = count; self.extras = extras
        buffer.update(repeating: 0, count: header)
    }

    /// Zeroes worker w's accumulator and overflow flag. Every worker calls it once per round,
    /// whether or not it then has work, since all W accumulators are summed.
    @inline(__always)
    public func clear(worker w: Int) {
        accumulators[w].update(repeating: 0, count: count)
        overflowed[w * 8] = 0
    }

    /// Worker w's accumulator[offset + i] += round(values[i] * 2^40) for i in 0 ..< count
    /// (offset + count <= this round's count). A value that is not finite or exceeds `limit`
    /// (FixedPoint.limit(terms:) of the round's number of contributions) marks the worker as
    /// overflowed; `allreduce` counts it.
    @inline(__always)
    public func add(worker w: Int, values: UnsafePointer<Float>, count: Int, limit: Double, at offset: Int = 0) {
        precondition(offset >= 0 && offset + count <= self.count)
        if !FixedPoint.accumulate(values, into: accumulators[w] + offset, count: count, limit: limit) {
            overflowed[w * 8] = 1
        }
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

    /// values = the sum of the workers' accumulators, over part w of `parts` of values[0 ..< below]
    /// (default: all of this round's values). Run parts 0 ..< parts (e.g. as a WorkerPool job)
    /// after every worker has finished adding.
    public func sumWorkers(part w: Int, of parts: Int, below: Int? = nil) {
        sumWorkers(alignedShare(below ?? count, part: w, of: parts))
    }

    func sumWorkers(_ range: Range<Int>) {
        guard workers > 1 else { return }             // the one accumulator is the values
        let values = self.values
        (values + range.lowerBound).update(from: accumulators[0] + range.lowerBound, count: range.count)
        for k in 1..<workers {
            let a = accumulators[k]
            for i in range { values[i] &+= a[i] }
        }
    }

    /// The overlap's first bucket: values[split ..< count] = the sum of the workers'
    /// accumulators there, and its allreduce started over the ranks without waiting. Call once
    /// every worker's contributions to those values are final; it may run on a worker thread
    /// (see Communicator.overlapsReductions). `allreduce(over:stop:headValues: split)` completes it.
    public func startTail(from split: Int, over communicator: Communicator) {
        sumWorkers(split ..< count)
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

    /// out[i] = Float(sum[i] / 2^40) for i in part w of `parts` of the values.
    public func toFloat(part w: Int, of parts: Int, into out: UnsafeMutablePointer<Float>) {
        let range = part(w, of: parts)
        FixedPoint.toFloat(values + range.lowerBound, into: out + range.lowerBound, count: range.count)
    }
}
