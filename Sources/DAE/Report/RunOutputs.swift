// Everything rank 0 leaves in the run directory besides checkpoints:
//   config.json          the run's configuration (flags, world size, threads)
//   metrics.jsonl        one JSON line per epoch (and per --log-every steps)
//   samples/epoch-NNN.png  noisy / reconstructed / clean test images after each evaluation
//   tensorboard/         event files: train loss, eval metrics, the sample grid
//   report.html          a self-contained page with the grid, curves and tables
//   model.safetensors    the final weights (written by the trainer's caller)

import Foundation

public final class RunOutputs {
    public let directory: String
    let configuration: [(String, String)]
    let metrics: MetricsLog
    let tensorboard: TensorBoardWriter
    var latestGrid: [UInt8]? = nil
    var latestGridEpoch: Int? = nil

    /// `resumedAfter`: the global step a resumed run continues from (nil for a fresh run).
    public init(directory: String, configuration: [(String, String)], resumedAfter: Int?) throws(DAEError) {
        self.directory = directory
        self.configuration = configuration
        do {
            try FileManager.default.createDirectory(atPath: directory + "/samples", withIntermediateDirectories: true)
        } catch {
            throw DAEError.write(path: directory, problem: "cannot create the run directory")
        }
        var config: [String: String] = [:]
        for (k, v) in configuration { config[k] = v }
        try writeFileAtomically(Array((MetricsLog.json(config) + "\n").utf8), to: directory + "/config.json")
        metrics = try MetricsLog(path: directory + "/metrics.jsonl", keepThrough: resumedAfter)
        tensorboard = try TensorBoardWriter(directory: directory + "/tensorboard")
        if let resumedAfter { try tensorboard.sessionStart(step: resumedAfter + 1) }
        // a resumed run's report starts with the grid of the last evaluation before it
        if let record = metrics.epochRecords.last, let last = record["epoch"] as? NSNumber {
            let path = gridPath(phase: (record["phase"] as? String) ?? "", epoch: last.intValue)
            if let data = FileManager.default.contents(atPath: path) { latestGrid = [UInt8](data); latestGridEpoch = last.intValue }
        }
    }

    /// "layer 2" -> "layer2": a phase's name in file names and TensorBoard tags.
    static func tag(_ phase: String) -> String { phase.replacingOccurrences(of: " ", with: "") }

    /// samples/epoch-NNN.png, or samples/layer2-epoch-NNN.png for a stacked model's phase.
    func gridPath(phase: String, epoch: Int) -> String {
        String(format: "%@/samples/%@epoch-%03d.png", directory, phase.isEmpty ? "" : Self.tag(phase) + "-", epoch)
    }

    /// Mean training loss over the last --log-every steps.
    public func trainSteps(epoch: Int, step: Int, meanLoss: Double) throws(DAEError) {
        try metrics.append(["kind": "train", "epoch": epoch, "step": step, "train_loss": meanLoss])
        try tensorboard.scalar("train/loss_steps", meanLoss, step: step)
    }

    /// An epoch's end: its line in metrics.jsonl, TensorBoard points, the sample grid, the report.
    public func epochEnd(_ result: EpochResult, step: Int, eval: EvalMetrics?, grid: GrayImage?, worldSize: Int) throws(DAEError) {
        var record: [String: Any] = ["kind": "epoch", "epoch": result.epoch, "step": step, "train_loss": result.meanLoss,
                                     "samples_per_s": result.samplesPerSecond, "seconds": result.seconds,
                                     "allreduce_seconds": result.reduceSeconds, "world_size": worldSize,
                                     "time": ISO8601DateFormatter().string(from: Date())]
        // A stacked model's phases: "layer 2" or "fine-tune" in the record, its own loss curve
        // (each layer reconstructs something else), its own grid file names.
        let phase = result.phaseName.trimmingCharacters(in: .whitespaces)
        if !phase.isEmpty { record["phase"] = phase }
        try tensorboard.scalar(phase.isEmpty ? "train/loss" : "train/loss_\(Self.tag(phase))", result.meanLoss, step: step)
        try tensorboard.scalar("train/samples_per_second", result.samplesPerSecond, step: step)
        if let eval {
            record["eval"] = MetricsLog.dictionary(eval)
            for (tag, value) in [("eval/mse", eval.mse), ("eval/psnr", eval.psnr), ("eval/ssim", eval.ssim),
                                 ("eval/noisy_psnr", eval.noisyPSNR), ("eval/noisy_ssim", eval.noisySSIM)] {
                try tensorboard.scalar(tag, value, step: step)
            }
        }
        if let grid {
            let png = PNG.encode(grid)
            let path = gridPath(phase: phase, epoch: result.epoch)
            try writeFileAtomically(png, to: path)
            try tensorboard.image("samples/noisy_reconstructed_clean", png: png, width: grid.width, height: grid.height, step: step)
            latestGrid = png
            latestGridEpoch = result.epoch
        }
        try metrics.append(record)
        try writeReport()
    }

    public func writeReport() throws(DAEError) {
        let html = RunReport.render(title: "dae-dist: \((directory as NSString).lastPathComponent)", configuration: configuration,
                                    epochs: metrics.epochRecords, gridPNG: latestGrid, gridEpoch: latestGridEpoch)
        try writeFileAtomically(Array(html.utf8), to: directory + "/report.html")
    }
}

/// Rank 0's progress: on a terminal, one line per epoch that updates in place (step/total,
/// samples/s, loss, ETA) and is then replaced by the epoch's summary line; elsewhere (CI, Slurm
/// logs) only the summary lines; with --quiet, nothing.
public final class Progress {
    public enum Mode { case terminal, lines, quiet }
    public let mode: Mode
    var lastUpdate = Date.distantPast
    var shown = false

    /// Under mpirun a rank's stdout is a pseudo-terminal even when mpirun's own output goes to a
    /// file, so ranks started by a launcher print plain lines unless DAE_DIST_PROGRESS=terminal
    /// (launch/run sets it when its own stdout is a terminal); DAE_DIST_PROGRESS=lines forces lines.
    public init(quiet: Bool, environment: [String: String] = ProcessInfo.processInfo.environment) {
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

    public func step(epoch: Int, epochs: Int, step: Int, steps: Int, samplesPerSecond: Double, loss: Double) {
        guard mode == .terminal, Date().timeIntervalSince(lastUpdate) >= 0.25 else { return }
        lastUpdate = Date()
        // rate from the steps this process has taken (a resumed epoch starts part-way)
        let remaining = Double(steps - step) / max(Double(step - epochFirstStep), 1) * Date().timeIntervalSince(epochStart)
        let line = String(format: "epoch %d/%d  step %d/%d  %.0f samples/s  loss %.6f  ETA %@",
                          epoch, epochs, step, steps, samplesPerSecond, loss, Self.duration(remaining))
        FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
        shown = true
    }

    var epochStart = Date()
    var epochFirstStep = 0
    /// `atStep`: the steps of the epoch already done (non-zero after a mid-epoch resume).
    public func startEpoch(atStep: Int = 0) { epochStart = Date(); epochFirstStep = atStep; lastUpdate = Date() }

    /// A line that stays (epoch summaries, evaluation results); not shown with --quiet unless
    /// `always` (messages a user must see, such as where to resume).
    public func line(_ text: String, always: Bool = false) {
        guard mode != .quiet || always else { return }
        if shown { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)); shown = false }
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(max(0, seconds))
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
