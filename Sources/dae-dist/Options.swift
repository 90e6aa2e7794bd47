// Placeholder: replaced by the shared option groups.
import ArgumentParser
import DAE

struct DataOptions: ParsableArguments {
    @Option(name: [.customLong("data"), .customLong("data-dir")], help: "Training data: a folder in MNIST's IDX layout (Fashion-MNIST works too).")
    var data = "data/mnist"
}

struct ThreadOptions: ParsableArguments {
    @Option(help: "Threads per rank (default: the node's cores shared among its ranks, at least 1).") var threads: Int?
    func validate() throws { if let threads, threads < 1 { throw ValidationError("--threads: must be at least 1, got \(threads)") } }
    func perRank(_ communicator: Communicator) -> Int {
        threads ?? max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, communicator.localSize))
    }
}

enum ModelKind: String, ExpressibleByArgument, CaseIterable { case conv, stacked }
extension LossKind: ExpressibleByArgument {}
extension ReduceMode: ExpressibleByArgument {}
extension StackedSpec.Activation: ExpressibleByArgument {}
extension NoiseKind: ExpressibleByArgument {
    public init?(argument: String) { try? self.init(parsing: argument) }
}
import Foundation
