// Flags shared by several subcommands, declared once and included with @OptionGroup, and the
// library's enums as argument types: swift-argument-parser then parses them, lists their values in
// --help, and rejects a bad value or range before run() with one "Error:" line and exit code 64.
// Every numeric option of every command is declared with `parsing: .unconditional`: otherwise a
// negative value (`--tile -4`, `--val-fraction -0.1`) looks like a flag, and the parser answers
// "Missing value" instead of the option's own range check naming the range.

import ArgumentParser
import DAE
import Foundation

/// The dataset: a folder of PNG, JPEG or TIFF images, a .npy array (or a folder with train.npy and test.npy), or
/// a folder in MNIST's IDX layout (Dataset.load(path:), DataSources.swift); `--data-dir` (its
/// earlier name) still works.
struct DataOptions: ParsableArguments {
    @Option(name: [.customLong("data"), .customLong("data-dir")],
            help: ArgumentHelp("Dataset: a folder of PNG, JPEG or TIFF images (searched recursively; train/ and test/ subfolders are the splits, class subfolders the labels), a .npy array of uint8 or float32 [N,H,W] or [N,H,W,C], a folder with train.npy and test.npy, or a folder in MNIST's IDX layout (Fashion-MNIST works too).",
                               valueName: "path"))
    var data: String?      // nil: not given (train --resume then takes the run's own)
    @Option(name: .customLong("val-fraction"),
            parsing: .unconditional, help: "Without train/ and test/ subfolders (or train.npy and test.npy): the fraction of the images held out as the test split, chosen by a hash of their paths (0: none, for train --eval-every 0; default 0.05).")
    var valFraction: Double?   // nil: not given
    /// The held-out fraction: the flag, or 0.05.
    var fraction: Double { valFraction ?? 0.05 }

    static let defaultPath = "data/mnist"
    /// The dataset's path: the flag, or data/mnist.
    var path: String { data ?? Self.defaultPath }

    func validate() throws {
        // A file where the folder belongs: the loader would only say "not found".
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue, !path.lowercased().hasSuffix(".npy") {
            throw flagError("--data", "\(path) is a file, not a folder or a .npy array; pass a folder of images, a .npy file, or the folder that holds the IDX files (train-images-idx3-ubyte.gz, ...)")
        }
        // 0 holds out nothing: fine for a run without evaluation (train --eval-every 0); a command
        // that needs the test split then says it is empty
        guard fraction >= 0 && fraction < 1 else { throw flagError("--val-fraction", "must be at least 0 and below 1, got \(fraction)") }
    }
}

/// Threads per rank: `--threads N` (at most the CPUs the rank may run on), or by default the
/// node's CPUs shared among the ranks on it, within the rank's CPUs (see defaultThreadCount).
struct ThreadOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Threads per rank, at most the CPUs the rank may run on (default: the node's CPUs shared among its ranks, within the rank's CPU affinity, at least 1).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw flagError("--threads", "must be at least 1, got \(threads)") }
    }

    /// This rank's threads: `--threads` capped at the CPUs this rank may run on (rank 0 warns when
    /// it caps: more threads than CPUs only contend, and the workers spin between rounds),
    /// otherwise the default.
    func count(for communicator: Communicator) -> Int {
        let allowed = allowedCPUCount()
        guard let threads else {
            return defaultThreadCount(allowedCPUs: allowed, onlineCPUs: ProcessInfo.processInfo.processorCount,
                                      ranksOnNode: communicator.localSize)
        }
        let (count, warning) = cappedThreadCount(requested: threads, allowedCPUs: allowed)
        if let warning, communicator.rank == 0 { warn(warning) }
        return count
    }

    /// train's threads: `count(for:)`, and in exact mode a warning (rank 0) when a rank has more
    /// threads than micro-batches per step, naming the --micro-batch or --batch-size that would
    /// keep them busy. `images` is the training images (a step holds at most that many).
    func count(for communicator: Communicator, training config: TrainConfig, images: Int) -> Int {
        let count = count(for: communicator)
        if config.reduce == .exact, communicator.rank == 0,
           let advice = threadAdvice(threads: count, ranks: communicator.size, batchSize: min(config.batchSize, images),
                                     microBatch: config.microBatch) {
            warn(advice)
        }
        return count
    }
}

/// The trained model a command reads: a training checkpoint or the final weights file.
struct CheckpointOptions: ParsableArguments {
    @Option(help: ArgumentHelp("A checkpoint (<run-dir>/checkpoints/step-N.safetensors) or weights file (<run-dir>/model.safetensors).",
                               valueName: "path"))
    var checkpoint: String

    /// The checkpoint, checked to be a file before anything reads it: the readers would call a
    /// folder unreadable ("permissions?"); a run directory gets the weights file in it named.
    func file() throws(DAEError) -> String {
        try TrainedModel.checkFile(checkpoint)
        return checkpoint
    }
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

/// The model of `train --model`: a kind of the model registry (ModelSpec.registry), any case.
struct ModelKind: ExpressibleByArgument {
    let kind: String
    init?(argument: String) {
        guard let type = ModelSpec.architecture(kind: argument.lowercased()) else { return nil }
        kind = type.kind
    }
    static var allValueStrings: [String] { ModelSpec.registry.map { $0.kind } }
    /// --help's description: every registered model with its summary.
    static var help: String {
        "Model: " + ModelSpec.registry.map { "\($0.kind) (\($0.summary))" }.joined(separator: ", ") + "; default conv."
    }
}

/// train --augment: what is done to each training patch.
enum AugmentKind: String, CaseIterable, CaseInsensitiveArgument {
    case none
    /// One of the square's 8 flips and 90-degree rotations, drawn with the crop.
    case flips
}

extension LossKind: CaseInsensitiveArgument {}
extension ReduceMode: CaseInsensitiveArgument {}
extension LRSchedule: CaseInsensitiveArgument {}
extension StackedSpec.Activation: CaseInsensitiveArgument {}
extension Split: CaseInsensitiveArgument {}

extension SampleConfig.Start: ExpressibleByArgument {
    // Not CaseIterable in the library, so its values are listed here for --help and errors.
    public static var allValueStrings: [String] { ["noise", "test"] }
}

extension NoiseKind: ExpressibleByArgument {
    /// `gaussian:F`, `gaussian:LO-HI`, `mask:P`, `saltpepper:P` or `none`, exactly as NoiseKind(parsing:) reads them
    /// (a missing factor takes its default). A value it rejects makes swift-argument-parser name
    /// the flag and list the forms below; each command's help gives the ranges.
    public init?(argument: String) {
        guard let kind = try? NoiseKind(parsing: argument) else { return nil }
        self = kind
    }

    public static var allValueStrings: [String] { ["gaussian:F", "gaussian:LO-HI", "mask:P", "saltpepper:P", "none"] }
}

// MARK: - Data for models that take whole images

