// Open MPI behind the Communicator protocol. Built only with the MPI package trait.
// MPI's default error handler (MPI_ERRORS_ARE_FATAL) is kept: a failed collective ends the job
// rather than returning into code that would wait for peers that are gone.

#if MPI
import CMPI
import Foundation

public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let localSize: Int
    public var name: String { "mpi" }
    let world: MPI_Comm
    /// The thread level MPI granted is at least MPI_THREAD_SERIALIZED: a worker thread may start
    /// or progress the overlapped reduction while the main thread computes (never two MPI calls at once).
    public let overlapsReductions: Bool
    /// The one non-blocking reduction in flight (MPI_REQUEST_NULL when none).
    let pending: UnsafeMutablePointer<MPI_Request?>

    public init() {
        // The overlap's started sum is an in-place MPI_Iallreduce, for which Open MPI's
        // non-blocking collectives (libnbc) always pick a binomial tree: the whole bucket goes up
        // to rank 0 and back down, 2 log2(p) transfers, one direction at a time. Rabenseifner's
        // algorithm (reduce-scatter, then allgather) sends each rank 2(p-1)/p of it, both ways at
        // once; it was faster on the namespace nodes (docs/multinode.md, "Overlap"). Set before
        // MPI_Init, which reads it; a value the user exported wins (no overwrite).
        setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", 0)
        var provided: Int32 = 0
        MPI_Init_thread(nil, nil, dae_mpi_thread_serialized(), &provided)
        overlapsReductions = provided >= dae_mpi_thread_serialized()
        pending = .allocate(capacity: 1)
        pending.initialize(to: dae_mpi_request_null())
        world = dae_mpi_comm_world()
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(world, &r)
        MPI_Comm_size(world, &s)
        rank = Int(r)
        size = Int(s)
        // Ranks on this node: MPI's shared-memory split of the world knows, whatever the launcher
        // (mpirun, srun --mpi=pmix) and however Slurm spells tasks per node.
        var node = MPI_Comm(bitPattern: 0)
        var local: Int32 = 1
        if MPI_Comm_split_type(world, dae_mpi_comm_type_shared(), r, dae_mpi_info_null(), &node) == dae_mpi_success() {
            MPI_Comm_size(node, &local)
            MPI_Comm_free(&node)
        }
        localSize = Int(local)
    }

    public func allreduceSum(_ values: UnsafeMutablePointer<Int64>, count: Int) {
        MPI_Allreduce(dae_mpi_in_place(), values, Int32(count), dae_mpi_int64(), dae_mpi_sum(), world)
    }

    public func allreduceSum(_ values: UnsafeMutablePointer<Float>, count: Int) {
        MPI_Allreduce(dae_mpi_in_place(), values, Int32(count), dae_mpi_float(), dae_mpi_sum(), world)
    }

    public func allreduceSum(_ values: UnsafeMutablePointer<Double>, count: Int) {
        MPI_Allreduce(dae_mpi_in_place(), values, Int32(count), dae_mpi_double(), dae_mpi_sum(), world)
    }

    deinit { pending.deallocate() }

    public func startAllreduceSum(_ values: UnsafeMutablePointer<Int64>, count: Int) {
        precondition(pending.pointee == dae_mpi_request_null(), "startAllreduceSum while another is pending")
        MPI_Iallreduce(dae_mpi_in_place(), values, Int32(count), dae_mpi_int64(), dae_mpi_sum(), world, pending)
    }

    public func startAllreduceSum(_ values: UnsafeMutablePointer<Float>, count: Int) {
        precondition(pending.pointee == dae_mpi_request_null(), "startAllreduceSum while another is pending")
        MPI_Iallreduce(dae_mpi_in_place(), values, Int32(count), dae_mpi_float(), dae_mpi_sum(), world, pending)
    }

    @discardableResult
    public func progressPending() -> Bool {
        guard pending.pointee != dae_mpi_request_null() else { return true }
        var done: Int32 = 0
        MPI_Test(pending, &done, dae_mpi_status_ignore())     // completion resets it to MPI_REQUEST_NULL
        return done != 0
    }

    public func finishPending() {
        guard pending.pointee != dae_mpi_request_null() else { return }
        MPI_Wait(pending, dae_mpi_status_ignore())
    }

    public func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int) {
        MPI_Bcast(bytes, Int32(count), dae_mpi_byte(), Int32(root), world)
    }

    public func barrier() { MPI_Barrier(world) }

    public func abort(code: Int32) -> Never {
        MPI_Abort(world, code)
        exit(code)
    }

    public func finalize() { MPI_Finalize() }

    /// The first line of MPI_Get_library_version (e.g. "Open MPI v4.1.6, package: ..."), which
    /// MPI allows before MPI_Init: `dae-dist --version` asks without starting MPI.
    public static var libraryVersion: String {
        var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_LIBRARY_VERSION_STRING) + 1)
        var length: Int32 = 0
        guard MPI_Get_library_version(&buffer, &length) == dae_mpi_success() else { return "unknown" }
        let text = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
    }
}
#endif
