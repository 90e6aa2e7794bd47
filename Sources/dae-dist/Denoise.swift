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
            let checkpoint = try trained.file()
            let trainedModel = try TrainedModel(path: checkpoint)
            let model = trainedModel.spec
            let denoiser = try ImageDenoiser(model: model, params: trainedModel.parameters, afterPhase: trainedModel.trainedPhase,
                                             geometry: TileGeometry(model: model), tile: tile)
            let channels = model.channels
            let files = try expandFolders(inputs)
            if reference != nil, files.count != 1 { throw DAEError.badFlag("--reference", "scores one image; \(files.count) inputs were given") }
            // Every output named and every size checked before anything is written, so that a bad
            // input or --reference leaves nothing half done.
            let plans = try plan(files, checkpoint: checkpoint, denoiser: denoiser)
            if let note = ImageFile.sixteenBitNote(inputs: plans.filter(\.isImage).map(\.input), what: "the inputs") { warn(note) }
            let referencePages = try reference.map { path throws(DAEError) in try referenceImages(path, for: plans[0], channels: channels) }
            do {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            } catch {
                throw DAEError.write(path: out, problem: "cannot create the output folder")
            }
            for (index, plan) in plans.enumerated() {
                // The images as floats in [0,1], [count, C, H, W]: an IDX file's, an image's, or each
                // page of a multi-page TIFF (written as NAME-p1.png, NAME-p2.png, ...).
                var items: [(clean: [Float], count: Int, height: Int, width: Int)] = []
                if plan.isImage {
                    let pages = try ImageFile.decode(path: plan.input, channels: channels)
                    guard pages.count == plan.outputs.count else {
                        throw DAEError.data(path: plan.input, problem: "has \(pages.count) pages but its headers said \(plan.outputs.count); was it changed while dae-dist read it?")
                    }
                    for page in pages { items.append((page.pixels.map { Float($0) / 255 }, 1, page.height, page.width)) }
                } else {
                    guard channels == 1 else {
                        throw DAEError.data(path: plan.input, problem: "IDX images are gray but the model takes \(channels) channels; pass PNG, JPEG or TIFF images")
                    }
                    let idx = try Self.readIDX(plan.input)
                    items.append((idx.values.map { Float($0) / 255 }, idx.dims[0], idx.dims[1], idx.dims[2]))
                }
                for (page, item) in items.enumerated() {
                    let (clean, count, height, width) = (item.clean, item.count, item.height, item.width)
                    let output = plan.outputs[page]
                    try denoiser.check(height: height, width: width, source: plan.input)
                    var noisy = clean
                    if let noise = addNoise {
                        let pixels = channels * height * width
                        clean.withUnsafeBufferPointer { c in
                            noisy.withUnsafeMutableBufferPointer { n in
                                for i in 0..<count {
                                    noise.corrupt(c.baseAddress! + i * pixels, into: n.baseAddress! + i * pixels, count: pixels, seed: seed,
                                                  epoch: 0, sampleIndex: plan.isImage ? index + page * plans.count : i, purpose: .evalNoise)
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
                        let encoded = plan.isImage ? PNG.encode(planes: bytesOf(values), channels: channels, width: width, height: height)
                                                   : IDX.encode(dims: [count, height, width], values: bytesOf(values))
                        try writeFileAtomically(encoded, to: path)
                    }
                    try write(result, to: output.target)
                    let tiling = denoiser.tile.map { tile in
                        max(width, height) > tile ? String(format: ", tiles of %d, %.0f MB", tile, Double(denoiser.memoryEstimate(height: height, width: width)) / 1e6) : ""
                    } ?? ""
                    var line = "wrote \(output.target) (\(count > 1 ? "\(count) images of " : "")\(width)x\(height)\(channels == 3 ? " RGB" : "")\(tiling))"
                    if let noisyPath = output.noisy {
                        try write(noisy, to: noisyPath)
                        let before = ImageMetrics.mse(noisy, clean, count: clean.count), after = ImageMetrics.mse(result, clean, count: clean.count)
                        line += String(format: " and %@: MSE to the original %.5f noisy -> %.5f denoised (PSNR %.2f -> %.2f dB)",
                                       noisyPath, before, after, ImageMetrics.psnr(mse: before), ImageMetrics.psnr(mse: after))
                    }
                    say(line)
                    if let reference, let referencePages {
                        // the reference's pages match the input's images one to one (checked in referenceImages)
                        let first = plan.isImage ? page : 0
                        let clean = referencePages[first ..< first + count].flatMap { $0.pixels.map { Float($0) / 255 } }
                        let before = ImageMetrics.mse(noisy, clean, count: clean.count), after = ImageMetrics.mse(result, clean, count: clean.count)
                        let against = referencePages.count > 1 && count == 1 ? "\(reference) (page \(first + 1))" : reference
                        say(String(format: "against %@: MSE %.5f input -> %.5f denoised (PSNR %.2f -> %.2f dB)",
                                   against, before, after, ImageMetrics.psnr(mse: before), ImageMetrics.psnr(mse: after)))
                    }
                }
            }
        }
    }

    /// One input and what it makes: an image file one output per image (a multi-page TIFF's pages
    /// as NAME-p1.png, NAME-p2.png, ...), an IDX file one output for all its images.
    struct Plan {
        var input: String
        var isImage: Bool
        var outputs: [(target: String, noisy: String?)]
        /// Each image's width and height, from the image's headers (an IDX file's only with
        /// --reference, which needs them).
        var sizes: [(width: Int, height: Int)]
    }

    /// Every input's outputs, named before anything is written. None may be a file this command
    /// reads (an input, --checkpoint, --reference) or another input's output: two inputs of one
    /// name in different folders, or NAME-p1.png beside a multi-page NAME.tif whose first page
    /// is written as NAME-p1.png. Sizes are checked against the model here too.
    func plan(_ files: [String], checkpoint: String, denoiser: ImageDenoiser) throws(DAEError) -> [Plan] {
        var read: [(what: String, path: String)] = [("the --checkpoint file", checkpoint)] + files.map { ("the input", $0) }
        if let reference { read.append(("the --reference image", reference)) }
        var outputs = OutputPaths(reading: read)
        var plans: [Plan] = []
        for input in files {
            let head = try Self.firstBytes(input)
            let name = (input as NSString).lastPathComponent
            // an image by its first bytes or by its name (a .png that is not one gets the image
            // reader's error, not IDX's); the rest IDX
            let isImage = Self.isImage(head) || ImageFile.extensions.contains((name as NSString).pathExtension.lowercased())
            var plan = Plan(input: input, isImage: isImage, outputs: [], sizes: [])
            if isImage {
                let stem = (out as NSString).appendingPathComponent((name as NSString).deletingPathExtension)
                let headers = try ImageFile.headers(path: input)
                for (p, header) in headers.enumerated() {
                    let base = headers.count == 1 ? stem : stem + "-p\(p + 1)"
                    plan.outputs.append((base + ".png", addNoise == nil ? nil : base + ".noisy.png"))
                    plan.sizes.append((header.width, header.height))
                }
            } else {
                let target = (out as NSString).appendingPathComponent(name.hasSuffix(".gz") ? String(name.dropLast(3)) : name)
                plan.outputs.append((target, addNoise == nil ? nil : target + ".noisy"))
                if reference != nil {
                    let dims = try Self.readIDX(input).dims
                    plan.sizes = Array(repeating: (dims[2], dims[1]), count: dims[0])
                }
            }
            for (p, output) in plan.outputs.enumerated() {
                let owner = plan.outputs.count > 1 ? "\(input) (page \(p + 1))" : input
                for path in [output.target] + (output.noisy.map { [$0] } ?? []) { try outputs.claim(path, flag: "--out", for: owner) }
            }
            for size in plan.sizes { try denoiser.check(height: size.height, width: size.width, source: input) }
            plans.append(plan)
        }
        return plans
    }

    /// The --reference image's pages, one for each image of the input (`plan`) and of its size:
    /// page K of a multi-page TIFF input is scored against page K of the reference, not all pages
    /// against one.
    func referenceImages(_ path: String, for plan: Plan, channels: Int) throws(DAEError) -> [PlanarImage] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue,
              FileManager.default.isReadableFile(atPath: path) else {
            throw DAEError.badFlag("--reference", "\(path): \(unreadableReason(path))")
        }
        let pages = try ImageFile.decode(path: path, channels: channels)
        guard pages.count == plan.sizes.count else {
            func images(_ n: Int) -> String { n == 1 ? "1 image" : "\(n) images" }
            throw DAEError.badFlag("--reference", "\(path) has \(images(pages.count)) but the input \(plan.input) has \(images(plan.sizes.count)); each input image is scored against the reference page of the same number, so give a reference with as many pages (a multi-page TIFF), or denoise and score one page at a time")
        }
        for (k, (page, size)) in zip(pages, plan.sizes).enumerated() where page.width != size.width || page.height != size.height {
            let which = pages.count > 1 ? " (page \(k + 1))" : ""
            throw DAEError.badFlag("--reference", "\(path)\(which) is \(page.width)x\(page.height) but the input \(plan.input)\(which) is \(size.width)x\(size.height); the reference must be the clean version of the same image")
        }
        return pages
    }

    /// An input's first bytes, which tell an image from an IDX file; why it cannot be read if not.
    static func firstBytes(_ input: String) throws(DAEError) -> [UInt8] {
        // A folder opens as a file handle, and FileHandle.readData then traps (a try! inside
        // Foundation): check the kind first, and read with the throwing call.
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isFolder), !isFolder.boolValue,
              let handle = FileHandle(forReadingAtPath: input),
              let head = try? [UInt8](handle.read(upToCount: 8) ?? Data()) else {
            throw DAEError.data(path: input, problem: unreadableReason(input))
        }
        try? handle.close()
        return head
    }

    /// An IDX file of images [count, rows, cols].
    static func readIDX(_ path: String) throws(DAEError) -> IDXArray {
        let idx = try IDX.read(path: path, expectedMagic: IDX.imagesMagic)
        guard idx.dims.count == 3, idx.dims.allSatisfy({ $0 > 0 }) else {
            throw DAEError.data(path: path, problem: "expected images [count, rows, cols], found dimensions \(idx.dims)")
        }
        return idx
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
}
