// A dataset in MNIST's file layout: <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
// Works unchanged for Fashion-MNIST and KMNIST, which use the same names.

import Foundation

public enum Split: String, Sendable, CaseIterable {
    case train
    case test

    var filePrefix: String { self == .train ? "train" : "t10k" }
}

/// The size of one image of a dataset and where its bytes start in `Dataset.pixels`.
public struct ImageShape: Sendable, Equatable {
    public let height: Int
    public let width: Int
    /// Index in `pixels` of the image's first byte (its planes follow each other).
    public let offset: Int
    public init(height: Int, width: Int, offset: Int) {
        self.height = height; self.width = width; self.offset = offset
    }
}

/// Images kept as bytes (a quarter of the memory of floats); `image(_:into:)` scales to [0,1]
/// as x/255, exactly as torchvision's ToTensor. Each image is stored as `channels` planes of
/// height x width (torch's [C, H, W]), one image after the other. Images of different sizes
/// (a folder of photos) keep their own sizes in `shapes`; `height` and `width` are then the
/// smallest height and the smallest width, and a model reads them through `crop` (training on
/// patches) or after `requireOneSize` has confirmed there is one size.
public struct Dataset: Sendable {
    public let count: Int
    /// 1 (gray) or 3 (RGB).
    public let channels: Int
    public let height: Int
    public let width: Int
    public let pixels: [UInt8]     // [count, channels, height, width], or per `shapes`
    public let labels: [UInt8]     // [count]
    public let source: String
    /// Every image's size and offset when the sizes differ; nil when all are height x width.
    public let shapes: [ImageShape]?
    /// Every image's name for messages (a path relative to the folder, "#page N" for a TIFF's
    /// later pages); nil for arrays (IDX, .npy), whose images are named by index.
    public var names: [String]?

    /// Bytes (and floats) of one image of height x width.
    public var imageSize: Int { channels * height * width }

    /// Gray images of one size: [count, height, width].
    public init(count: Int, height: Int, width: Int, pixels: [UInt8], labels: [UInt8], source: String) {
        self.init(count: count, channels: 1, height: height, width: width, pixels: pixels, labels: labels, source: source)
    }

    /// Images of one size with `channels` planes each: [count, channels, height, width].
    public init(count: Int, channels: Int, height: Int, width: Int, pixels: [UInt8], labels: [UInt8], source: String) {
        precondition(channels == 1 || channels == 3, "Dataset: \(channels) channels (1 or 3 are possible)")
        precondition(pixels.count == count * channels * height * width && labels.count == count)
        self.count = count; self.channels = channels; self.height = height; self.width = width
        self.pixels = pixels; self.labels = labels; self.source = source
        self.shapes = nil; self.names = nil
    }

    /// Images of any sizes, one after the other, each [channels, sizes[i].height, sizes[i].width].
    /// When all sizes are equal the result is the same as the one-size initializer's.
    public init(channels: Int, sizes: [(height: Int, width: Int)], pixels: [UInt8], labels: [UInt8], source: String,
                names: [String]? = nil) {
        precondition(channels == 1 || channels == 3, "Dataset: \(channels) channels (1 or 3 are possible)")
        precondition(labels.count == sizes.count && (names == nil || names!.count == sizes.count))
        var shapes: [ImageShape] = [], offset = 0
        shapes.reserveCapacity(sizes.count)
        for size in sizes {
            precondition(size.height > 0 && size.width > 0)
            shapes.append(ImageShape(height: size.height, width: size.width, offset: offset))
            offset += channels * size.height * size.width
        }
        precondition(pixels.count == offset, "Dataset: \(pixels.count) bytes for images of \(offset)")
        let oneSize = sizes.allSatisfy { $0.height == sizes.first?.height && $0.width == sizes.first?.width }
        self.count = sizes.count; self.channels = channels
        self.height = sizes.map(\.height).min() ?? 0; self.width = sizes.map(\.width).min() ?? 0
        self.pixels = pixels; self.labels = labels; self.source = source
        self.shapes = oneSize ? nil : shapes
        self.names = names
    }

    /// Image `index`'s size and the offset of its first byte.
    public func shape(_ index: Int) -> ImageShape {
        precondition(UInt(bitPattern: index) < UInt(count), "Dataset.shape: sample \(index) is outside 0..<\(count) of \(source)")
        return shapes?[index] ?? ImageShape(height: height, width: width, offset: index * imageSize)
    }

    /// The name of image `index` in messages: its file, or its index in an array.
    func name(_ index: Int) -> String { names?[index] ?? "image \(index)" }

    /// Throws, naming two files of different sizes, unless every image has one size: what a
    /// model that takes whole images needs. `flagHint` is the option that trains on crops
    /// instead (e.g. "--patch N").
    public func requireOneSize(flagHint: String) throws(DAEError) {
        guard let shapes, let first = shapes.first,
              let other = shapes.firstIndex(where: { $0.height != first.height || $0.width != first.width }) else { return }
        let size = { (s: ImageShape) in "\(s.height)x\(s.width)" }
        throw DAEError.data(path: source, problem: "the images differ in size: \(name(0)) is \(size(first)) but \(name(other)) is \(size(shapes[other])); pass \(flagHint) to train on crops of that size, or resize the images to one size")
    }

    /// Loads one split from `directory`, preferring the .gz file when both exist.
    public static func load(directory: String, split: Split) throws(DAEError) -> Dataset {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DAEError.data(path: directory, problem: "data directory not found; pass --data with a folder holding MNIST's IDX files")
        }
        let imagesPath = try locate(directory, "\(split.filePrefix)-images-idx3-ubyte")
        let labelsPath = try locate(directory, "\(split.filePrefix)-labels-idx1-ubyte")
        let images = try IDX.read(path: imagesPath, expectedMagic: IDX.imagesMagic)
        let labels = try IDX.read(path: labelsPath, expectedMagic: IDX.labelsMagic)
        guard images.dims.count == 3 else {
            throw DAEError.data(path: imagesPath, problem: "expected 3 dimensions (count, rows, cols), found \(images.dims.count)")
        }
        guard labels.dims.count == 1 else {
            throw DAEError.data(path: labelsPath, problem: "expected 1 dimension (count), found \(labels.dims.count)")
        }
        let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2])
        guard labels.dims[0] == n else {
            throw DAEError.data(path: labelsPath, problem: "\(labels.dims[0]) labels but \(imagesPath) has \(n) images")
        }
        return Dataset(count: n, height: h, width: w, pixels: images.values, labels: labels.values, source: imagesPath)
    }

    static func locate(_ directory: String, _ name: String) throws(DAEError) -> String {
        let base = (directory as NSString).appendingPathComponent(name)
        for candidate in [base + ".gz", base] where FileManager.default.fileExists(atPath: candidate) {
            return candidate
        }
        throw DAEError.data(path: base + ".gz", problem: "no such file (nor \(name) uncompressed); pass --data with a folder in MNIST's file layout")
    }

    /// The first `n` samples (for --limit).
    public func prefix(_ n: Int) -> Dataset {
        let k = max(0, min(n, count))
        let end = k == count ? pixels.count : shape(k).offset
        let sizes = (0..<k).map { (height: shape($0).height, width: shape($0).width) }
        var result = Dataset(channels: channels, sizes: sizes, pixels: Array(pixels[0..<end]), labels: Array(labels[0..<k]),
                             source: source, names: names.map { Array($0[0..<k]) })
        if k == 0 { result = Dataset(count: 0, channels: channels, height: height, width: width, pixels: [], labels: [], source: source) }
        return result
    }

    /// Writes sample `index` (0 ..< count) as floats in [0,1] (x/255) into `out`: imageSize
    /// floats, [channels, height, width]. Only for images of one size (see requireOneSize).
    @inlinable public func image(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        // the pixel loop below reads through an unchecked pointer: one comparison per image (the
        // unsigned view also catches negative indices) instead of a bounds check per pixel
        precondition(UInt(bitPattern: index) < UInt(count), "Dataset.image: sample \(index) is outside 0..<\(count) of \(source)")
        precondition(shapes == nil, "Dataset.image: the images of \(source) differ in size; call requireOneSize first, or crop")
        let size = imageSize
        pixels.withUnsafeBufferPointer { p in
            let src = p.baseAddress! + index * size
            for i in 0..<size { out[i] = Float(src[i]) / 255 }
        }
    }

    /// Writes the height x width window of image `index` whose top-left pixel is (top, left)
    /// as floats in [0,1] (x/255) into `out`: channels * height * width floats, [C, h, w].
    public func crop(_ index: Int, top: Int, left: Int, height: Int, width: Int, into out: UnsafeMutablePointer<Float>) {
        let s = shape(index)
        precondition(top >= 0 && left >= 0 && height > 0 && width > 0 && top + height <= s.height && left + width <= s.width,
                     "Dataset.crop: \(height)x\(width) at (\(top), \(left)) is outside image \(index) (\(s.height)x\(s.width)) of \(source)")
        pixels.withUnsafeBufferPointer { p in
            var o = 0
            for c in 0..<channels {
                let plane = p.baseAddress! + s.offset + c * s.height * s.width
                for y in top..<(top + height) {
                    let row = plane + y * s.width + left
                    for x in 0..<width { out[o + x] = Float(row[x]) / 255 }
                    o += width
                }
            }
        }
    }
}
