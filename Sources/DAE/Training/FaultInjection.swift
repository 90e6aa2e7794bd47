// The one place where tests inject faults into a real run. Each hook is read from the environment
// once, when the process first asks, and does nothing unless its variable is set:
//   DAE_DIST_FAIL_AT=R:S        rank R throws an error when it reaches global step S
//   DAE_DIST_CRASH_AT=R:S       rank R exits abruptly (as if killed) at global step S, no MPI call
//   DAE_DIST_CRASH_IN_WRITE=N   the process dies halfway through writing its N-th checkpoint
// They exist so that Tests/mpi-checks.sh and Tests/multinode-checks.sh can check that a failing
// or vanished rank ends the job quickly and non-zero, and that a torn write never replaces the
// previous checkpoint.

import Foundation
import Synchronization

public struct FaultInjection: Sendable {
    public var failRank = -1, failStep = -1
    public var crashRank = -1, crashStep = -1
    public var crashInCheckpointWrite = -1

    /// The hooks of this process, read once.
    public static let current = FaultInjection(ProcessInfo.processInfo.environment)

    public init(_ environment: [String: String]) {
        func pair(_ key: String) -> (Int, Int) {
            let parts = (environment[key] ?? "").split(separator: ":").compactMap { Int($0) }
            return parts.count == 2 ? (parts[0], parts[1]) : (-1, -1)
        }
        (failRank, failStep) = pair("DAE_DIST_FAIL_AT")
        (crashRank, crashStep) = pair("DAE_DIST_CRASH_AT")
        crashInCheckpointWrite = Int(environment["DAE_DIST_CRASH_IN_WRITE"] ?? "") ?? -1
    }

    /// Called by the trainer before each step.
    public func beforeStep(rank: Int, step: Int) throws(DAEError) {
        if rank == crashRank && step == crashStep {
            FileHandle.standardError.write(Data("rank \(rank): crashing at step \(step) (DAE_DIST_CRASH_AT)\n".utf8))
            _exit(86)
        }
        if rank == failRank && step == failStep {
            throw DAEError.distributed("injected failure at step \(step) (DAE_DIST_FAIL_AT)")
        }
    }

    /// Called by `Checkpoint.save` before each write: for the write that must die halfway, what
    /// writeFileAtomically calls at that point.
    func checkpointWriteCrash() -> ((String) -> Never)? {
        let count = checkpointWrites.add(1, ordering: .relaxed).newValue
        guard count == crashInCheckpointWrite else { return nil }
        return { path in
            FileHandle.standardError.write(Data("crashing in the middle of writing \(path) (DAE_DIST_CRASH_IN_WRITE)\n".utf8))
            _exit(87)
        }
    }
}

private let checkpointWrites = Atomic<Int>(0)
