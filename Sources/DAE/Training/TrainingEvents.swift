// What a TrainingRun tells its observers, in the order it happens. The run itself never prints or
// writes anything but checkpoints and the final weights: the command line's progress lines and the
// run directory's outputs (RunOutputs: config.json, metrics.jsonl, samples/, tensorboard/,
// report.html) are observers. Events are delivered on rank 0 only, on the training thread, between
// steps; an observer that throws ends the run with its error.

import Foundation

public enum TrainingEvent {
    /// Resume: a valid checkpoint was found and every rank now holds its state.
    case resumed(from: String, position: TrainingPosition, stepsPerEpoch: Int)
    /// Resume with `auto`: a checkpoint that could not be used (corrupt, torn) and was skipped.
    case skippedCheckpoint(path: String, problem: String)
    /// Resume: the checkpoint is at the end of training (every epoch asked for is done); the run
    /// writes the final weights and returns without a step.
    case alreadyTrained(position: TrainingPosition, epochs: Int)
    /// Resume with `auto`: nothing usable in the checkpoint folder, so training starts afresh.
    case noCheckpoint(directory: String)
    /// Training is about to begin (after any resume): outputs open here.
    case began(BeginReport)
    /// One optimizer step is done.
    case stepDone(StepReport)
    /// An epoch is complete, and evaluated when it was due.
    case epochEnded(EpochReport)
    /// At an epoch's end: the weights have grown far beyond where this run started (told once per
    /// run): the run is likely diverging while its values stay finite.
    case diverging(globalStep: Int, largestWeight: Float, atStart: Float)
    /// A checkpoint was written (and older ones pruned).
    case checkpointWritten(path: String, position: TrainingPosition)
    /// A stacked model's next phase begins (a new layer, or fine-tuning), with a fresh Adam.
    case phaseBegan(phase: Int, name: String, trainableParameters: Int)
    /// A stop was requested (a signal on some rank): a checkpoint was written (nil: the stop came
    /// before this run's first step, so there was nothing new to write), and the run returns.
    case stopped(position: TrainingPosition, stepsPerEpoch: Int, checkpoint: String?)
    /// Every phase is done; `weights` is the final model.safetensors (nil for a run without a directory).
    case finished(weights: String?)
}

public struct BeginReport: Sendable {
    /// The global step a resumed run continues after (nil: a fresh start).
    public var resumedAfter: Int?
    public var position: TrainingPosition
}

public struct StepReport: Sendable {
    public var position: TrainingPosition   // after the step
    public var phaseName: String            // "" (one phase), "layer k " or "fine-tune "
    public var phaseEpochs: Int             // epochs of the phase in progress
    public var stepsPerEpoch: Int
    public var batchLoss: Double            // this step's loss (a per-value mean)
    public var stepsThisRun: Int            // steps of this epoch taken by this process (a resumed epoch starts part-way)
    public var samplesThisRun: Int          // and their samples
    public var secondsThisRun: Double       // since this process began the epoch
}

public struct EpochReport: Sendable {
    public var result: EpochResult
    public var phaseEpochs: Int
    public var globalStep: Int
    public var worldSize: Int
    public var eval: EvalMetrics?           // when an evaluation was due
    public var grid: PlanarImage?           // noisy / reconstructed / clean test images, with `eval`
    public var evalSeconds = 0.0
}

/// Anything that wants to follow a run: progress printing, the run directory's outputs, a test.
public protocol TrainingObserver: AnyObject {
    func training(_ event: TrainingEvent) throws(DAEError)
}

/// An observer made of a closure (tests, the benchmark).
public final class ClosureObserver: TrainingObserver {
    let body: (TrainingEvent) throws(DAEError) -> Void
    public init(_ body: @escaping (TrainingEvent) throws(DAEError) -> Void) { self.body = body }
    public func training(_ event: TrainingEvent) throws(DAEError) { try body(event) }
}
