// What built and ran dae-dist: its own version, the Swift compiler, OpenBLAS (and the kernel it
// picked for this CPU), which versions of dae-dist's own kernels run on this CPU, Open MPI, the OS and the
// CPU. `dae-dist --version` prints it, config.json records it (RunConfiguration.build) and
// checkpoints and weights files carry it in their metadata, so that a result can be traced to the
// software and machine that made it.

import CBLAS
import Foundation
#if MPI
import CMPI
#endif

public struct BuildInfo: Codable, Sendable, Equatable {
    /// dae-dist's own version. Bump it here, in this one place, with each release (it is what
    /// `--version`, config.json and the files' `dae_dist_version` say).
    public static let daeDistVersion = "0.3.0"

    public var daeDist: String
    public var swift: String          // the compiler that built this binary, to the minor version
    public var openblas: String       // openblas_get_config(): version and build options
    public var openblasCore: String   // openblas_get_corename(): the kernel chosen for this CPU
    /// Where the Winograd tile transforms run: "avx512" or "swift" (same bits; absent in files
    /// written before the Winograd path existed).
    public var winogradTransforms: String?
    /// Where Adam's update and the fixed-point conversion run: "avx2" or "baseline" (same bits;
    /// absent in files written before they were C kernels).
    public var updateKernels: String?
    /// Where exact mode's fully connected products run in lockstep: "avx2_fma" (linear.c) or
    /// "openblas" (they round differently; absent in files written before the C kernel existed).
    public var lockstepLinear: String?
    public var mpi: String            // the first line of MPI_Get_library_version, or "built without MPI"
    public var os: String             // uname: system, release, machine
    public var cpu: String?           // /proc/cpuinfo's first "model name" (absent on some CPUs, e.g. ARM)

    enum CodingKeys: String, CodingKey {
        case daeDist = "dae_dist", swift, openblas, openblasCore = "openblas_core", winogradTransforms = "winograd_transforms", updateKernels = "update_kernels", lockstepLinear = "lockstep_linear", mpi, os, cpu
    }

    public init(daeDist: String, swift: String, openblas: String, openblasCore: String, winogradTransforms: String? = nil,
                updateKernels: String? = nil, lockstepLinear: String? = nil, mpi: String, os: String, cpu: String?) {
        self.daeDist = daeDist; self.swift = swift; self.openblas = openblas; self.openblasCore = openblasCore
        self.winogradTransforms = winogradTransforms; self.updateKernels = updateKernels
        self.lockstepLinear = lockstepLinear
        self.mpi = mpi; self.os = os; self.cpu = cpu
    }

    /// This process's facts, gathered once. Nothing here needs MPI_Init: MPI_Get_library_version
    /// is one of the few MPI calls allowed before it (and after MPI_Finalize).
    public static let current = BuildInfo(
        daeDist: daeDistVersion, swift: swiftCompilerVersion, openblas: openBLASConfig(), openblasCore: openBLASCore(),
        winogradTransforms: Winograd.avx512 ? "avx512" : "swift", updateKernels: UpdateKernels.name,
        lockstepLinear: LockstepLinearKernel.name, mpi: mpiLibraryVersion(), os: operatingSystem(), cpu: cpuModel())

    /// The lines of `dae-dist --version`.
    public var versionText: String {
        var lines = ["dae-dist \(daeDist)",
                     "Swift     \(swift)",
                     // openblas_get_config() starts with "OpenBLAS <version>"
                     "OpenBLAS  \(openblas.hasPrefix("OpenBLAS ") ? String(openblas.dropFirst(9)) : openblas) (core: \(openblasCore))",
                     "Kernels   Winograd transforms: \(winogradTransforms ?? "none"), Adam and fixed point: \(updateKernels ?? "none"), lockstep linear: \(lockstepLinear ?? "none")",
                     "MPI       \(mpi)",
                     "OS        \(os)"]
        if let cpu { lines.append("CPU       \(cpu)") }
        return lines.joined(separator: "\n")
    }

    /// The metadata keys of checkpoints and weights files. `withMPI: false` leaves out the MPI
    /// library: the final weights file is the same, byte for byte, whether it was trained by the
    /// build with MPI (under mpirun or not) or the one without (Tests/mpi-checks.sh compares them),
    /// and the MPI library changes none of its bits. Checkpoints, which record the world size
    /// anyway, carry it.
    public func metadata(withMPI: Bool = true) -> [String: String] {
        var out = ["dae_dist_version": daeDist, "swift": swift, "openblas": openblas,
                   "openblas_core": openblasCore, "os": os]
        if let winogradTransforms { out["winograd_transforms"] = winogradTransforms }
        if let updateKernels { out["update_kernels"] = updateKernels }
        if let lockstepLinear { out["lockstep_linear"] = lockstepLinear }
        if withMPI { out["mpi"] = mpi }
        if let cpu { out["cpu"] = cpu }
        return out
    }

    /// The metadata keys above, in the order `dae-dist info` shows them.
    public static let metadataKeys = ["dae_dist_version", "swift", "openblas", "openblas_core", "winograd_transforms", "update_kernels", "lockstep_linear", "mpi", "os", "cpu"]

    /// The compiler's version. It is known only at compile time, through `#if compiler(...)`, so
    /// this ladder names the minor version; add a rung when a new compiler comes out.
    static var swiftCompilerVersion: String {
        #if compiler(>=7.0)
        return "7.0 or later"
        #elseif compiler(>=6.5)
        return "6.5"
        #elseif compiler(>=6.4)
        return "6.4"
        #elseif compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #elseif compiler(>=6.1)
        return "6.1"
        #else
        return "6.0"
        #endif
    }

    static func openBLASConfig() -> String {
        guard let text = openblas_get_config() else { return "unknown" }
        return String(cString: text).trimmingCharacters(in: .whitespaces)
    }

    static func openBLASCore() -> String { BLASCore.current }

    static func mpiLibraryVersion() -> String {
        #if MPI
        return MPICommunicator.libraryVersion
        #else
        return "built without MPI"
        #endif
    }

    static func operatingSystem() -> String {
        var names = utsname()
        guard uname(&names) == 0 else { return "unknown" }
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { raw in String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        return "\(field(names.sysname)) \(field(names.release)) \(field(names.machine))"
    }

    static func cpuModel() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let model = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if !model.isEmpty { return model }
        }
        return nil
    }
}
