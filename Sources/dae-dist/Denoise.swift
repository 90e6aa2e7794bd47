// dae-dist denoise: a trained model applied to images (PNG, JPEG, TIFF; folders of them) or IDX
// image files.

import ArgumentParser
import DAE
import Foundation

struct Denoise: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Denoise images (PNG, JPEG, TIFF, or folders of them; any size for the convolutional and U-Net models) or IDX image files with a trained model.",
        discussion: """
            Each output takes its input's file name inside --out, as a PNG (an IDX input's .gz is dropped: the output is
            uncompressed IDX); the pages of a multi-page TIFF become NAME-p1.png, NAME-p2.png, ... A folder stands for the
            images directly in it. Images are read with the model's channels (gray for a 1-channel model, RGB for a 3-channel
            one; 16-bit is read as 8-bit, with a warning; transparent pixels become black) and written the same way. Large images are denoised
            in overlapping tiles (--tile) with the same result as whole, in bounded memory.
            --add-noise KIND corrupts the inputs first (as training did) and also writes NAME.noisy.png (NAME.noisy for IDX),
            printing how far the noisy and the denoised images are from the originals.
            """)

    @OptionGroup var trained: CheckpointOptions
    @Argument(help: "Images (PNG, JPEG, TIFF), folders of images, or IDX image files (.gz or not); at least one.") var inputs: [String]
    @Option(help: "Output folder (created if missing); no output may replace an input or another output.") var out: String
    @Option(name: .customLong("add-noise"), help: "Corrupt the inputs first, F >= 0 and P in [0,1].") var addNoise: NoiseKind?
    @Option(parsing: .unconditional, help: "Seed of the added noise.") var seed: UInt64 = 0
    @Option(help: "A clean version of the (one) input image: print how far the input and the denoised image are from it (a multi-page TIFF input needs a reference of as many pages).")
    var reference: String?
    @Option(parsing: .unconditional, help: "Tile side for large images (a multiple of the model's pooling; default: the largest whose network takes at most 256 MiB; at most what fits in memory).")
    var tile: Int?
    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        if let tile, tile < 1 { throw flagError("--tile", "must be at least 1, got \(tile)") }
    }
    func run() throws {
        try runReportingErrors { _ in
            BLASThreads.set(threads.count(for: SingleProcess()))
            let model = try TrainedModel(path: try trained.file())
            // every output named and every size checked before anything is written (DenoiseJob)
            let job = try DenoiseJob(model: model, inputs: inputs, out: out, addNoise: addNoise, seed: seed, reference: reference, tile: tile)
            if let note = job.sixteenBitNote { warn(note) }
            try job.run(report: say)
        }
    }
}
