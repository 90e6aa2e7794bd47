// dae-dist: the command-line tool. Subcommands parse flags, then call the DAE library.

import ArgumentParser
import DAE
import Foundation

@main
struct DAEDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dae-dist",
        abstract: "Data-parallel trainer for denoising autoencoders on BLAS kernels.",
        // Computed when the command line is parsed: dae-dist's version and those of Swift, OpenBLAS,
        // MPI, the OS and the CPU it runs on (BuildInfo), printed by --version.
        version: BuildInfo.current.versionText,
        subcommands: [Train.self, Eval.self, Denoise.self, Encode.self, Probe.self, Sample.self, Bench.self, Info.self])

    /// `train` takes SIGTERM/SIGINT/SIGUSR1 as stop requests from its first instruction: a
    /// preemption during start-up (MPI, data loading) then ends with exit 0 and a message, which
    /// Slurm requeues, instead of the default action. The other commands keep the default.
    static func main() {
        // before anything else: OpenBLAS's fallback kernels on a CPU it does not know (BLASCore.swift)
        BLASCore.reexecWithBetterCoreIfNeeded()
        if CommandLine.arguments.dropFirst().first == "train" { StopSignals.install() }
        main(nil)
    }
}

/// Writes a line to standard output at once (unbuffered), so progress shows up in logs as it happens.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Writes a warning line to standard error (callers print on rank 0 only).
func warn(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Runs a subcommand's body with one way out for errors: a DAEError becomes one line on stderr
/// and a non-zero exit. With several ranks the line names the rank and the whole job is aborted
/// (MPI_Abort), because a rank that simply exits leaves the others waiting in a collective.
/// Flag errors found by swift-argument-parser (validate()) never get here: it prints them and
/// exits with code 64 before run(), on every rank alike.
func runReportingErrors(_ body: (inout Communicator?) throws -> Void) throws {
    var communicator: Communicator? = nil
    do {
        try body(&communicator)
        communicator?.finalize()
    } catch let exit as ExitCode {
        throw exit
    } catch {
        // DAEError describes itself in one line; anything else (a Foundation file error, say) is
        // flattened to its localized description so that it stays one line too.
        let message = (error as? DAEError).map { "\($0)" } ?? (error as NSError).localizedDescription.replacingOccurrences(of: "\n", with: " ")
        if let communicator, communicator.size > 1 {
            FileHandle.standardError.write(Data("rank \(communicator.rank): \(message)\n".utf8))
            communicator.abort(code: 1)
        }
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        throw ExitCode(1)
    }
}
