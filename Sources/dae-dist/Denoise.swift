// dae-dist denoise: a trained model applied to PNG images or IDX image files.

import ArgumentParser
import DAE
import Foundation

struct Denoise: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Denoise grayscale PNG images (any size for the convolutional model) or IDX image files with a trained model.",
        discussion: """
            Each output takes its input's file name inside --out (an IDX input's .gz is dropped: the output is uncompressed).
            Colour, palette and 16-bit PNGs are converted to 8-bit gray; transparent pixels become black.
            --add-noise KIND corrupts the inputs first (as training did) and also writes NAME.noisy.png (NAME.noisy for IDX),
            printing how far the noisy and the denoised images are from the originals.
            """)

    @OptionGroup var trained: CheckpointOptions
    @Argument(help: "PNG files or IDX image files (.gz or not); at least one (swift-argument-parser requires it).") var inputs: [String]
    @Option(help: "Output folder (created if missing); no output may replace an input or another output.") var out: String
    @Option(name: .customLong("add-noise"), help: "Corrupt the inputs first, F >= 0 and P in [0,1].") var addNoise: NoiseKind?
    @Option(help: "Seed of the added noise.") var seed: UInt64 = 0
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        try runReportingErrors { _ in
            BLASThreads.set(threads.count(for: SingleProcess()))
            let (model, params, metadata) = try Weights.loadModel(path: trained.file())
            let denoiser = ImageDenoiser(model: model, params: params, afterPhase: Weights.trainedPhase(metadata))
            // Every output path first: none may be an input or another output (two inputs of one
            // name in different folders, say), so nothing is overwritten half-way through.
            func resolved(_ path: String) -> String { URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL.path }
            var plans: [(input: String, isPNG: Bool, target: String, noisy: String?)] = []
            var claimed = Set(inputs.map(resolved))
            for input in inputs {
                // A folder opens as a file handle, and FileHandle.readData then traps (a try! inside
                // Foundation): check the kind first, and read with the throwing call.
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else {
                    throw DAEError.data(path: input, problem: "no such file")
                }
                if isDirectory.boolValue {
                    throw DAEError.data(path: input, problem: "is a folder; pass image files (PNG or IDX), e.g. \(input)/*.png")
                }
                guard let handle = FileHandle(forReadingAtPath: input),
                      let head = try? [UInt8](handle.read(upToCount: 8) ?? Data()) else {
                    throw DAEError.data(path: input, problem: "cannot be read (permissions?)")
                }
                try? handle.close()
                let name = (input as NSString).lastPathComponent
                // PNG by signature or by name (a .png that is not one gets PNG's error, not IDX's)
                let isPNG = head.starts(with: [0x89, 0x50, 0x4E, 0x47]) || name.lowercased().hasSuffix(".png")
                let stem = isPNG ? (name as NSString).deletingPathExtension : (name.hasSuffix(".gz") ? String(name.dropLast(3)) : name)
                let target = (out as NSString).appendingPathComponent(isPNG ? stem + ".png" : stem)
                let noisy = addNoise == nil ? nil : (isPNG ? (out as NSString).appendingPathComponent(stem + ".noisy.png") : target + ".noisy")
                for path in [target] + (noisy.map { [$0] } ?? []) {
                    guard claimed.insert(resolved(path)).inserted else {
                        throw DAEError.badFlag("--out", "\(path) would replace an input or another output (inputs of the same name?); choose another output folder or rename")
                    }
                }
                plans.append((input, isPNG, target, noisy))
            }
            do {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            } catch {
                throw DAEError.write(path: out, problem: "cannot create the output folder")
            }
            for (index, plan) in plans.enumerated() {
                let (input, isPNG, target) = (plan.input, plan.isPNG, plan.target)
                // The images as floats in [0,1], [count, H, W].
                let count: Int, height: Int, width: Int, clean: [Float]
                if isPNG {
                    guard let data = FileManager.default.contents(atPath: input) else {
                        throw DAEError.data(path: input, problem: "cannot be read")
                    }
                    let image = try PNG.decode([UInt8](data), path: input)
                    (count, height, width) = (1, image.height, image.width)
                    clean = image.pixels.map { Float($0) / 255 }
                } else {
                    let idx = try IDX.read(path: input, expectedMagic: IDX.imagesMagic)
                    guard idx.dims.count == 3, idx.dims.allSatisfy({ $0 > 0 }) else {
                        throw DAEError.data(path: input, problem: "expected images [count, rows, cols], found dimensions \(idx.dims)")
                    }
                    (count, height, width) = (idx.dims[0], idx.dims[1], idx.dims[2])
                    clean = idx.values.map { Float($0) / 255 }
                }
                try denoiser.check(height: height, width: width, source: input)
                var noisy = clean
                if let noise = addNoise {
                    let pixels = height * width
                    clean.withUnsafeBufferPointer { c in
                        noisy.withUnsafeMutableBufferPointer { n in
                            for i in 0..<count {
                                noise.corrupt(c.baseAddress! + i * pixels, into: n.baseAddress! + i * pixels, count: pixels,
                                              seed: seed, epoch: 0, sampleIndex: isPNG ? index : i, purpose: .evalNoise)
                            }
                        }
                    }
                }
                var result = [Float](repeating: 0, count: clean.count)
                noisy.withUnsafeBufferPointer { src in
                    result.withUnsafeMutableBufferPointer { denoiser.denoise(src.baseAddress!, count: count, height: height, width: width, into: $0.baseAddress!) }
                }
                func bytesOf(_ values: [Float]) -> [UInt8] { values.map { UInt8(min(max($0 * 255 + 0.5, 0), 255)) } }
                func write(_ values: [Float], to path: String) throws(DAEError) {
                    let encoded = isPNG ? PNG.encode(GrayImage(width: width, height: height, pixels: bytesOf(values)))
                                        : IDX.encode(dims: [count, height, width], values: bytesOf(values))
                    try writeFileAtomically(encoded, to: path)
                }
                try write(result, to: target)
                var line = "wrote \(target) (\(count > 1 ? "\(count) images of " : "")\(width)x\(height))"
                if let noisyPath = plan.noisy {
                    try write(noisy, to: noisyPath)
                    let before = ImageMetrics.mse(noisy, clean, count: clean.count), after = ImageMetrics.mse(result, clean, count: clean.count)
                    line += String(format: " and %@: MSE to the original %.5f noisy -> %.5f denoised (PSNR %.2f -> %.2f dB)",
                                   noisyPath, before, after, ImageMetrics.psnr(mse: before), ImageMetrics.psnr(mse: after))
                }
                say(line)
            }
        }
    }
}
