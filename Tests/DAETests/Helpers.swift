import DAE
import Foundation
import XCTest

/// The reference values computed by Tests/reference/make_fixtures.py with PyTorch.
enum Reference {
    static let tensors: [String: SafeTensor] = {
        let url = Bundle.module.url(forResource: "Fixtures/reference", withExtension: "safetensors")!
        let (list, _) = try! SafeTensors.read(path: url.path)
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
    }()

    static func values(_ name: String) -> [Float] {
        guard let t = tensors[name] else { fatalError("fixture has no tensor \(name)") }
        return t.values
    }
}

/// Largest |a - b| relative to the largest |b| (with a floor), for comparing whole tensors.
func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "\(a.count) vs \(b.count)")
    var worst: Float = 0, scale: Float = 1e-6
    for i in 0..<a.count {
        worst = max(worst, abs(a[i] - b[i]))
        scale = max(scale, abs(b[i]))
    }
    return worst / scale
}

/// A deterministic pseudo-random array in [-1, 1).
func randomArray(_ count: Int, seed: UInt64) -> [Float] {
    var rng = RandomStream(seed: seed, purpose: .initialization, 999)
    return (0..<count).map { _ in 2 * rng.uniform() - 1 }
}

extension FloatBuffer {
    convenience init(_ values: [Float]) {
        self.init(count: values.count)
        for (i, v) in values.enumerated() { self[i] = v }
    }
}

/// A scratch directory removed at the end of the test.
func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "dae-dist-tests-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The repository root (this file is Tests/DAETests/Helpers.swift).
let repositoryRoot: String = {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
}()

/// A training run as the command line makes one (TrainingRun), without evaluation; it writes
/// checkpoints and weights only when given a `directory`. `stopAfter`: a stop request that lands
/// after that many steps of this process (as a signal would).
func makeRun(_ config: TrainConfig, data: Dataset, directory: String? = nil, resume: ResumeRequest? = nil,
             threads: Int = 1, stopAfter: Int? = nil) throws -> TrainingRun {
    var settings = RunSettings(directory: directory)
    settings.evalEvery = 0
    settings.resume = resume
    let run = try TrainingRun(config: config, settings: settings, data: data, test: nil, threads: threads)
    if let stopAfter {
        // run() asks once before the first step, then once in every step
        let counter = StepCounter(stopAt: stopAfter + 1)
        run.stopRequested = { counter.tick() }
    }
    return run
}

/// Answers the trainer's once-per-step stop question: true from the `stopAt`-th question on.
final class StepCounter: @unchecked Sendable {
    var calls = 0
    let stopAt: Int
    init(stopAt: Int) { self.stopAt = stopAt }
    func tick() -> Bool { calls += 1; return calls >= stopAt }
}

/// Records the events of a run (phase, epoch and mean loss of every completed epoch).
final class EventLog: TrainingObserver {
    var epochs: [EpochResult] = []
    var events: [TrainingEvent] = []
    func training(_ event: TrainingEvent) {
        events.append(event)
        if case .epochEnded(let report) = event { epochs.append(report.result) }
    }
    var losses: [Double] { epochs.map(\.meanLoss) }
}

/// N ranks in name only: the Trainer's checks see the size, the collectives do nothing.
final class FakeWorld: Communicator {
    let size: Int
    init(size: Int) { self.size = size }
    var rank: Int { 0 }
    var localSize: Int { size }
    var name: String { "fake" }
    func allreduceSum(_ values: UnsafeMutablePointer<Int64>, count: Int) {}
    func allreduceSum(_ values: UnsafeMutablePointer<Float>, count: Int) {}
    func allreduceSum(_ values: UnsafeMutablePointer<Double>, count: Int) {}
    func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int) {}
    func barrier() {}
    func abort(code: Int32) -> Never { fatalError() }
    func finalize() {}
}

/// The parameters after one epoch of `config` on `data` with `threads` worker threads.
func weightsAfterOneEpoch(_ config: TrainConfig, data: Dataset, threads: Int) throws -> [Float] {
    let trainer = try Trainer(config: config, data: data, threads: threads)
    _ = try trainer.trainEpoch()
    return trainer.params.array
}
