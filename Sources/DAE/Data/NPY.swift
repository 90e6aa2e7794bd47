// NumPy's .npy format, read directly (numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
//   "\x93NUMPY" | major (1, 2 or 3) | minor | header length (uint16 LE for version 1, uint32 LE
//   after) | an ASCII Python dict literal, e.g. {'descr': '|u1', 'fortran_order': False,
//   'shape': (60000, 28, 28), } padded with spaces to a multiple of 64 bytes, ending in '\n' |
//   the array's bytes, C order.
// Accepted here: uint8 ('|u1') or little-endian float32 ('<f4') arrays of shape [N, H, W],
// [N, H, W, 1] (gray) or [N, H, W, 3] (RGB, stored as planes [N, 3, H, W]), not Fortran-ordered.
// Float values must lie in [0, 1]; they are stored as 8-bit pixels round(x * 255), as every image
// here is (the rounding moves a value by at most 1/510).

import Foundation

/// Images of a .npy file: `count` images of `channels` planes of height x width, [N, C, H, W].
public struct NPYImages: Sendable, Equatable {
    public var count: Int
    public var channels: Int
    public var height: Int
    public var width: Int
    public var pixels: [UInt8]
}

public enum NPY {
    /// Images [N, H, W] as bytes from a .npy file of gray images. Every problem is one DAEError
    /// naming the file.
    public static func readImages(path: String) throws(DAEError) -> (dims: [Int], pixels: [UInt8]) {
        try gray(read(path: path), path: path)
    }

    /// The same, from a .npy file's bytes already in memory (`path` names them in errors).
    public static func parseImages(_ bytes: [UInt8], path: String) throws(DAEError) -> (dims: [Int], pixels: [UInt8]) {
        try gray(parse(bytes, path: path), path: path)
    }

    static func gray(_ images: NPYImages, path: String) throws(DAEError) -> (dims: [Int], pixels: [UInt8]) {
        guard images.channels == 1 else {
            throw DAEError.data(path: path, problem: "holds images of 3 channels; read it with NPY.read, which keeps them")
        }
        return ([images.count, images.height, images.width], images.pixels)
    }

    /// Gray or RGB images from a .npy file of shape [N, H, W], [N, H, W, 1] or [N, H, W, 3]; the
    /// file's HWC pixels become planes (CHW).
    public static func read(path: String) throws(DAEError) -> NPYImages {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DAEError.data(path: path, problem: unreadableReason(path))
        }
        return try parse([UInt8](data), path: path)
    }

    /// What a .npy file's header declares: images, channels, height, width (no data read). The
    /// file's size must be what the header declares: nothing is sized by a shape the file does
    /// not hold.
    public static func readShape(path: String) throws(DAEError) -> (count: Int, channels: Int, height: Int, width: Int) {
        let start = try readFilePrefix(path, count: 12 + (1 << 20))
        let layout = try layout(start, path: path)
        guard let size = fileSize(path) else { throw DAEError.data(path: path, problem: unreadableReason(path)) }
        let needed = layout.dims.reduce(1, *) * layout.valueSize
        guard size - layout.dataStart == needed else {
            let shape = layout.dims[3] == 1 ? Array(layout.dims[0..<3]) : layout.dims
            throw DAEError.data(path: path, problem: "holds \(size - layout.dataStart) bytes of data, its shape \(shape) of \(layout.descr) needs \(needed)")
        }
        return (layout.dims[0], layout.dims[3], layout.dims[1], layout.dims[2])
    }

    /// The header of the .npy bytes at the start of `bytes`: dims [N, H, W, C], the offset of the
    /// data, and 1 (uint8) or 4 (float32) bytes per value.
    static func layout(_ bytes: [UInt8], path: String) throws(DAEError) -> (dims: [Int], dataStart: Int, valueSize: Int, descr: String) {
        func fail(_ problem: String) -> DAEError { .data(path: path, problem: problem) }
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]    // \x93NUMPY
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw fail("not a .npy file (no \\x93NUMPY magic)") }
        let major = bytes[6]
        guard (1...3).contains(major) else { throw fail(".npy format version \(major) is not supported (1, 2 or 3 are)") }
        let lengthBytes = major == 1 ? 2 : 4
        guard bytes.count >= 8 + lengthBytes else { throw fail("truncated: no header length") }
        var headerLength = 0
        for i in 0..<lengthBytes { headerLength |= Int(bytes[8 + i]) << (8 * i) }
        let headerStart = 8 + lengthBytes
        guard headerLength <= 1 << 20, bytes.count >= headerStart + headerLength else {
            throw fail("truncated: the header declares \(headerLength) bytes")
        }
        let header = String(decoding: bytes[headerStart ..< headerStart + headerLength], as: UTF8.self)
        let (descr, fortran, shape) = try parseHeader(header, fail: fail)
        guard !fortran else { throw fail("a Fortran-ordered array; save it with numpy.ascontiguousarray first") }
        guard shape.count == 3 || (shape.count == 4 && (shape[3] == 1 || shape[3] == 3)) else {
            let channels = shape.count == 4 ? " (\(shape[3]) channels: gray or RGB images, [N, H, W], [N, H, W, 1] or [N, H, W, 3], are read)" : ""
            throw fail("shape \(shape) is not [N, H, W], [N, H, W, 1] or [N, H, W, 3]\(channels)")
        }
        let dims = shape.count == 3 ? shape + [1] : shape
        guard dims.allSatisfy({ $0 > 0 }) else { throw fail("shape \(shape) holds no images") }
        var count = 1
        for d in dims {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, product <= 1 << 36 else { throw fail("shape \(shape) is too large") }
            count = product
        }
        return (dims, headerStart + headerLength, descr == "<f4" ? 4 : 1, descr)
    }

    /// The same as `read`, from a .npy file's bytes already in memory (`path` names them in errors).
    public static func parse(_ bytes: [UInt8], path: String) throws(DAEError) -> NPYImages {
        func fail(_ problem: String) -> DAEError { .data(path: path, problem: problem) }
        let (dims, dataStart, width, descr) = try layout(bytes, path: path)
        let count = dims.reduce(1, *)
        let shape = dims[3] == 1 ? Array(dims[0..<3]) : dims
        guard bytes.count - dataStart == count * width else {
            throw fail("holds \(bytes.count - dataStart) bytes of data, its shape \(shape) of \(descr) needs \(count * width)")
        }
        var values = [UInt8](repeating: 0, count: count)
        if width == 1 {
            values = Array(bytes[dataStart...])
        } else {
            for i in 0..<count {
                var bits: UInt32 = 0
                for b in 0..<4 { bits |= UInt32(bytes[dataStart + 4 * i + b]) << (8 * b) }
                let x = Float(bitPattern: bits)
                guard x >= 0 && x <= 1 else { throw fail("value \(x) at element \(i) is outside [0, 1]; float32 images must be scaled to [0, 1]") }
                values[i] = UInt8((x * 255).rounded())
            }
        }
        let (n, h, w, c) = (dims[0], dims[1], dims[2], dims[3])
        guard c == 3 else { return NPYImages(count: n, channels: 1, height: h, width: w, pixels: values) }
        // HWC (the file) to CHW (a dataset's planes), image by image
        var planes = [UInt8](repeating: 0, count: count)
        let size = h * w
        for image in 0..<n {
            let base = image * 3 * size
            for p in 0..<size {
                for ch in 0..<3 { planes[base + ch * size + p] = values[base + 3 * p + ch] }
            }
        }
        return NPYImages(count: n, channels: 3, height: h, width: w, pixels: planes)
    }

    /// The dict literal's three keys. Python writes them in a fixed form; anything else is refused.
    static func parseHeader(_ header: String, fail: (String) -> DAEError) throws(DAEError) -> (descr: String, fortran: Bool, shape: [Int]) {
        func value(_ key: String) -> Substring? {
            guard let start = header.range(of: "'\(key)':") else { return nil }
            return header[start.upperBound...].drop { $0 == " " }
        }
        guard let descrText = value("descr"), descrText.first == "'",
              let end = descrText.dropFirst().firstIndex(of: "'") else { throw fail("header has no 'descr'") }
        let descr = String(descrText[descrText.index(after: descrText.startIndex) ..< end])
        guard ["|u1", "<u1", "<f4"].contains(descr) else {
            throw fail("dtype '\(descr)' is not supported: use uint8, or float32 with values in [0, 1]")
        }
        guard let fortranText = value("fortran_order") else { throw fail("header has no 'fortran_order'") }
        let fortran = fortranText.hasPrefix("True")
        guard fortran || fortranText.hasPrefix("False") else { throw fail("header's 'fortran_order' is neither True nor False") }
        guard let shapeText = value("shape"), shapeText.first == "(", let close = shapeText.firstIndex(of: ")") else {
            throw fail("header has no 'shape'")
        }
        let inside = shapeText[shapeText.index(after: shapeText.startIndex) ..< close]
        var shape: [Int] = []
        for part in inside.split(separator: ",") {
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            guard let n = Int(trimmed), n >= 0 else { throw fail("header's shape (\(inside)) is not a tuple of sizes") }
            shape.append(n)
        }
        return (descr, fortran, shape)
    }
}
