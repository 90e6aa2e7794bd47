// Denoising files: a trained model applied to images (PNG, JPEG, TIFF; folders of them) or IDX
// image files, each output named after its input in a folder (what `dae-dist denoise` runs).
// Everything is planned before anything is written: every output named (a multi-page TIFF's pages
// as NAME-p1.png, ...), none a file the job reads or another input's output, every size checked
// against the model, a --reference matched page to page; so a bad input leaves nothing half done.

import Foundation

public struct DenoiseJob {
    public let model: TrainedModel
    public let denoiser: ImageDenoiser
    public let out: String
    public let addNoise: NoiseKind?
    public let seed: UInt64
    public let reference: String?
    /// Every input's outputs, in order.
    public let plans: [Plan]
    let referencePages: [PlanarImage]?

    /// Plans the job: `inputs` (files, or folders standing for the images directly in them) into
    /// `out`; with `addNoise` each input is corrupted first (keyed by `seed`) and written too;
    /// `reference` is a clean version of the one input to score against; `tile` as ImageDenoiser.
    public init(model: TrainedModel, inputs: [String], out: String, addNoise: NoiseKind? = nil, seed: UInt64 = 0,
                reference: String? = nil, tile: Int? = nil) throws(DAEError) {
        self.model = model; self.out = out; self.addNoise = addNoise; self.seed = seed; self.reference = reference
        denoiser = try ImageDenoiser(model: model.spec, params: model.parameters, afterPhase: model.trainedPhase,
                                     geometry: TileGeometry(model: model.spec), tile: tile)
        let files = try Self.expandFolders(inputs)
        if reference != nil, files.count != 1 { throw DAEError.badFlag("--reference", "scores one image; \(files.count) inputs were given") }
        plans = try Self.plan(files, checkpoint: model.path, denoiser: denoiser, out: out, addNoise: addNoise, reference: reference)
        let channels = model.spec.channels, first = plans[0]
        referencePages = try reference.map { path throws(DAEError) in try Self.referenceImages(path, for: first, channels: channels) }
    }

    /// The warning for 16-bit inputs (read as 8-bit), if any.
    public var sixteenBitNote: String? {
        ImageFile.sixteenBitNote(inputs: plans.filter(\.isImage).map(\.input), what: "the inputs")
    }

    /// Denoises every input, writing its outputs; `report` gets a line per output written (and per
    /// --reference score).
    public func run(report: (String) -> Void) throws(DAEError) {
        do {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        } catch {
            throw DAEError.write(path: out, problem: "cannot create the output folder")
        }
        for (index, plan) in plans.enumerated() { try denoise(plan, index: index, report: report) }
    }

    /// The images of one input as floats in [0,1], [count, C, H, W]: an IDX file's, an image's, or
    /// each page of a multi-page TIFF (written as NAME-p1.png, NAME-p2.png, ...).
    func images(of plan: Plan) throws(DAEError) -> [(clean: [Float], count: Int, height: Int, width: Int)] {
        let channels = model.spec.channels
        if plan.isImage {
            let pages = try ImageFile.decode(path: plan.input, channels: channels)
            guard pages.count == plan.outputs.count else {
                throw DAEError.data(path: plan.input, problem: "has \(pages.count) pages but its headers said \(plan.outputs.count); was it changed while dae-dist read it?")
            }
            return pages.map { ($0.pixels.map { Float($0) / 255 }, 1, $0.height, $0.width) }
        }
        guard channels == 1 else {
            throw DAEError.data(path: plan.input, problem: "IDX images are gray but the model takes \(channels) channels; pass PNG, JPEG or TIFF images")
        }
        let idx = try Self.readIDX(plan.input)
        return [(idx.values.map { Float($0) / 255 }, idx.dims[0], idx.dims[1], idx.dims[2])]
    }

    /// One input, the `index`-th: each of its images corrupted (with addNoise), denoised, written.
    func denoise(_ plan: Plan, index: Int, report: (String) -> Void) throws(DAEError) {
        let channels = model.spec.channels, denoiser = self.denoiser, plans = self.plans
        for (page, item) in try images(of: plan).enumerated() {
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
            report(line)
            if let reference, let referencePages {
                // the reference's pages match the input's images one to one (checked in referenceImages)
                let first = plan.isImage ? page : 0
                let clean = referencePages[first ..< first + count].flatMap { $0.pixels.map { Float($0) / 255 } }
                let before = ImageMetrics.mse(noisy, clean, count: clean.count), after = ImageMetrics.mse(result, clean, count: clean.count)
                let against = referencePages.count > 1 && count == 1 ? "\(reference) (page \(first + 1))" : reference
                report(String(format: "against %@: MSE %.5f input -> %.5f denoised (PSNR %.2f -> %.2f dB)",
                           against, before, after, ImageMetrics.psnr(mse: before), ImageMetrics.psnr(mse: after)))
            }
        }
    }

    /// One input and what it makes: an image file one output per image (a multi-page TIFF's pages
    /// as NAME-p1.png, NAME-p2.png, ...), an IDX file one output for all its images.
    public struct Plan {
        public var input: String
        public var isImage: Bool
        public var outputs: [(target: String, noisy: String?)]
        /// Each image's width and height, from the image's headers (an IDX file's only with
        /// --reference, which needs them).
        public var sizes: [(width: Int, height: Int)]
    }

    /// Every input's outputs, named before anything is written. None may be a file this command
    /// reads (an input, --checkpoint, --reference) or another input's output: two inputs of one
    /// name in different folders, or NAME-p1.png beside a multi-page NAME.tif whose first page
    /// is written as NAME-p1.png. Sizes are checked against the model here too.
    static func plan(_ files: [String], checkpoint: String, denoiser: ImageDenoiser, out: String, addNoise: NoiseKind?,
                     reference: String?) throws(DAEError) -> [Plan] {
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
    static func referenceImages(_ path: String, for plan: Plan, channels: Int) throws(DAEError) -> [PlanarImage] {
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
    public static func expandFolders(_ inputs: [String]) throws(DAEError) -> [String] {
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
