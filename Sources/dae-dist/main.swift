// dae-dist: the command-line tool. Subcommands parse flags, then call the DAE library.

import ArgumentParser
import DAE
import Foundation

@main
struct DAEDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dae-dist",
        abstract: "Data-parallel trainer for denoising autoencoders on BLAS kernels.",
        subcommands: [Train.self])
}

/// Writes a line to standard output at once (unbuffered), so progress shows up in logs as it happens.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Prints a DAEError as one line on stderr and exits 1; other errors go to ArgumentParser.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as DAEError {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the reference convolutional denoising autoencoder.",
        discussion: "Defaults are the reference recipe: 20 epochs, batch 20, Adam lr 1e-3, gaussian:0.5 noise, MSE loss, seed 0.")

    @Option(help: "Number of epochs.") var epochs = 20
    @Option(name: .customLong("batch-size"), help: "Samples per optimizer step.") var batchSize = 20
    @Option(help: "Adam learning rate.") var lr: Float = 1e-3
    @Option(help: "Input corruption: gaussian:F (clamp(x + F*N(0,1), 0, 1)), mask:P, saltpepper:P or none.")
    var noise = "gaussian:0.5"
    @Option(help: "Reconstruction loss: mse or bce.") var loss = "mse"
    @Option(help: "Seed for initialisation, shuffling and noise.") var seed: UInt64 = 0
    @Option(help: "Train on the first N training samples only.") var limit: Int?
    @Option(name: .customLong("data-dir"), help: "Folder with IDX files in MNIST's layout (Fashion-MNIST works too).")
    var dataDir = "data/mnist"
    @Option(name: .customLong("run-dir"), help: "Output folder (default: runs/<UTC date-time>).") var runDir: String?
    @Option(help: "BLAS threads (default: all cores).") var threads: Int?

    func run() throws {
        try runReportingErrors {
            var config = TrainConfig()
            config.epochs = epochs
            config.batchSize = batchSize
            config.adam.lr = lr
            config.noise = try NoiseKind(parsing: noise)
            guard let lossKind = LossKind(rawValue: loss.lowercased()) else {
                throw DAEError.badFlag("--loss", "unknown loss '\(loss)'; use mse or bce")
            }
            config.loss = lossKind
            config.seed = seed
            config.limit = limit
            try config.validate()
            if let threads, threads < 1 { throw DAEError.badFlag("--threads", "must be at least 1, got \(threads)") }
            BLASThreads.set(threads ?? ProcessInfo.processInfo.activeProcessorCount)

            var data = try Dataset.load(directory: dataDir, split: .train)
            if let limit { data = data.prefix(limit) }
            let directory = runDir ?? defaultRunDirectory()
            let trainer = try Trainer(config: config, data: data)
            say("dae-dist train: \(data.count) samples (\(data.height)x\(data.width)) from \(data.source)")
            say("  \(config.epochs) epochs, batch \(config.batchSize), Adam lr \(config.adam.lr), noise \(config.noise), loss \(config.loss.rawValue), seed \(config.seed)")
            say("  \(trainer.model.parameterCount) parameters, \(BLASThreads.current) BLAS threads, run dir \(directory)")
            for epoch in 1...config.epochs {
                let r = try trainer.trainEpoch(epoch)
                say(String(format: "epoch %3d/%d  loss %.6f  %7.0f samples/s  %6.1f s",
                             r.epoch, config.epochs, r.meanLoss, r.samplesPerSecond, r.seconds))
            }
            let weights = (directory as NSString).appendingPathComponent("model.safetensors")
            try trainer.saveWeights(to: weights)
            say("wrote \(weights)")
        }
    }

    func defaultRunDirectory() -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return "runs/" + formatter.string(from: Date())
    }
}
