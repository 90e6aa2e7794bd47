// Flags shared by several subcommands, declared once and included with @OptionGroup, and the
// library's enums as argument types: swift-argument-parser then parses them, lists their values in
// --help, and rejects a bad value or range before run() with one "Error:" line and exit code 64.

import ArgumentParser
import DAE
import Foundation

/// The dataset. Today a folder in MNIST's IDX layout; `--data-dir` (its earlier name) still works.
struct DataOptions: ParsableArguments {
    @Option(name: [.customLong("data"), .customLong("data-dir")],
            help: ArgumentHelp("Dataset: a folder with IDX files in MNIST's layout (train-* and t10k-* images and labels; Fashion-MNIST works too).",
                               valueName: "path"))
    var data = "data/mnist"
}

/// Threads per rank: `--threads N`, or by default the node's cores shared among the ranks on it.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Threads per rank (default: the node's cores shared among its ranks, at least 1).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw flagError("--threads", "must be at least 1, got \(threads)") }
    }

    /// This rank's threads: `--threads` when given, otherwise the default below.
    func count(for communicator: Communicator) -> Int {
        threads ?? Self.defaultCount(communicator)
    }

    /// The node's cores shared among the ranks on it, at least 1, so that ranks on one node do not
    /// oversubscribe it.
    static func defaultCount(_ communicator: Communicator) -> Int {
        max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, communicator.localSize))
    }
}

/// The trained model a command reads: a training checkpoint or the final weights file.
struct CheckpointOptions: ParsableArguments {
    @Option(help: ArgumentHelp("A checkpoint (<run-dir>/checkpoints/step-N.safetensors) or weights file (<run-dir>/model.safetensors).",
                               valueName: "path"))
    var checkpoint: String
}

/// A range error found in validate(): the same "--flag: problem" wording as DAEError.badFlag, but
/// reported by swift-argument-parser (with the usage line, exit code 64).
func flagError(_ flag: String, _ problem: String) -> ValidationError {
    ValidationError(DAEError.badFlag(flag, problem).description)
}

/// Runs a library check that throws DAEError (SampleConfig.validate, say) inside validate().
func validating(_ check: () throws(DAEError) -> Void) throws {
    do { try check() } catch { throw ValidationError(error.description) }
}

// MARK: - Enums as flag values

/// A string enum read from the command line without regard to case (`--loss MSE`), as the hand
/// parsing before swift-argument-parser did.
protocol CaseInsensitiveArgument: ExpressibleByArgument, RawRepresentable<String> {}

extension CaseInsensitiveArgument {
    public init?(argument: String) { self.init(rawValue: argument.lowercased()) }
}

/// The model of `train --model`.
enum ModelKind: String, CaseIterable, CaseInsensitiveArgument {
    /// The reference convolutional denoiser.
    case conv
    /// A fully connected stacked denoising autoencoder, trained layer by layer.
    case stacked
}

extension LossKind: CaseInsensitiveArgument {}
extension ReduceMode: CaseInsensitiveArgument {}
extension StackedSpec.Activation: CaseInsensitiveArgument {}
extension Split: CaseInsensitiveArgument {}

extension SampleConfig.Start: ExpressibleByArgument {
    // Not CaseIterable in the library, so its values are listed here for --help and errors.
    public static var allValueStrings: [String] { ["noise", "test"] }
}

extension NoiseKind: ExpressibleByArgument {
    /// `gaussian:F`, `mask:P`, `saltpepper:P` or `none`, exactly as NoiseKind(parsing:) reads them
    /// (a missing factor takes its default). A value it rejects makes swift-argument-parser name
    /// the flag and list the forms below; each command's help gives the ranges.
    public init?(argument: String) {
        guard let kind = try? NoiseKind(parsing: argument) else { return nil }
        self = kind
    }

    public static var allValueStrings: [String] { ["gaussian:F", "mask:P", "saltpepper:P", "none"] }
}
