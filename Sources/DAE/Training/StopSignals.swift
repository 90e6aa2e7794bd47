// Preemption: SIGTERM, SIGINT and SIGUSR1 ask training to stop. The handler only sets a flag
// (the one thing a signal handler may safely do); the trainer reads it once per step, the ranks
// agree on it in that step's allreduce, rank 0 writes a checkpoint and everyone exits 0. A second
// signal while the checkpoint is written sets the same flag again and changes nothing; the write
// itself is atomic (temporary file, fsync, rename).

import Foundation
import Synchronization

private let stopSignalCount = Atomic<Int>(0)
private let lastStopSignal = Atomic<Int32>(0)

public enum StopSignals {
    public static let handled: [Int32] = [SIGTERM, SIGINT, SIGUSR1]

    /// Installs the handlers (once, at startup).
    public static func install() {
        for signalNumber in handled {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                stopSignalCount.add(1, ordering: .relaxed)
                lastStopSignal.store(number, ordering: .relaxed)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(signalNumber, &action, nil)
        }
    }

    /// Whether a stop signal has arrived in this process.
    public static var requested: Bool { stopSignalCount.load(ordering: .relaxed) > 0 }

    /// The last signal's name, for the log.
    public static var lastName: String {
        switch lastStopSignal.load(ordering: .relaxed) {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGUSR1: return "SIGUSR1"
        default: return "a signal on another rank"
        }
    }
}
