// What --data may name, and how each becomes a Dataset of 8-bit images with 1 or 3 channels:
//   - a folder in MNIST's IDX layout (Dataset.load(directory:split:), MNIST.swift): gray;
//   - a folder with train.npy and test.npy, or one .npy file (NPY.swift): gray or RGB;
//   - a folder of images (PNG, JPEG, TIFF: ImageFiles.swift), searched recursively, following
//     links, skipping run directories (listImages); every page of
//     a multi-page TIFF is an image. Subfolders `train/` and `test/` are the
//     splits when both exist; otherwise a fraction of the files (valFraction) is the test split,
//     chosen by a hash of each file's path relative to the folder, so the split is the same
//     whatever the seed and wherever the folder is copied. Class subfolders give labels in
//     torchvision's ImageFolder convention (classes sorted by name, 0, 1, ...); images with no
//     class folder get label 0: no labels are needed to train. The images may differ in size
//     (Dataset.shapes); a model that needs one size asks Dataset.requireOneSize.
// A single .npy file is split the same way, by a hash of each image's index.
//
// Channels: `channels: nil` keeps what the data has. For a folder that is 3 when any image of
// the folder (of either split, so that both splits agree) is colour by its header (an RGB or
// palette PNG, a JPEG that is not gray, a TIFF page whose photometric interpretation is not
// gray), else 1; for a .npy file its shape ([N, H, W, 3] is RGB); IDX files are gray. Asking
// for 1 turns colour into its luma, asking for 3 repeats a gray plane (ImageFiles.swift).
// 16-bit images are reduced to 8 bits, with a note (a warning line for the caller to print).
//
// Loading a folder takes two passes. First every rank reads every file's header (`plan`): the
// images, their sizes and the bytes the dataset will hold (of the first `limit` images), which
// are checked against the memory available before anything is decoded. An array file (IDX,
// .npy) is planned from its header, after its declared size is checked against the file's.
// Then each rank decodes its evenShare of the files, its threads taking one file at a time,
// into the places the plan gives each image; the ranks agree on failure (the first failing
// file's message, on every rank), then each rank's block is broadcast from it, so every rank
// holds the same bytes whatever the number of ranks and threads (FolderDecoding.swift).

import Foundation
import Synchronization

/// What loading one split will hold, known from the files' headers before anything is decoded.
public struct DataPlan: Sendable {
    /// The folder or file the images come from (named in errors).
    public let source: String
    /// The files to decode, in order (one for IDX and .npy).
    public let files: [String]
    /// Images of the split.
    public let images: Int
    /// Channels of the dataset (1 or 3).
    public let channels: Int
    /// Bytes of the dataset's pixels: the sum over images of channels * height * width.
    public let bytes: Int
    /// Every image's size and offset in the dataset's pixels.
    public let shapes: [ImageShape]
    public let labels: [UInt8]
    /// Every image's name (folders only).
    public let names: [String]?
    /// Warnings about what will be loaded, one line each (see Dataset.load's `notes`).
    public let notes: [String]

    enum Kind: Sendable {
        case idx
        case npy(keep: [Bool]?)      // a single file split by hash: the images kept
        // per file its first image, and at the end the last file's end: more than `images` when
        // a limit falls inside a multi-page file, whose later pages are then not kept
        case folder(firstImage: [Int])
    }
    let kind: Kind
}

extension Dataset {
    /// The images at `path` for `split` (see the header for what `path` may be and `channels`
    /// means). Every rank of `communicator` reads the headers, decodes its share of the files with
    /// `threads` threads and receives the others' shares: all end with the same dataset.
    /// `limit` keeps the first `limit` images of the split only; it is applied to the plan, before
    /// the memory check and the decoding, so a folder too large for memory loads with a `limit`
    /// that fits (an array file, IDX or .npy, is read whole: its whole size is what is checked).
    /// `progress(decoded, total)` reports this rank's images from one thread, about every 1%.
    /// `memoryAvailable` replaces the memory the system reports (bytes) for the check that the
    /// dataset fits, made before decoding. `notes` receives warnings (one line each) about what
    /// was loaded: run directories skipped, 16-bit images reduced to 8 bits.
    public static func load(path: String, valFraction: Double = 0.05, split: Split, channels: Int? = nil, limit: Int? = nil,
                            communicator: Communicator = SingleProcess(), threads: Int = 1,
                            memoryAvailable: Int? = nil, notes: ((String) -> Void)? = nil,
                            progress: (@Sendable (Int, Int) -> Void)? = nil) throws(DAEError) -> Dataset {
        let memory = MemoryCheck(copies: max(1, communicator.localSize), available: memoryAvailable ?? availableMemory())
        let plan = try Dataset.plan(path: path, split: split, valFraction: valFraction, channels: channels, limit: limit, memory: memory)
        for line in plan.notes { notes?(line) }
        var data: Dataset
        switch plan.kind {
        case .idx:
            data = try load(directory: path, split: split).converted(to: plan.channels)
        case .npy(let keep):
            let images = try NPY.read(path: plan.files[0])
            data = Dataset(count: images.count, channels: images.channels, height: images.height, width: images.width,
                           pixels: images.pixels, labels: [UInt8](repeating: 0, count: images.count), source: plan.files[0])
            if let keep { data = data.selecting(keep) }
            data = data.converted(to: plan.channels)
        case .folder(let firstImage):
            return try decodeFolder(plan, firstImage: firstImage, communicator: communicator, threads: threads, progress: progress)
        }
        return limit.map { data.prefix($0) } ?? data
    }

    /// What `load` with the same arguments would hold, from the files' headers only: the files,
    /// the images, their sizes, channels and bytes. Sizes beyond `PNG.maxPixels` are refused here.
    public static func plan(path: String, split: Split, valFraction: Double = 0.05, channels: Int? = nil,
                            limit: Int? = nil) throws(DAEError) -> DataPlan {
        try plan(path: path, split: split, valFraction: valFraction, channels: channels, limit: limit, memory: nil)
    }

    /// The memory check `load` makes (see checkMemory): ranks of this node holding a copy each,
    /// and the memory available (nil: unknown, no check).
    struct MemoryCheck {
        let copies: Int
        let available: Int?
    }

    /// `plan`, with the memory check made as soon as the bytes are known: for an array file
    /// before anything is sized by its image count (per-image shapes, labels).
    static func plan(path: String, split: Split, valFraction: Double, channels: Int?, limit: Int?,
                     memory: MemoryCheck?) throws(DAEError) -> DataPlan {
        if let channels, channels != 1 && channels != 3 {
            throw DAEError.badFlag("--channels", "\(channels) channels; images have 1 (gray) or 3 (RGB)")
        }
        if let limit, limit < 1 { throw DAEError.badFlag("--limit", "must be at least 1, got \(limit)") }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            let link = unreadableReason(path)
            let why = link.contains("symbolic link") ? link : "no such file or folder"
            throw DAEError.data(path: path, problem: "\(why); pass --data with a folder of images (PNG, JPEG, TIFF), a .npy file, or a folder in MNIST's IDX layout")
        }
        if !isFolder.boolValue {
            guard path.lowercased().hasSuffix(".npy") else {
                throw DAEError.data(path: path, problem: "is a file but not a .npy array; pass --data with a folder of images, a .npy file, or a folder in MNIST's IDX layout")
            }
            let shape = try NPY.readShape(path: path)
            try memory.map { m throws(DAEError) in
                try checkMemory(source: path, split: split, images: nil, bytes: shape.count * shape.channels * shape.height * shape.width, memory: m)
            }
            let keep = (0..<shape.count).map { heldOut(key: "\($0)", fraction: valFraction) == (split == .test) }
            let kept = keep.filter { $0 }.count
            guard kept > 0 else {
                let advice = split == .train ? "held out all \(shape.count) images; use a smaller --val-fraction"
                                             : "held out none of the \(shape.count) images; use a larger --val-fraction or more images"
                throw DAEError.data(path: path, problem: "the \(split.rawValue) split is empty: --val-fraction \(valFraction) \(advice)")
            }
            return arrayPlan(path, count: kept, channels: channels ?? shape.channels, height: shape.height, width: shape.width, limit: limit, kind: .npy(keep: keep))
        }
        let has = { (name: String) in FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(name)) }
        if has("train-images-idx3-ubyte.gz") || has("train-images-idx3-ubyte") || has("t10k-images-idx3-ubyte.gz") {
            let file = try locate(path, "\(split.filePrefix)-images-idx3-ubyte")
            let dims = try IDX.declaredDims(path: file, expectedMagic: IDX.imagesMagic)
            guard dims.count == 3 else {
                throw DAEError.data(path: file, problem: "expected 3 dimensions (count, rows, cols), found \(dims.count)")
            }
            try memory.map { m throws(DAEError) in
                try checkMemory(source: file, split: split, images: nil, bytes: dims[0] * (channels ?? 1) * dims[1] * dims[2], memory: m)
            }
            return arrayPlan(file, count: dims[0], channels: channels ?? 1, height: dims[1], width: dims[2], limit: limit, kind: .idx)
        }
        if has("train.npy") {
            let file = (path as NSString).appendingPathComponent(split == .train ? "train.npy" : "test.npy")
            let shape = try NPY.readShape(path: file)
            try memory.map { m throws(DAEError) in
                try checkMemory(source: file, split: split, images: nil, bytes: shape.count * (channels ?? shape.channels) * shape.height * shape.width, memory: m)
            }
            return arrayPlan(file, count: shape.count, channels: channels ?? shape.channels, height: shape.height, width: shape.width, limit: limit, kind: .npy(keep: nil))
        }
        let plan = try folderPlan(path, split: split, valFraction: valFraction, channels: channels, limit: limit)
        try memory.map { m throws(DAEError) in try checkMemory(source: plan.source, split: split, images: plan.shapes, bytes: plan.bytes, memory: m) }
        return plan
    }

    /// The plan of an array file (IDX, .npy): `count` images of one size, the first `limit` kept.
    /// Called after the file's size has been checked against its header (IDX.declaredDims,
    /// NPY.readShape) and the memory check, so `count` is one the file really holds.
    static func arrayPlan(_ file: String, count: Int, channels: Int, height: Int, width: Int, limit: Int?, kind: DataPlan.Kind) -> DataPlan {
        let size = channels * height * width, kept = min(count, limit ?? count)
        return DataPlan(source: file, files: [file], images: kept, channels: channels, bytes: kept * size,
                        shapes: (0..<kept).map { ImageShape(height: height, width: width, offset: $0 * size) },
                        labels: [UInt8](repeating: 0, count: kept), names: nil, notes: [], kind: kind)
    }

    /// Whether the item named `key` (a relative path, an index) falls in the held-out fraction:
    /// FNV-1a 64 of its UTF-8 bytes, as a number in [0, 1).
    static func heldOut(key: String, fraction: Double) -> Bool {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return Double(hash >> 11) / Double(1 << 53) < fraction
    }

    /// A folder of images: its split's files, their images' headers, labels from class folders;
    /// with `limit`, the files that hold the split's first `limit` images.
    static func folderPlan(_ root: String, split: Split, valFraction: Double, channels: Int?, limit: Int?) throws(DAEError) -> DataPlan {
        let trainRoot = (root as NSString).appendingPathComponent("train"), testRoot = (root as NSString).appendingPathComponent("test")
        var isFolder: ObjCBool = false
        let splitFolders = FileManager.default.fileExists(atPath: trainRoot, isDirectory: &isFolder) && isFolder.boolValue
            && FileManager.default.fileExists(atPath: testRoot, isDirectory: &isFolder) && isFolder.boolValue
        // (folder the relative paths start from, relative path) of every image of both splits
        var all: [(base: String, relative: String, test: Bool)] = []
        var notes: [String] = []
        if splitFolders {
            let train = try listImages(under: trainRoot), test = try listImages(under: testRoot)
            all = train.images.map { (trainRoot, $0, false) } + test.images.map { (testRoot, $0, true) }
            notes = train.notes + test.notes
        } else {
            let listing = try listImages(under: root)
            all = listing.images.map { (root, $0, heldOut(key: $0, fraction: valFraction)) }
            notes = listing.notes
        }
        guard !all.isEmpty else {
            throw DAEError.data(path: root, problem: "no images (.png, .jpg, .jpeg, .tif, .tiff) found in this folder or below it; pass --data with a folder of images, a .npy file, or a folder in MNIST's IDX layout")
        }
        // classes: the first folder of each relative path, when every image sits in one
        let classed = all.allSatisfy { $0.relative.contains("/") }
        let classes = classed ? Array(Set(all.map { String($0.relative.prefix { $0 != "/" }) })).sorted() : []
        guard classes.count <= 256 else {
            throw DAEError.data(path: root, problem: "\(classes.count) class folders; labels are bytes, so at most 256 classes")
        }
        let file = { (item: (base: String, relative: String, test: Bool)) in (item.base as NSString).appendingPathComponent(item.relative) }
        let chosen = all.filter { $0.test == (split == .test) }
        guard !chosen.isEmpty else {
            if splitFolders { throw DAEError.data(path: root, problem: "the \(split.rawValue) split is empty: add images to \(split == .test ? testRoot : trainRoot)") }
            // every file went to the other split: count its images (a TIFF's pages stay together)
            var images = 0
            for item in all { images += try ImageFile.headers(path: file(item)).count }
            let files = "\(all.count) file\(all.count == 1 ? "" : "s") (\(images) image\(images == 1 ? "" : "s"))"
            let advice = split == .train ? "held out all \(files); use a smaller --val-fraction or more files"
                                         : "held out none of the \(files); use a larger --val-fraction or more files"
            throw DAEError.data(path: root, problem: "the \(split.rawValue) split is empty: --val-fraction \(valFraction) \(advice)")
        }
        // headers of the chosen files, up to the one holding image `limit`
        var headers: [[ImageHeader]] = [], images = 0
        for item in chosen where images < (limit ?? Int.max) {
            headers.append(try ImageFile.headers(path: file(item)))
            images += headers.last!.count
        }
        let files = Array(chosen.prefix(headers.count))
        // nil channels: the other files' headers count too, so that both splits (and any limit) agree
        var colour = headers.contains { $0.contains(where: \.colour) }
        if channels == nil && !colour {
            for item in chosen.dropFirst(headers.count) + all.filter({ $0.test != (split == .test) }) {
                if try ImageFile.headers(path: file(item)).contains(where: \.colour) { colour = true; break }
            }
        }
        let deep = zip(files, headers).filter { $0.1.contains { $0.bitDepth > 8 } }.map { file($0.0) }
        if let note = ImageFile.sixteenBitNote(deep, of: files.count, what: "the \(split.rawValue) split") { notes.append(note) }
        let planes = channels ?? (colour ? 3 : 1)
        var shapes: [ImageShape] = [], labels: [UInt8] = [], names: [String] = [], firstImage: [Int] = []
        var offset = 0
        let prefix = splitFolders ? (split == .test ? "test/" : "train/") : ""
        let kept = min(images, limit ?? images)
        for (item, pages) in zip(files, headers) {
            firstImage.append(shapes.count)
            let label = classed ? UInt8(classes.firstIndex(of: String(item.relative.prefix { $0 != "/" }))!) : 0
            for (page, header) in pages.enumerated() where shapes.count < kept {
                shapes.append(ImageShape(height: header.height, width: header.width, offset: offset))
                offset += planes * header.height * header.width
                labels.append(label)
                names.append(prefix + item.relative + (pages.count > 1 ? "#page \(page + 1)" : ""))
            }
        }
        // the end of the last file: beyond `kept` when the limit falls inside a multi-page file
        firstImage.append(images)
        return DataPlan(source: root, files: files.map(file), images: shapes.count, channels: planes, bytes: offset,
                        shapes: shapes, labels: labels, names: names, notes: notes, kind: .folder(firstImage: firstImage))
    }

    /// A data folder's image files and what was left out, from `listImages`.
    struct FolderListing {
        /// Relative paths of the image files, sorted by their UTF-8 bytes.
        var images: [String] = []
        /// One line per folder skipped (a run directory, a link back to a folder above it).
        var notes: [String] = []
    }

    /// The image files below `folder` (by name: ImageFile.extensions), searched recursively,
    /// following symbolic links to folders and files; hidden files and folders are skipped.
    /// Also skipped, each with a note: a sub-folder that is a dae-dist run directory (see
    /// isRunDirectory), whose sample grids would otherwise be read as data, and a link to a folder
    /// that is already being searched above it (a loop). A folder that cannot be listed is an
    /// error naming it; a link that leads nowhere, named as an image, is listed and then named by
    /// the reader that fails on it.
    static func listImages(under folder: String) throws(DAEError) -> FolderListing {
        struct FolderID: Hashable { let device: UInt64; let inode: UInt64 }
        func id(_ path: String) -> FolderID? {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            return FolderID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        }
        var listing = FolderListing()
        guard let rootID = id(folder) else { throw DAEError.data(path: folder, problem: unreadableReason(folder)) }
        // folders to search: their path relative to `folder` and the real folders above them
        var pending: [(relative: String, above: Set<FolderID>)] = [("", [rootID])]
        while let (relative, above) = pending.popLast() {
            let path = relative.isEmpty ? folder : (folder as NSString).appendingPathComponent(relative)
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: path) } catch {
                throw DAEError.data(path: path, problem: "a folder of the data that cannot be listed: \(unreadableReason(path)); fix it, or move it out of the data folder")
            }
            for name in names where !name.hasPrefix(".") {
                let child = relative.isEmpty ? name : relative + "/" + name
                let childPath = (path as NSString).appendingPathComponent(name)
                var info = stat()
                if stat(childPath, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR {
                    let childID = FolderID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
                    if above.contains(childID) {
                        listing.notes.append("warning: skipped \(childPath): a link to a folder above it (a loop)")
                    } else if isRunDirectory(childPath) {
                        listing.notes.append("warning: skipped \(childPath): a dae-dist run directory, not data (its sample grids would be read as images)")
                    } else {
                        pending.append((child, above.union([childID])))
                    }
                } else if ImageFile.extensions.contains((name as NSString).pathExtension.lowercased()) {
                    listing.images.append(child)
                }
            }
        }
        listing.images.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        listing.notes.sort()
        return listing
    }

    /// Whether `folder` is a dae-dist run directory: it holds the `.lock` file every training run
    /// creates in its run directory (RunDirectory.swift), or a `config.json` with `checkpoints/`,
    /// `samples/` or `model.safetensors` beside it (a run directory copied without its lock).
    static func isRunDirectory(_ folder: String) -> Bool {
        let has = { (name: String) in FileManager.default.fileExists(atPath: (folder as NSString).appendingPathComponent(name)) }
        return has(".lock") || (has("config.json") && (has("checkpoints") || has("samples") || has("model.safetensors")))
    }

    /// The system's available memory in bytes (MemAvailable of /proc/meminfo), or nil where
    /// there is no such file: then the check is skipped.
    public static func availableMemory() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }) else { return nil }
        let fields = line.split(separator: " ")
        guard fields.count >= 2, let kilobytes = Int(fields[1]) else { return nil }
        return kilobytes * 1024
    }

    /// Refuses a dataset that would not fit: `copies` ranks of this node each hold all of it,
    /// and an eighth of the available memory is kept for the model, the decoding and the rest.
    /// `images` are a folder's images (after any limit): the advice then names the --limit that
    /// fits. An array file (nil) is read whole, so only a smaller file helps.
    static func checkMemory(source: String, split: Split, images: [ImageShape]?, bytes: Int, memory: MemoryCheck) throws(DAEError) {
        guard let available = memory.available else { return }
        let (needed, overflow) = bytes.multipliedReportingOverflow(by: memory.copies)
        let usable = available - available / 8
        guard overflow || needed > usable else { return }
        let gb = { (bytes: Int) in
            bytes < 1_000_000 ? "\(bytes) bytes" : bytes < 1_000_000_000 ? String(format: "%.1f MB", Double(bytes) / 1e6)
                : String(format: "%.2f GB", Double(bytes) / 1e9)
        }
        let ranks = memory.copies > 1 ? " (\(memory.copies) ranks on this node, each holding a copy)" : ""
        let what: String, advice: String
        if let images {
            // the most images, from the first, whose bytes fit on every rank of this node
            let planes = images.isEmpty ? 0 : bytes / images.reduce(0) { $0 + $1.height * $1.width }
            let fit = images.firstIndex { ($0.offset + planes * $0.height * $0.width) * memory.copies > usable } ?? images.count
            what = "\(images.count) images"
            advice = fit > 0 ? "use fewer images or --limit \(fit)" : "not even one image fits; use smaller images or a machine with more memory"
        } else {
            what = "images"
            advice = "it is read whole, so --limit does not help; use a smaller file (a slice of the array) or a machine with more memory"
        }
        throw DAEError.data(path: source, problem: "the \(split.rawValue) split's \(what) need \(overflow ? "more than \(gb(Int.max))" : gb(needed))\(ranks) but \(gb(available)) of memory are available (\(gb(usable)) usable); \(advice)")
    }
    /// The images for which `keep` is true.
    func selecting(_ keep: [Bool]) -> Dataset {
        var chosen: [UInt8] = [], sizes: [(height: Int, width: Int)] = [], labels: [UInt8] = []
        for i in 0..<count where keep[i] {
            let s = shape(i)
            chosen += pixels[s.offset ..< s.offset + channels * s.height * s.width]
            sizes.append((s.height, s.width)); labels.append(self.labels[i])
        }
        return Dataset(channels: channels, sizes: sizes, pixels: chosen, labels: labels, source: source)
    }

    /// The same images with `channels` planes (see PlanarImage.converted).
    func converted(to channels: Int) -> Dataset {
        if channels == self.channels { return self }
        var out: [UInt8] = [], sizes: [(height: Int, width: Int)] = []
        out.reserveCapacity(pixels.count / self.channels * channels)
        for i in 0..<count {
            let s = shape(i), size = self.channels * s.height * s.width
            out += PlanarImage(channels: self.channels, width: s.width, height: s.height,
                               pixels: Array(pixels[s.offset ..< s.offset + size])).converted(to: channels).pixels
            sizes.append((s.height, s.width))
        }
        return Dataset(channels: channels, sizes: sizes, pixels: out, labels: labels, source: source, names: names)
    }
}
