// Everything rank 0 leaves in the run directory besides checkpoints and the final weights, as an
// observer of the TrainingRun:
//   config.json            the run's configuration (RunConfiguration)
//   metrics.jsonl          one MetricsRecord per epoch (and per --log-every steps)
//   samples/epoch-NNN.png  noisy / reconstructed / clean test images after each evaluation
//   tensorboard/           event files: train loss, eval metrics, the sample grid
//   report.html            a self-contained page with the grid, curves and tables

import Foundation

public final class RunOutputs: TrainingObserver {
    public let directory: String
    let configuration: RunConfiguration
    /// Also log the mean training loss every N steps (0: off).
    let logEvery: Int
    var metrics: MetricsLog? = nil
    var tensorboard: TensorBoardWriter? = nil
    var latestGrid: [UInt8]? = nil
    var latestGridEpoch: Int? = nil
    var windowSum = 0.0, windowSteps = 0

    /// Nothing is written until the run begins (after any resume).
    public init(directory: String, configuration: RunConfiguration, logEvery: Int = 0) {
        self.directory = directory
        self.configuration = configuration
        self.logEvery = logEvery
    }

    public func training(_ event: TrainingEvent) throws(DAEError) {
        switch event {
        case .began(let begin): try open(resumedAfter: begin.resumedAfter)
        case .stepDone(let step): try stepDone(step)
        case .epochEnded(let epoch): try epochEnded(epoch)
        default: break
        }
    }

    /// `resumedAfter`: the global step a resumed run continues from (nil for a fresh run).
    func open(resumedAfter: Int?) throws(DAEError) {
        do {
            try FileManager.default.createDirectory(atPath: directory + "/samples", withIntermediateDirectories: true)
        } catch {
            throw DAEError.write(path: directory, problem: "cannot create the run directory")
        }
        try writeFileAtomically(Array((jsonLine(configuration) + "\n").utf8), to: directory + "/config.json")
        let metrics = try MetricsLog(path: directory + "/metrics.jsonl", keepThrough: resumedAfter)
        self.metrics = metrics
        let tensorboard = try TensorBoardWriter(directory: directory + "/tensorboard")
        self.tensorboard = tensorboard
        if let resumedAfter { try tensorboard.sessionStart(step: resumedAfter + 1) }
        // a resumed run's report starts with the grid of the last evaluation before it
        if let record = metrics.epochRecords.last {
            let path = gridPath(phase: record.phase ?? "", epoch: record.epoch)
            if let data = FileManager.default.contents(atPath: path) { latestGrid = [UInt8](data); latestGridEpoch = record.epoch }
        }
    }

    /// "layer 2" -> "layer2": a phase's name in file names and TensorBoard tags.
    static func tag(_ phase: String) -> String { phase.replacingOccurrences(of: " ", with: "") }

    /// samples/epoch-NNN.png, or samples/layer2-epoch-NNN.png for a stacked model's phase.
    func gridPath(phase: String, epoch: Int) -> String {
        String(format: "%@/samples/%@epoch-%03d.png", directory, phase.isEmpty ? "" : Self.tag(phase) + "-", epoch)
    }

    /// With --log-every N: the mean training loss of the last N steps (the window restarts with each epoch).
    func stepDone(_ step: StepReport) throws(DAEError) {
        guard logEvery > 0, let metrics, let tensorboard else { return }
        if step.stepsThisRun == 1 { windowSum = 0; windowSteps = 0 }
        windowSum += step.batchLoss; windowSteps += 1
        guard step.position.globalStep % logEvery == 0 else { return }
        let mean = windowSum / Double(windowSteps)
        try metrics.append(MetricsRecord(kind: .train, epoch: step.position.epoch, step: step.position.globalStep, trainLoss: mean))
        try tensorboard.scalar("train/loss_steps", mean, step: step.position.globalStep)
        windowSum = 0; windowSteps = 0
    }

    /// An epoch's end: its line in metrics.jsonl, TensorBoard points, the sample grid, the report.
    func epochEnded(_ report: EpochReport) throws(DAEError) {
        guard let metrics, let tensorboard else { return }
        let result = report.result, step = report.globalStep
        // A stacked model's phases: "layer 2" or "fine-tune" in the record, its own loss curve
        // (each layer reconstructs something else), its own grid file names.
        let phase = result.phaseName.trimmingCharacters(in: .whitespaces)
        let record = MetricsRecord(kind: .epoch, phase: phase.isEmpty ? nil : phase, epoch: result.epoch, step: step,
                                   trainLoss: result.meanLoss, eval: report.eval, samplesPerSecond: result.samplesPerSecond,
                                   seconds: result.seconds, allreduceSeconds: result.reduceSeconds, worldSize: report.worldSize,
                                   time: ISO8601DateFormatter().string(from: Date()))
        try tensorboard.scalar(phase.isEmpty ? "train/loss" : "train/loss_\(Self.tag(phase))", result.meanLoss, step: step)
        try tensorboard.scalar("train/samples_per_second", result.samplesPerSecond, step: step)
        if let eval = report.eval {
            for (tag, value) in [("eval/mse", eval.mse), ("eval/psnr", eval.psnr), ("eval/ssim", eval.ssim),
                                 ("eval/noisy_psnr", eval.noisyPSNR), ("eval/noisy_ssim", eval.noisySSIM)] {
                try tensorboard.scalar(tag, value, step: step)
            }
        }
        if let grid = report.grid {
            let png = PNG.encode(grid)
            try writeFileAtomically(png, to: gridPath(phase: phase, epoch: result.epoch))
            try tensorboard.image("samples/noisy_reconstructed_clean", png: png, width: grid.width, height: grid.height,
                                  channels: grid.channels, step: step)
            latestGrid = png
            latestGridEpoch = result.epoch
        }
        try metrics.append(record)
        try writeReport()
    }

    public func writeReport() throws(DAEError) {
        let html = RunReport.render(title: "dae-dist: \((directory as NSString).lastPathComponent)", configuration: configuration.rows,
                                    epochs: metrics?.epochRecords ?? [], gridPNG: latestGrid, gridEpoch: latestGridEpoch)
        try writeFileAtomically(Array(html.utf8), to: directory + "/report.html")
    }
}
