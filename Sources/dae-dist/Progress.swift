// Rank 0's lines on the terminal, as an observer of the TrainingRun: on a terminal, one line per
// epoch that updates in place (step/total, samples/s, loss, ETA) and is then replaced by the
// epoch's summary line; elsewhere (CI, Slurm logs) only the summary lines; with --quiet, only what a
// user must see (where a run resumed from, where to resume a stopped one, the final weights).

import DAE
import Foundation

final class Progress: TrainingObserver {
    enum Mode { case terminal, lines, quiet }
    let mode: Mode
    var lastUpdate = Date.distantPast
    var shown = false            // an in-place line is on the screen
    let runDirectory: String?
    let config: TrainConfig

    /// Under mpirun a rank's stdout is a pseudo-terminal even when mpirun's own output goes to a
    /// file, so ranks started by a launcher print plain lines unless DAE_DIST_PROGRESS=terminal
    /// (launch/run sets it when its own stdout is a terminal); DAE_DIST_PROGRESS=lines forces lines.
    init(quiet: Bool, config: TrainConfig, runDirectory: String?, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.runDirectory = runDirectory
        self.config = config
        if quiet {
            mode = .quiet
        } else if let forced = environment["DAE_DIST_PROGRESS"] {
            mode = forced == "terminal" ? .terminal : .lines
        } else if Launch.startedByLauncher(environment) {
            mode = .lines
        } else {
            mode = isatty(STDOUT_FILENO) != 0 ? .terminal : .lines
        }
    }

    /// What is about to run: data, schedule, ranks and threads, parameters.
    func header(_ run: TrainingRun) {
        let config = run.config, trainer = run.trainer, data = run.data, communicator = run.communicator
        let colour = data.channels == 3 ? "RGB" : "gray"
        let size = data.shapes == nil ? "\(data.height)x\(data.width)" : "sizes from \(data.height)x\(data.width) up"
        let megabytes = String(format: "%.1f", Double(data.pixels.count) / 1e6)
        say("dae-dist train: \(data.count) images (\(size), \(colour); \(megabytes) MB in memory per rank) from \(data.source)")
        if let patches = config.patches {
            say("  \(trainer.samples.perEpoch) random \(patches.size)x\(patches.size) crops per epoch\(patches.flips ? ", flipped and rotated" : "")")
        }
        let schedule: String
        if config.model.stackedSpec != nil {
            schedule = "\(config.model.description): \(config.pretrainEpochs) pre-training epochs per layer, \(config.epochs) fine-tuning epochs"
        } else {
            schedule = "\(config.model.description), \(config.epochs) epochs"
        }
        let optimizer = config.adam.weightDecay > 0 ? "AdamW lr \(config.adam.lr), weight decay \(config.adam.weightDecay)" : "Adam lr \(config.adam.lr)"
        let clipping = config.clipGradNorm.map { ", gradient norm clipped to \($0)" } ?? ""
        say("  \(schedule), batch \(config.batchSize), \(optimizer)\(config.lrSchedule == .constant ? "" : " (\(config.lrSchedule.rawValue) schedule)")\(clipping), noise \(config.noise), loss \(config.loss.rawValue), seed \(config.seed)")
        let share = config.reduce == .exact ? "its micro-batches and every weight gradient's chunks" : "every layer"
        let threading = (trainer.runsAsTeam ? "\(trainer.pool.count) threads on one replica (each a share of \(share))"
                                             : "\(trainer.workerCount) worker thread(s)")
            + " x 1 BLAS thread" + (config.reduce == .exact ? ", micro-batch \(trainer.effectiveMicroBatch)" : "")
        say("  \(communicator.size) rank(s) (\(communicator.name), \(communicator.localSize) on this node, \(ProcessInfo.processInfo.activeProcessorCount) cores), reduce \(config.reduce.rawValue), \(threading) per rank")
        say("  \(trainer.layout.count) parameters, run dir \(runDirectory ?? "(none)")")
    }

    /// Decoding the training images (rank 0's share), on a terminal: one line that updates in
    /// place and is cleared when done (logs get the header's image count instead).
    static let loading: @Sendable (Int, Int) -> Void = { done, total in
        guard isatty(STDOUT_FILENO) != 0 else { return }
        let text = done == total ? "" : "decoding images: \(done)/\(total) on this rank"
        FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + text).utf8))
    }

    func training(_ event: TrainingEvent) {
        switch event {
        case .resumed(let path, let p, let steps):
            line("resuming from \(path): step \(p.globalStep), \(phaseName(p))epoch \(p.epoch) at step \(p.stepInEpoch)/\(steps)", always: true)
        case .skippedCheckpoint(let path, let problem):
            FileHandle.standardError.write(Data("warning: skipping \(path): \(problem)\n".utf8))
        case .diverging(let step, let largest, let start):
            FileHandle.standardError.write(Data(String(format: "warning: the weights are diverging: by step %d the largest is %.3g (%.3g at the start); the network is likely dead, try a smaller --lr\n", step, largest, start).utf8))
        case .noCheckpoint(let directory):
            line("no checkpoint in \(directory): starting afresh", always: true)
        case .stepDone(let s):
            step(s)
        case .epochEnded(let e):
            let r = e.result
            line(r.phaseName + String(format: "epoch %3d/%d  loss %.6f  %7.0f samples/s  %6.1f s  (allreduce %.1f%%)",
                                      r.epoch, e.phaseEpochs, r.meanLoss, r.samplesPerSecond, r.seconds,
                                      100 * r.reduceSeconds / max(r.seconds, 1e-9)))
            if let eval = e.eval { line("  " + eval.summary + String(format: "  %.1f s", e.evalSeconds)) }
        case .phaseBegan(_, let name, let trainable):
            line("\(name)begins: \(trainable) parameters train, fresh Adam")
        case .stopped(let p, let steps, let checkpoint):
            guard let checkpoint else {
                line("stopped by \(StopSignals.lastName) before this run's first step: nothing new to checkpoint", always: true)
                return
            }
            let folder = (checkpoint as NSString).deletingLastPathComponent
            line("stopped by \(StopSignals.lastName) after step \(p.globalStep) (\(phaseName(p))epoch \(p.epoch), step \(p.stepInEpoch)/\(steps)); checkpoint in \(folder)", always: true)
            line("resume with: dae-dist train --run-dir \(runDirectory ?? "DIR") --resume auto", always: true)
        case .alreadyTrained(let p, let epochs):
            line("already trained to the end of the \(epochs) epochs asked for (step \(p.globalStep)); nothing to do", always: true)
        case .finished(let weights):
            if let weights, let runDirectory {
                line("wrote \(weights); report: \((runDirectory as NSString).appendingPathComponent("report.html"))", always: true)
            }
        case .began, .checkpointWritten:
            break
        }
    }

    /// The phase's name in a position line ("" for the convolutional model).
    func phaseName(_ p: TrainingPosition) -> String { config.phaseName(p.phase) }

    func step(_ s: StepReport) {
        guard mode == .terminal, Date().timeIntervalSince(lastUpdate) >= 0.25 else { return }
        lastUpdate = Date()
        // rate from the steps this process has taken (a resumed epoch starts part-way)
        let p = s.position
        let remaining = Double(s.stepsPerEpoch - p.stepInEpoch) / Double(max(s.stepsThisRun, 1)) * s.secondsThisRun
        let text = String(format: "epoch %d/%d  step %d/%d  %.0f samples/s  loss %.6f  ETA %@",
                          p.epoch, s.phaseEpochs, p.stepInEpoch, s.stepsPerEpoch, Double(s.samplesThisRun) / max(s.secondsThisRun, 1e-9),
                          p.epochLossSum / Double(p.stepInEpoch), Self.duration(remaining))
        FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + text).utf8))
        shown = true
    }

    /// A line that stays (epoch summaries, evaluation results); not shown with --quiet unless
    /// `always` (messages a user must see, such as where to resume).
    func line(_ text: String, always: Bool = false) {
        guard mode != .quiet || always else { return }
        if shown { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)); shown = false }
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(max(0, seconds))
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
