// What --data may name, and how each becomes a Dataset of 8-bit gray images:
//   - a folder in MNIST's IDX layout (Dataset.load(directory:split:), MNIST.swift);
//   - a folder with train.npy and test.npy, or one .npy file (NPY.swift);
//   - a folder of images (PNG, JPEG, TIFF: ImageFiles.swift), searched recursively; every page of
//     a multi-page TIFF is an image. Subfolders `train/` and `test/` are the
//     splits when both exist; otherwise a fraction of the files (valFraction) is the test split,
//     chosen by a hash of each file's path relative to the folder, so the split is the same
//     whatever the seed and wherever the folder is copied. Class subfolders give labels in
//     torchvision's ImageFolder convention (classes sorted by name, 0, 1, ...); images with no
//     class folder get label 0: no labels are needed to train.
// A single .npy file is split the same way, by a hash of each image's index.

import Foundation

extension Dataset {
    /// The images at `path` for `split` (see the header for what `path` may be).
    public static func load(path: String, valFraction: Double = 0.05, split: Split) throws(DAEError) -> Dataset {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw DAEError.data(path: path, problem: "no such file or folder; pass --data with a folder of images (PNG, JPEG, TIFF), a .npy file, or a folder in MNIST's IDX layout")
        }
        if !isFolder.boolValue {
            guard path.lowercased().hasSuffix(".npy") else {
                throw DAEError.data(path: path, problem: "is a file but not a .npy array; pass --data with a folder of images, a .npy file, or a folder in MNIST's IDX layout")
            }
            let (dims, pixels) = try NPY.readImages(path: path)
            let held = (0..<dims[0]).map { heldOut(key: "\($0)", fraction: valFraction) }
            return try select(dims: dims, pixels: pixels, labels: nil, keep: held.map { $0 == (split == .test) },
                              source: path, split: split, valFraction: valFraction)
        }
        let has = { (name: String) in FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(name)) }
        if has("train-images-idx3-ubyte.gz") || has("train-images-idx3-ubyte") || has("t10k-images-idx3-ubyte.gz") {
            return try load(directory: path, split: split)
        }
        if has("train.npy") {
            let file = (path as NSString).appendingPathComponent(split == .train ? "train.npy" : "test.npy")
            let (dims, pixels) = try NPY.readImages(path: file)
            return try make(dims: dims, pixels: pixels, labels: [UInt8](repeating: 0, count: dims[0]), source: file)
        }
        return try loadImageFolder(path, split: split, valFraction: valFraction)
    }

    /// Whether the item named `key` (a relative path, an index) falls in the held-out fraction:
    /// FNV-1a 64 of its UTF-8 bytes, as a number in [0, 1).
    static func heldOut(key: String, fraction: Double) -> Bool {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return Double(hash >> 11) / Double(1 << 53) < fraction
    }

    /// A folder of images: its split, decoded to 8-bit gray, labels from class folders.
    static func loadImageFolder(_ root: String, split: Split, valFraction: Double) throws(DAEError) -> Dataset {
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
        var pixels: [UInt8] = [], labels: [UInt8] = []
        var first: (path: String, height: Int, width: Int)? = nil
        for image in chosen {
            let file = (image.base as NSString).appendingPathComponent(image.relative)
            let label = classed ? UInt8(classes.firstIndex(of: String(image.relative.prefix { $0 != "/" }))!) : 0
            for gray in try ImageFile.decodeGray(path: file) {
                if let first, gray.height != first.height || gray.width != first.width {
                    throw DAEError.data(path: file, problem: "is \(gray.height)x\(gray.width) but \(first.path) is \(first.height)x\(first.width); the images of a folder must share one size")
                }
                if first == nil { first = (file, gray.height, gray.width) }
                pixels += gray.pixels
                labels.append(label)
            }
        }
        return try make(dims: [labels.count, first!.height, first!.width], pixels: pixels, labels: labels, source: root)
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

    /// The images of one split of a single array, chosen by `keep`.
    static func select(dims: [Int], pixels: [UInt8], labels: [UInt8]?, keep: [Bool], source: String,
                       split: Split, valFraction: Double) throws(DAEError) -> Dataset {
        let size = dims[1] * dims[2]
        var chosen: [UInt8] = [], count = 0
        for i in 0..<dims[0] where keep[i] {
            chosen += pixels[(i * size)..<((i + 1) * size)]
            count += 1
        }
        guard count > 0 else {
            throw DAEError.data(path: source, problem: "the \(split.rawValue) split is empty: --val-fraction \(valFraction) of \(dims[0]) images; use more images or another --val-fraction")
        }
        return try make(dims: [count, dims[1], dims[2]], pixels: chosen, labels: [UInt8](repeating: 0, count: count), source: source)
    }

    /// A dataset, with the model's requirement on its sides checked.
    static func make(dims: [Int], pixels: [UInt8], labels: [UInt8], source: String) throws(DAEError) -> Dataset {
        let (n, h, w) = (dims[0], dims[1], dims[2])
        guard h % 4 == 0, w % 4 == 0 else {
            throw DAEError.data(path: source, problem: "images are \(h)x\(w); the convolutional model needs sides that are multiples of 4")
        }
        return Dataset(count: n, height: h, width: w, pixels: pixels, labels: labels, source: source)
    }
}
