// Several threads running one network's forward and backward together (the stacked model's
// threads): every thread runs the same sequence of layers, each computing its part of every layer
// (fast mode: a slice of the output features, or of the batch's rows; exact mode: the same
// slices over all the micro-batches, or some chunks of a weight gradient; without the C kernel,
// some of the micro-batches instead of slices), and they meet at a barrier wherever the
// next layer reads what all of them wrote. In fast mode the alternative, one network replica
// per thread on half the batch each, packs every weight matrix and writes every weight gradient
// once per thread; split by features, each thread packs and writes its half. In exact mode a
// thread owning a chunk of every layer's weight gradient over all micro-batches owns that part of
// the fixed-point accumulator too: read and written once a step, without locks
// (docs/benchmarks.md has the measurements).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Threads meeting: `wait` returns once all `parties` have called it. Spins (the waits are
/// short: between two layers), yielding now and then for a descheduled thread.
public final class SpinBarrier: @unchecked Sendable {
    public let parties: Int
    private let arrived = Atomic<Int>(0)
    private let generation = Atomic<Int>(0)

    public init(parties: Int) { self.parties = max(1, parties) }

    public func wait() {
        guard parties > 1 else { return }
        let current = generation.load(ordering: .acquiring)
        if arrived.add(1, ordering: .acquiringAndReleasing).newValue == parties {
            // the last to arrive resets the count before releasing the others, so that none
            // of them can reach the next barrier and find it stale
            arrived.store(0, ordering: .relaxed)
            generation.store(current &+ 1, ordering: .releasing)
            return
        }
        var spins = 0
        while generation.load(ordering: .acquiring) == current {
            spins += 1
            if spins & 255 == 0 { sched_yield() }
        }
    }
}

/// One thread's place in a team: part `index` of `count`.
public struct TeamPart: Sendable {
    public let index: Int
    let barrier: SpinBarrier?

    /// A team of one: every share is the whole, `sync` does nothing.
    public static let alone = TeamPart(index: 0, barrier: nil)

    public init(index: Int, of barrier: SpinBarrier) { self.init(index: index, barrier: barrier) }

    private init(index: Int, barrier: SpinBarrier?) { self.index = index; self.barrier = barrier }

    /// The threads of the team.
    public var count: Int { barrier?.parties ?? 1 }

    /// This thread's near-equal contiguous part of 0 ..< total (evenShare).
    public func share(_ total: Int) -> Range<Int> { evenShare(total, part: index, of: count) }

    /// This thread's near-equal contiguous part of 0 ..< total in whole units of `size` (the
    /// last unit may be shorter): its micro-batches of a run of them, or its chunks of a layer.
    public func share(_ total: Int, inUnitsOf size: Int) -> Range<Int> {
        let units = evenShare((total + size - 1) / size, part: index, of: count)
        return min(units.lowerBound * size, total) ..< min(units.upperBound * size, total)
    }

    /// Waits for the other threads of the team.
    public func sync() { barrier?.wait() }
}
