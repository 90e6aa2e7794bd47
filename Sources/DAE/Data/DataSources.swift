// What --data may name, and how each becomes a Dataset of 8-bit images with 1 or 3 channels:
//   - a folder in MNIST's IDX layout (Dataset.load(directory:split:), MNIST.swift): gray;
//   - a folder with train.npy and test.npy, or one .npy file (NPY.swift): gray or RGB;
//   - a folder of images (PNG, JPEG, TIFF: ImageFiles.swift), searched recursively; every page of
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
// 16-bit images are reduced to 8 bits.
//
// Loading a folder takes two passes. First every rank reads every file's header (`plan`): the
// images, their sizes and the bytes the dataset will hold, which are checked against the memory
// available before anything is decoded. Then each rank decodes its evenShare of the files, its
// threads taking one file at a time, into the places the plan gives each image; the ranks agree
// on failure (the first failing file's message, on every rank), then each rank's block is
// broadcast from it, so every rank holds the same bytes whatever the number of ranks and threads.

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

    enum Kind: Sendable {
        case idx
        case npy(keep: [Bool]?)      // a single file split by hash: the images kept
        case folder(firstImage: [Int])   // per file its first image, and images at the end
    }
    let kind: Kind
}

extension Dataset {
    /// The images at `path` for `split` (see the header for what `path` may be and `channels`
    /// means). Every rank of `communicator` reads the headers, decodes its share of the files with
    /// `threads` threads and receives the others' shares: all end with the same dataset.
    /// `progress(decoded, total)` reports this rank's images from one thread, about every 1%.
    /// `memoryAvailable` replaces the memory the system reports (bytes) for the check that the
    /// dataset fits, made before decoding.
    public static func load(path: String, valFraction: Double = 0.05, split: Split, channels: Int? = nil,
                            communicator: Communicator = SingleProcess(), threads: Int = 1,
                            memoryAvailable: Int? = nil,
                            progress: (@Sendable (Int, Int) -> Void)? = nil) throws(DAEError) -> Dataset {
        let plan = try Dataset.plan(path: path, split: split, valFraction: valFraction, channels: channels)
        try checkMemory(plan, split: split, copies: max(1, communicator.localSize), available: memoryAvailable ?? availableMemory())
        switch plan.kind {
        case .idx:
            return try load(directory: path, split: split).converted(to: plan.channels)
        case .npy(let keep):
            let images = try NPY.read(path: plan.files[0])
            var data = Dataset(count: images.count, channels: images.channels, height: images.height, width: images.width,
                               pixels: images.pixels, labels: [UInt8](repeating: 0, count: images.count), source: plan.files[0])
            if let keep { data = data.selecting(keep) }
            return data.converted(to: plan.channels)
        case .folder(let firstImage):
            return try decodeFolder(plan, firstImage: firstImage, communicator: communicator, threads: threads, progress: progress)
        }
    }

    /// What `load` with the same arguments would hold, from the files' headers only: the files,
    /// the images, their sizes, channels and bytes. Sizes beyond `PNG.maxPixels` are refused here.
    public static func plan(path: String, split: Split, valFraction: Double = 0.05, channels: Int? = nil) throws(DAEError) -> DataPlan {
        if let channels, channels != 1 && channels != 3 {
            throw DAEError.badFlag("--channels", "\(channels) channels; images have 1 (gray) or 3 (RGB)")
        }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw DAEError.data(path: path, problem: "no such file or folder; pass --data with a folder of images (PNG, JPEG, TIFF), a .npy file, or a folder in MNIST's IDX layout")
        }
        if !isFolder.boolValue {
            guard path.lowercased().hasSuffix(".npy") else {
                throw DAEError.data(path: path, problem: "is a file but not a .npy array; pass --data with a folder of images, a .npy file, or a folder in MNIST's IDX layout")
            }
            let shape = try NPY.readShape(path: path)
            let keep = (0..<shape.count).map { heldOut(key: "\($0)", fraction: valFraction) == (split == .test) }
            let kept = keep.filter { $0 }.count
            guard kept > 0 else {
                throw DAEError.data(path: path, problem: "the \(split.rawValue) split is empty: --val-fraction \(valFraction) of \(shape.count) images; use more images or another --val-fraction")
            }
            return arrayPlan(path, count: kept, channels: channels ?? shape.channels, height: shape.height, width: shape.width, kind: .npy(keep: keep))
        }
        let has = { (name: String) in FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(name)) }
        if has("train-images-idx3-ubyte.gz") || has("train-images-idx3-ubyte") || has("t10k-images-idx3-ubyte.gz") {
            let file = try locate(path, "\(split.filePrefix)-images-idx3-ubyte")
            let dims = try IDX.declaredDims(path: file, expectedMagic: IDX.imagesMagic)
            guard dims.count == 3 else {
                throw DAEError.data(path: file, problem: "expected 3 dimensions (count, rows, cols), found \(dims.count)")
            }
            return arrayPlan(file, count: dims[0], channels: channels ?? 1, height: dims[1], width: dims[2], kind: .idx)
        }
        if has("train.npy") {
            let file = (path as NSString).appendingPathComponent(split == .train ? "train.npy" : "test.npy")
            let shape = try NPY.readShape(path: file)
            return arrayPlan(file, count: shape.count, channels: channels ?? shape.channels, height: shape.height, width: shape.width, kind: .npy(keep: nil))
        }
        return try folderPlan(path, split: split, valFraction: valFraction, channels: channels)
    }

    static func arrayPlan(_ file: String, count: Int, channels: Int, height: Int, width: Int, kind: DataPlan.Kind) -> DataPlan {
        let size = channels * height * width
        return DataPlan(source: file, files: [file], images: count, channels: channels, bytes: count * size,
                        shapes: (0..<count).map { ImageShape(height: height, width: width, offset: $0 * size) },
                        labels: [UInt8](repeating: 0, count: count), names: nil, kind: kind)
    }

    /// Whether the item named `key` (a relative path, an index) falls in the held-out fraction:
    /// FNV-1a 64 of its UTF-8 bytes, as a number in [0, 1).
    static func heldOut(key: String, fraction: Double) -> Bool {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return Double(hash >> 11) / Double(1 << 53) < fraction
    }

    /// A folder of images: its split's files, their images' headers, labels from class folders.
    static func folderPlan(_ root: String, split: Split, valFraction: Double, channels: Int?) throws(DAEError) -> DataPlan {
        let trainRoot = (root as NSString).appendingPathComponent("train"), testRoot = (root as NSString).appendingPathComponent("test")
        var isFolder: ObjCBool = false
        let splitFolders = FileManager.default.fileExists(atPath: trainRoot, isDirectory: &isFolder) && isFolder.boolValue
            && FileManager.default.fileExists(atPath: testRoot, isDirectory: &isFolder) && isFolder.boolValue
        // (folder the relative paths start from, relative path) of every image of both splits
        var all: [(base: String, relative: String, test: Bool)] = []
        if splitFolders {
            all = images(under: trainRoot).map { (trainRoot, $0, false) } + images(under: testRoot).map { (testRoot, $0, true) }
        } else {
            all = images(under: root).map { (root, $0, heldOut(key: $0, fraction: valFraction)) }
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
        let chosen = all.filter { $0.test == (split == .test) }
        guard !chosen.isEmpty else {
            let hint = splitFolders ? "add images to \(split == .test ? testRoot : trainRoot)"
                : "--val-fraction \(valFraction) held out \(all.filter(\.test).count) of \(all.count) images; use more images or a larger --val-fraction"
            throw DAEError.data(path: root, problem: "the \(split.rawValue) split is empty: \(hint)")
        }
        let file = { (item: (base: String, relative: String, test: Bool)) in (item.base as NSString).appendingPathComponent(item.relative) }
        var headers: [[ImageHeader]] = []
        for item in chosen { headers.append(try ImageFile.headers(path: file(item))) }
        // nil channels: the other split's headers count too, so that both splits agree
        var colour = headers.contains { $0.contains(where: \.colour) }
        if channels == nil && !colour {
            for item in all where item.test != (split == .test) {
                if try ImageFile.headers(path: file(item)).contains(where: \.colour) { colour = true; break }
            }
        }
        let planes = channels ?? (colour ? 3 : 1)
        var shapes: [ImageShape] = [], labels: [UInt8] = [], names: [String] = [], firstImage: [Int] = []
        var offset = 0
        let prefix = splitFolders ? (split == .test ? "test/" : "train/") : ""
        for (item, pages) in zip(chosen, headers) {
            firstImage.append(shapes.count)
            let label = classed ? UInt8(classes.firstIndex(of: String(item.relative.prefix { $0 != "/" }))!) : 0
            for (page, header) in pages.enumerated() {
                shapes.append(ImageShape(height: header.height, width: header.width, offset: offset))
                offset += planes * header.height * header.width
                labels.append(label)
                names.append(prefix + item.relative + (pages.count > 1 ? "#page \(page + 1)" : ""))
            }
        }
        firstImage.append(shapes.count)
        return DataPlan(source: root, files: chosen.map(file), images: shapes.count, channels: planes, bytes: offset,
                        shapes: shapes, labels: labels, names: names, kind: .folder(firstImage: firstImage))
    }

    /// The relative paths of the image files below `folder` (by name: ImageFile.extensions),
    /// sorted (hidden files and folders skipped).
    static func images(under folder: String) -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return [] }
        var found: [String] = []
        while let relative = walker.nextObject() as? String {
            if relative.split(separator: "/").contains(where: { $0.hasPrefix(".") }) { continue }
            let ending = (relative as NSString).pathExtension.lowercased()
            if ImageFile.extensions.contains(ending) { found.append(relative) }
        }
        return found.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
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
    static func checkMemory(_ plan: DataPlan, split: Split, copies: Int, available: Int?) throws(DAEError) {
        guard let available else { return }
        let needed = plan.bytes * copies, usable = available - available / 8
        guard needed > usable else { return }
        let gb = { (bytes: Int) in
            bytes < 1_000_000 ? "\(bytes) bytes" : bytes < 1_000_000_000 ? String(format: "%.1f MB", Double(bytes) / 1e6)
                : String(format: "%.2f GB", Double(bytes) / 1e9)
        }
        let ranks = copies > 1 ? " (\(copies) ranks on this node, each holding a copy)" : ""
        throw DAEError.data(path: plan.source, problem: "the \(split.rawValue) split's \(plan.images) images need \(gb(needed))\(ranks) but \(gb(available)) of memory are available (\(gb(usable)) usable); use a smaller set of images or --limit")
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

    /// The folder's files decoded (this rank's share, by `threads` threads) and shared over the
    /// ranks (see the header).
    static func decodeFolder(_ plan: DataPlan, firstImage: [Int], communicator: Communicator, threads: Int,
                             progress: (@Sendable (Int, Int) -> Void)?) throws(DAEError) -> Dataset {
        let (rank, size) = (communicator.rank, communicator.size)
        let mine = evenShare(plan.files.count, part: rank, of: size)
        let total = firstImage[mine.upperBound] - firstImage[mine.lowerBound]
        var pixels = [UInt8](repeating: 0, count: plan.bytes)
        let state = DecodeState(next: mine.lowerBound)
        pixels.withUnsafeMutableBufferPointer { buffer in
            let out = SendablePointer(buffer.baseAddress!)
            let pool = WorkerPool(threads: max(1, min(threads, mine.count)))
            pool.run { worker in
                while !state.failed.load(ordering: .relaxed) {
                    let f = state.next.add(1, ordering: .relaxed).oldValue
                    if f >= mine.upperBound { break }
                    do throws(DAEError) {
                        try decodeFile(f, plan: plan, firstImage: firstImage, into: out.pointer)
                    } catch {
                        state.fail(file: f, error)
                    }
                    let done = state.decoded.add(firstImage[f + 1] - firstImage[f], ordering: .relaxed).newValue
                    // only the caller's thread reports, when a new percent is reached
                    if worker == 0, let progress, done * 100 / max(1, total) > state.reportedPercent {
                        state.reportedPercent = done * 100 / max(1, total)
                        progress(done, total)
                    }
                }
            }
        }
        if let progress, state.reportedPercent < 100, state.failure.withLock({ $0 == nil }) { progress(total, total) }
        // every rank learns whether any failed, then the first failing rank's message
        var flags = [Int64](repeating: 0, count: size)
        flags[rank] = state.failure.withLock { $0 == nil } ? 0 : 1
        communicator.allreduceSum(&flags, count: size)
        if let failing = flags.firstIndex(where: { $0 != 0 }) {
            // the message as "path\nproblem": the failing rank's, the others' of the same length
            var message: [UInt8] = []
            if failing == rank, let error = state.failure.withLock({ $0?.error }) {
                if case .data(let path, let problem) = error { message = Array((path + "\n" + problem).utf8) }
                else { message = Array((plan.source + "\n" + error.description).utf8) }
            }
            var length = Int64(message.count)
            communicator.broadcast(&length, count: 8, root: failing)
            if failing != rank { message = [UInt8](repeating: 0, count: Int(length)) }
            message.withUnsafeMutableBytes { communicator.broadcast($0.baseAddress!, count: $0.count, root: failing) }
            let text = String(decoding: message, as: UTF8.self)
            let parts = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
            throw DAEError.data(path: String(parts[0]), problem: parts.count > 1 ? String(parts[1]) : "")
        }
        // rank r's files are one contiguous block of bytes: broadcast from r, in pieces that fit
        // MPI's 32-bit counts
        for r in 0..<size where size > 1 {
            let files = evenShare(plan.files.count, part: r, of: size)
            let start = byteOffset(plan, image: firstImage[files.lowerBound])
            let end = byteOffset(plan, image: firstImage[files.upperBound])
            pixels.withUnsafeMutableBytes { bytes in
                var at = start
                while at < end {
                    let n = min(end - at, 1 << 30)
                    communicator.broadcast(bytes.baseAddress! + at, count: n, root: r)
                    at += n
                }
            }
        }
        return Dataset(channels: plan.channels, sizes: plan.shapes.map { ($0.height, $0.width) }, pixels: pixels,
                       labels: plan.labels, source: plan.source, names: plan.names)
    }

    static func byteOffset(_ plan: DataPlan, image: Int) -> Int { image < plan.images ? plan.shapes[image].offset : plan.bytes }

    /// Decodes file `f` of the plan into its images' places; a file that no longer matches its
    /// header (changed, or a header that lied) is an error.
    static func decodeFile(_ f: Int, plan: DataPlan, firstImage: [Int], into out: UnsafeMutablePointer<UInt8>) throws(DAEError) {
        let path = plan.files[f]
        let images = try ImageFile.decode(path: path, channels: plan.channels)
        let expected = firstImage[f + 1] - firstImage[f]
        guard images.count == expected else {
            throw DAEError.data(path: path, problem: "its headers show \(expected) images but \(images.count) were decoded; was the file changed during loading?")
        }
        for (k, image) in images.enumerated() {
            let s = plan.shapes[firstImage[f] + k]
            guard image.height == s.height, image.width == s.width else {
                throw DAEError.data(path: path, problem: "its header says \(s.height)x\(s.width) but the image decodes as \(image.height)x\(image.width); was the file changed during loading?")
            }
            image.pixels.withUnsafeBufferPointer { (out + s.offset).update(from: $0.baseAddress!, count: $0.count) }
        }
    }
}

/// A pointer the decoding threads write through, each to its own images' bytes.
struct SendablePointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<UInt8>
    init(_ pointer: UnsafeMutablePointer<UInt8>) { self.pointer = pointer }
}

/// The decoding threads' shared state: the next file, the images done, the first failure.
final class DecodeState: @unchecked Sendable {
    let next: Atomic<Int>
    let decoded = Atomic<Int>(0)
    let failed = Atomic<Bool>(false)
    /// The failure of the lowest file index: files are taken in order, so every file before it
    /// has been decoded too, and which error wins does not depend on the threads' timing.
    let failure = Mutex<(file: Int, error: DAEError)?>(nil)
    var reportedPercent = 0        // the caller's thread only
    init(next: Int) { self.next = Atomic(next) }

    func fail(file: Int, _ error: DAEError) {
        failure.withLock { current in
            if current == nil || file < current!.file { current = (file, error) }
        }
        failed.store(true, ordering: .relaxed)
    }
}
