// The worker threads of one rank: the one parallel executor of the library (training steps,
// evaluation, sampling, feature extraction, the linear probe). A training step hands each worker
// its micro-batches and waits for all of them, several hundred times a second. Measured with
// libdispatch's parallel loop, which wakes its threads for every call, the second thread started
// on average 0.43 ms into a 7.4 ms step and the caller resumed 0.48 ms after the last worker
// finished: two thread wake-ups per step on this VM, 12% of the step.
//
// Here the helper threads stay awake between steps: each spins on a round counter for up to
// `spinSeconds` (longer than the serial part of a step: reduction, Adam, logging), then parks on a
// condition variable, so a pause for evaluation or a checkpoint costs no CPU. The caller runs
// part 0 itself and spins until the helpers have reported; a step allocates nothing.
//
// One pool can serve several users (the trainer hands its pool to its evaluator) as long as their
// rounds do not overlap: `run` is not re-entrant, and evaluation runs between training steps on
// the same thread.

import Foundation
import Synchronization

public final class WorkerPool: @unchecked Sendable {
    /// Threads taking part, the caller included.
    public let count: Int
    private let shared: Shared
    private let running = Atomic<Bool>(false)   // a round in progress: `run` is not re-entrant

    /// What the helper threads see: the round counter, the job, completion and parking.
    private final class Shared: @unchecked Sendable {
        let round = Atomic<Int>(0)             // bumped (release) to start a round; -1: exit
        let finished = Atomic<Int>(0)          // helpers done with the current round
        var job: (@Sendable (Int) -> Void)? = nil   // written before `round` is bumped
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        var sleepers = 0                       // under mutex
        let spinSeconds: Double

        init(spinSeconds: Double) {
            self.spinSeconds = spinSeconds
            pthread_mutex_init(mutex, nil)
            pthread_cond_init(wake, nil)
        }

        deinit {
            pthread_cond_destroy(wake); pthread_mutex_destroy(mutex)
            wake.deallocate(); mutex.deallocate()
        }

        /// Helper `index`'s loop: wait for the next round, run the job, report.
        func serve(_ index: Int) {
            var seen = 0
            while true {
                var next = round.load(ordering: .acquiring)
                if next == seen {
                    let start = monotonicSeconds()
                    var spins = 0
                    while next == seen {
                        spins += 1
                        // every 1024 spins: let another thread have this core (more threads than
                        // cores), and park once the budget is spent
                        if spins & 1023 == 0 { sched_yield() }
                        if spins & 1023 == 0 && monotonicSeconds() - start > spinSeconds {
                            pthread_mutex_lock(mutex)
                            sleepers += 1
                            next = round.load(ordering: .acquiring)
                            while next == seen {
                                pthread_cond_wait(wake, mutex)
                                next = round.load(ordering: .acquiring)
                            }
                            sleepers -= 1
                            pthread_mutex_unlock(mutex)
                        } else {
                            next = round.load(ordering: .acquiring)
                        }
                    }
                }
                if next < 0 { return }
                seen = next
                job!(index)
                finished.add(1, ordering: .releasing)
            }
        }
    }

    /// `threads` - 1 helper threads are started (none for 1); they end when the pool goes away.
    public init(threads: Int, spinSeconds: Double = 0.005) {
        count = max(1, threads)
        let shared = Shared(spinSeconds: spinSeconds)
        self.shared = shared
        // The helpers hold `shared` only, so the pool can go away; its deinit tells them to end.
        for index in 1..<max(1, threads) {
            let thread = Thread { shared.serve(index) }
            thread.name = "dae-worker-\(index)"
            thread.start()
        }
    }

    /// Runs body(0) on the calling thread and body(1) ... body(count-1) on the helpers, and
    /// returns when all are done. One round at a time: calling it again from a job, or from two
    /// threads at once, is a programming error and traps.
    public func run(_ body: @escaping @Sendable (Int) -> Void) {
        precondition(running.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged,
                     "WorkerPool.run called while a round is in progress")
        defer { running.store(false, ordering: .releasing) }
        guard count > 1 else { body(0); return }
        shared.job = body
        shared.finished.store(0, ordering: .relaxed)
        let next = shared.round.load(ordering: .relaxed) + 1
        shared.round.store(next, ordering: .releasing)
        pthread_mutex_lock(shared.mutex)
        if shared.sleepers > 0 { pthread_cond_broadcast(shared.wake) }
        pthread_mutex_unlock(shared.mutex)
        body(0)
        var spins = 0
        while shared.finished.load(ordering: .acquiring) < count - 1 {
            spins += 1
            if spins & 255 == 0 { sched_yield() }   // let a descheduled helper have the core
        }
    }

    deinit {
        shared.round.store(-1, ordering: .releasing)
        pthread_mutex_lock(shared.mutex)
        pthread_cond_broadcast(shared.wake)
        pthread_mutex_unlock(shared.mutex)
    }
}
