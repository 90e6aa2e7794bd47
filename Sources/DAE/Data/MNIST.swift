// A dataset in MNIST's file layout: <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
// Works unchanged for Fashion-MNIST and KMNIST, which use the same names.

import Foundation

public enum Split: String, Sendable, CaseIterable {
    case train
    case test

    var filePrefix: String { self == .train ? "train" : "t10k" }
}

/// Images kept as bytes (a quarter of the memory of floats); `image(_:into:)` scales to [0,1]
/// as x/255, exactly as torchvision's ToTensor.
public struct Dataset: Sendable {
    public let count: Int
    public let height: Int
    public let width: Int
    public let pixels: [UInt8]     // [count, height, width]
    public let labels: [UInt8]     // [count]
    public let source: String

    public var imageSize: Int { height * width }

    public init(count: Int, height: Int, width: Int, pixels: [UInt8], labels: [UInt8], source: String) {
        precondition(pixels.count == count * height * width && labels.count == count)
        self.count = count; self.height = height; self.width = width
        self.pixels = pixels; self.labels = labels; self.source = source
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
        guard h % 4 == 0, w % 4 == 0 else {
            throw DAEError.data(path: imagesPath, problem: "images are \(h)x\(w); the convolutional model needs sides that are multiples of 4")
        }
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
        let k = min(n, count)
        return Dataset(count: k, height: height, width: width,
                       pixels: Array(pixels[0..<(k * imageSize)]), labels: Array(labels[0..<k]), source: source)
    }

    /// Writes sample `index` (0 ..< count) as floats in [0,1] (x/255) into `out`.
    @inlinable public func image(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        // the pixel loop below reads through an unchecked pointer: one comparison per image (the
        // unsigned view also catches negative indices) instead of a bounds check per pixel
        precondition(UInt(bitPattern: index) < UInt(count), "Dataset.image: sample \(index) is outside 0..<\(count) of \(source)")
        let size = imageSize
        pixels.withUnsafeBufferPointer { p in
            let src = p.baseAddress! + index * size
            for i in 0..<size { out[i] = Float(src[i]) / 255 }
        }
    }
}
