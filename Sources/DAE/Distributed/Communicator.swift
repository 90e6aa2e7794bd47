// The few collective operations data parallelism needs, behind one protocol with two
// implementations: Open MPI (MPICommunicator.swift, with the MPI package trait) and a single
// process (everything is a no-op or a copy). The trainer never asks which one it has.

import Foundation

public protocol Communicator: AnyObject {
    /// This process's rank, 0 ..< size.
    var rank: Int { get }
    /// Number of ranks in the job.
    var size: Int { get }
    /// Number of ranks on this node (for sharing its cores).
    var localSize: Int { get }
    /// "mpi" or "single process", for the run's log.
    var name: String { get }

    /// Sum over ranks, in place. Integer sums are exact and associative: the result does not
    /// depend on the reduction order, which is what makes results independent of the world size.
    func allreduceSum(_ values: UnsafeMutablePointer<Int64>, count: Int)
    /// Sum over ranks, in place, in floating point (the order, and so the rounding, depends on
    /// the world size and the MPI library's algorithm).
    func allreduceSum(_ values: UnsafeMutablePointer<Float>, count: Int)
    func allreduceSum(_ values: UnsafeMutablePointer<Double>, count: Int)
    /// Whether `startAllreduceSum` really runs in the background, and may be called (like
    /// `progressPending`) from a thread other than the one that made the communicator, one call at
    /// a time. False: it completes at once, on the calling thread.
    var overlapsReductions: Bool { get }
    /// Starts an integer sum over ranks, in place, and returns without waiting for it (one at a
    /// time: the next start, or any other collective, only after `finishPending`). Every rank must
    /// start it at the same point of its sequence of collectives. `values` must stay untouched
    /// until `finishPending` returns.
    func startAllreduceSum(_ values: UnsafeMutablePointer<Int64>, count: Int)
    /// The same for a float sum (fast mode's).
    func startAllreduceSum(_ values: UnsafeMutablePointer<Float>, count: Int)
    /// Lets the started sum make progress (MPI moves a non-blocking collective's messages only
    /// inside MPI calls); true once it is complete.
    @discardableResult func progressPending() -> Bool
    /// Waits until the started sum is complete (returns at once if none is pending).
    func finishPending()
    /// Copies `bytes` bytes from rank `root` to every rank.
    func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int)
    func barrier()
    /// Ends the whole job at once with `code`: the way out of an error on any rank, because
    /// finalizing and exiting on one rank would leave the others waiting in a collective forever.
    func abort(code: Int32) -> Never
    /// Orderly shutdown at the end of a successful run.
    func finalize()
}

/// A communicator without non-blocking collectives: the "started" sum is done at once.
extension Communicator {
    public var overlapsReductions: Bool { false }
    public func startAllreduceSum(_ values: UnsafeMutablePointer<Int64>, count: Int) { allreduceSum(values, count: count) }
    public func startAllreduceSum(_ values: UnsafeMutablePointer<Float>, count: Int) { allreduceSum(values, count: count) }
    @discardableResult public func progressPending() -> Bool { true }
    public func finishPending() {}
}

/// The world of one process.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var localSize: Int { 1 }
    public var name: String { "single process" }
    public func allreduceSum(_ values: UnsafeMutablePointer<Int64>, count: Int) {}
    public func allreduceSum(_ values: UnsafeMutablePointer<Float>, count: Int) {}
    public func allreduceSum(_ values: UnsafeMutablePointer<Double>, count: Int) {}
    public func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int) {}
    public func barrier() {}
    public func abort(code: Int32) -> Never { exit(code) }
    public func finalize() {}
}

public enum Launch {
    /// Environment variables a launcher sets: Open MPI's mpirun, PMIx (srun --mpi=pmix, prterun)
    /// and PMI-1/2 (srun --mpi=pmi2, MPICH-style launchers).
    static let launcherVariables = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"]

    /// Whether a launcher started this process. Without one, MPI_Init is never called: a binary
    /// built with MPI runs as a plain single process on a laptop.
    public static func startedByLauncher(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        launcherVariables.contains { environment[$0] != nil }
    }

    /// The communicator for this process: MPI when a launcher started it (and MPI is built in),
    /// a single process otherwise. Catches the classic mistake of N copies each training alone.
    public static func makeCommunicator(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws(DAEError) -> Communicator {
        let communicator: Communicator
        if startedByLauncher(environment) {
            #if MPI
            communicator = MPICommunicator()
            #else
            let size = Int(environment["OMPI_COMM_WORLD_SIZE"] ?? environment["PMI_SIZE"] ?? "") ?? 0
            if size > 1 {
                throw DAEError.distributed("a launcher started \(size) ranks, but this dae-dist was built without MPI (swift build --disable-default-traits); rebuild with the default traits to train on several ranks")
            }
            communicator = SingleProcess()
            #endif
        } else {
            communicator = SingleProcess()
        }
        if communicator.size == 1, let tasks = Int(environment["SLURM_NTASKS"] ?? ""), tasks > 1 {
            throw DAEError.distributed("SLURM_NTASKS=\(tasks) but this process is alone in its MPI world: \(tasks) copies would each train alone. Start the job with 'srun --mpi=pmix dae-dist ...' or 'mpirun dae-dist ...' (see launch/slurm.sbatch), or request one task")
        }
        return communicator
    }
}
