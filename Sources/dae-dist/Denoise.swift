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
            one; 16-bit is read as 8-bit; transparent pixels become black) and written the same way. Large images are denoised
            in overlapping tiles (--tile) with the same result as whole, in bounded memory.
            --add-noise KIND corrupts the inputs first (as training did) and also writes NAME.noisy.png (NAME.noisy for IDX),
            printing how far the noisy and the denoised images are from the originals.
            """)

    @OptionGroup var trained: CheckpointOptions
    @Argument(help: "Images (PNG, JPEG, TIFF), folders of images, or IDX image files (.gz or not); at least one.") var inputs: [String]
    @Option(help: "Output folder (created if missing); no output may replace an input or another output.") var out: String
    @Option(name: .customLong("add-noise"), help: "Corrupt the inputs first, F >= 0 and P in [0,1].") var addNoise: NoiseKind?
    @Option(help: "Seed of the added noise.") var seed: UInt64 = 0
    @Option(help: "A clean version of the (one) input image: print how far the input and the denoised image are from it.")
    var reference: String?
    @Option(help: "Tile side for large images (a multiple of the model's pooling; default: the largest whose network takes at most 256 MiB).")
    var tile: Int?
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        try runReportingErrors { _ in
            BLASThreads.set(threads.count(for: SingleProcess()))
            let (model, params, metadata) = try Weights.loadModel(path: trained.file())
            let denoiser = try ImageDenoiser(model: model, params: params, afterPhase: Weights.trainedPhase(metadata),
                                             geometry: TileGeometry(model: model), tile: tile)
            let channels = model.channels
            // Every output path first: none may be an input or another output (two inputs of one
            // name in different folders, say), so nothing is overwritten half-way through.
            func resolved(_ path: String) -> String { URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL.path }
            var plans: [(input: String, isPNG: Bool, target: String, noisy: String?)] = []
            let files = try expandFolders(inputs)
            if reference != nil, files.count != 1 { throw DAEError.badFlag("--reference", "scores one image; \(files.count) inputs were given") }
            let referenceImage = try reference.map { path throws(DAEError) in try ImageFile.decode(path: path, channels: channels)[0] }   // read once
            var claimed = Set(files.map(resolved))
            for input in files {
                // A folder opens as a file handle, and FileHandle.readData then traps (a try! inside
                // Foundation): check the kind first, and read with the throwing call.
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else {
                    throw DAEError.data(path: input, problem: "no such file")
                }
                guard let handle = FileHandle(forReadingAtPath: input),
                      let head = try? [UInt8](handle.read(upToCount: 8) ?? Data()) else {
                    throw DAEError.data(path: input, problem: "cannot be read (permissions?)")
                }
                try? handle.close()
                let name = (input as NSString).lastPathComponent
                // an image by its first bytes or by its name (a .png that is not one gets the image
                // reader's error, not IDX's); the rest IDX
                let isPNG = Self.isImage(head) || ImageFile.extensions.contains((name as NSString).pathExtension.lowercased())
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
                // The images as floats in [0,1], [count, C, H, W]: an IDX file's, an image's, or each
                // page of a multi-page TIFF (written as NAME-p1.png, NAME-p2.png, ...).
                var items: [(clean: [Float], count: Int, height: Int, width: Int, target: String, noisy: String?)] = []
                if plan.isPNG {
                    let pages = try ImageFile.decode(path: plan.input, channels: channels)
                    let base = (plan.target as NSString).deletingPathExtension      // <out>/NAME
                    for (p, page) in pages.enumerated() {
                        let name = pages.count == 1 ? base : base + "-p\(p + 1)"
                        items.append((page.pixels.map { Float($0) / 255 }, 1, page.height, page.width, name + ".png",
                                      plan.noisy == nil ? nil : name + ".noisy.png"))
                    }
                } else {
                    guard channels == 1 else {
                        throw DAEError.data(path: plan.input, problem: "IDX images are gray but the model takes \(channels) channels; pass PNG, JPEG or TIFF images")
                    }
                    let idx = try IDX.read(path: plan.input, expectedMagic: IDX.imagesMagic)
                    guard idx.dims.count == 3, idx.dims.allSatisfy({ $0 > 0 }) else {
                        throw DAEError.data(path: plan.input, problem: "expected images [count, rows, cols], found dimensions \(idx.dims)")
                    }
                    items.append((idx.values.map { Float($0) / 255 }, idx.dims[0], idx.dims[1], idx.dims[2], plan.target, plan.noisy))
                }
                for (page, item) in items.enumerated() {
                    let (clean, count, height, width) = (item.clean, item.count, item.height, item.width)
                    try denoiser.check(height: height, width: width, source: plan.input)
                    var noisy = clean
                    if let noise = addNoise {
                        let pixels = channels * height * width
                        clean.withUnsafeBufferPointer { c in
                            noisy.withUnsafeMutableBufferPointer { n in
                                for i in 0..<count {
                                    noise.corrupt(c.baseAddress! + i * pixels, into: n.baseAddress! + i * pixels, count: pixels, seed: seed,
                                                  epoch: 0, sampleIndex: plan.isPNG ? index + page * plans.count : i, purpose: .evalNoise)
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
                        let encoded = plan.isPNG ? PNG.encode(planes: bytesOf(values), channels: channels, width: width, height: height)
                                                 : IDX.encode(dims: [count, height, width], values: bytesOf(values))
                        try writeFileAtomically(encoded, to: path)
                    }
                    try write(result, to: item.target)
                    let tiling = denoiser.tile.map { tile in
                        max(width, height) > tile ? String(format: ", tiles of %d, %.0f MB", tile, Double(denoiser.memoryEstimate(height: height, width: width)) / 1e6) : ""
                    } ?? ""
                    var line = "wrote \(item.target) (\(count > 1 ? "\(count) images of " : "")\(width)x\(height)\(channels == 3 ? " RGB" : "")\(tiling))"
                    if let noisyPath = item.noisy {
                        try write(noisy, to: noisyPath)
                        let before = ImageMetrics.mse(noisy, clean, count: clean.count), after = ImageMetrics.mse(result, clean, count: clean.count)
                        line += String(format: " and %@: MSE to the original %.5f noisy -> %.5f denoised (PSNR %.2f -> %.2f dB)",
                                       noisyPath, before, after, ImageMetrics.psnr(mse: before), ImageMetrics.psnr(mse: after))
                    }
                    say(line)
                    if let reference, let referenceImage {
                        let clean = try Self.referencePixels(referenceImage, path: reference, height: height, width: width)
                        let before = ImageMetrics.mse(noisy, clean, count: clean.count), after = ImageMetrics.mse(result, clean, count: clean.count)
                        say(String(format: "against %@: MSE %.5f input -> %.5f denoised (PSNR %.2f -> %.2f dB)",
                                   reference, before, after, ImageMetrics.psnr(mse: before), ImageMetrics.psnr(mse: after)))
                    }
                }
            }
        }
    }

    /// The inputs with every folder replaced by the images directly in it (by name), sorted.
    func expandFolders(_ inputs: [String]) throws(DAEError) -> [String] {
        var files: [String] = []
        for input in inputs {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input, isDirectory: &isFolder), isFolder.boolValue else {
                files.append(input)
                continue
            }
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: input)) ?? [])
                .filter { !$0.hasPrefix(".") && ImageFile.extensions.contains(($0 as NSString).pathExtension.lowercased()) }
                .sorted()
            guard !names.isEmpty else {
                throw DAEError.data(path: input, problem: "is a folder with no images (.png, .jpg, .jpeg, .tif, .tiff) in it")
            }
            files += names.map { (input as NSString).appendingPathComponent($0) }
        }
        return files
    }

    /// PNG, JPEG or TIFF by their first bytes.
    static func isImage(_ head: [UInt8]) -> Bool {
        head.starts(with: [0x89, 0x50, 0x4E, 0x47]) || head.starts(with: [0xFF, 0xD8, 0xFF])
            || head.starts(with: [0x49, 0x49, 0x2A, 0x00]) || head.starts(with: [0x4D, 0x4D, 0x00, 0x2A])
    }

    /// The --reference image as floats in [0,1], which must have the input's size.
    static func referencePixels(_ image: PlanarImage, path: String, height: Int, width: Int) throws(DAEError) -> [Float] {
        guard image.height == height, image.width == width else {
            throw DAEError.badFlag("--reference", "\(path) is \(image.height)x\(image.width) but the input is \(height)x\(width)")
        }
        return image.pixels.map { Float($0) / 255 }
    }
}
