// NumPy's .npy format, read directly (numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
//   "\x93NUMPY" | major (1, 2 or 3) | minor | header length (uint16 LE for version 1, uint32 LE
//   after) | an ASCII Python dict literal, e.g. {'descr': '|u1', 'fortran_order': False,
//   'shape': (60000, 28, 28), } padded with spaces to a multiple of 64 bytes, ending in '\n' |
//   the array's bytes, C order.
// Accepted here: uint8 ('|u1') or little-endian float32 ('<f4') arrays of shape [N, H, W] or
// [N, H, W, 1], not Fortran-ordered. Float values must lie in [0, 1]; they are stored as 8-bit
// pixels round(x * 255), as every image here is (the rounding moves a value by at most 1/510).

import Foundation

public enum NPY {
    /// Images [N, H, W] as bytes from a .npy file. Every problem is one DAEError naming the file.
    public static func readImages(path: String) throws(DAEError) -> (dims: [Int], pixels: [UInt8]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DAEError.data(path: path, problem: FileManager.default.fileExists(atPath: path) ? "cannot be read (permissions?)" : "no such file")
        }
        return try parseImages([UInt8](data), path: path)
    }

    /// The same, from a .npy file's bytes already in memory (`path` names them in errors).
    public static func parseImages(_ bytes: [UInt8], path: String) throws(DAEError) -> (dims: [Int], pixels: [UInt8]) {
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
        guard shape.count == 3 || (shape.count == 4 && shape[3] == 1) else {
            let channels = shape.count == 4 ? " (\(shape[3]) channels: only gray images, [N, H, W] or [N, H, W, 1], are read)" : ""
            throw fail("shape \(shape) is not [N, H, W] or [N, H, W, 1]\(channels)")
        }
        let dims = Array(shape[0..<3])
        guard dims.allSatisfy({ $0 > 0 }) else { throw fail("shape \(shape) holds no images") }
        var count = 1
        for d in dims {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, product <= 1 << 36 else { throw fail("shape \(shape) is too large") }
            count = product
        }
        let width = descr == "|u1" || descr == "<u1" ? 1 : 4
        let dataStart = headerStart + headerLength
        guard bytes.count - dataStart == count * width else {
            throw fail("holds \(bytes.count - dataStart) bytes of data, its shape \(shape) of \(descr) needs \(count * width)")
        }
        if width == 1 { return (dims, Array(bytes[dataStart...])) }
        var pixels = [UInt8](repeating: 0, count: count)
        for i in 0..<count {
            var bits: UInt32 = 0
            for b in 0..<4 { bits |= UInt32(bytes[dataStart + 4 * i + b]) << (8 * b) }
            let x = Float(bitPattern: bits)
            guard x >= 0 && x <= 1 else { throw fail("value \(x) at element \(i) is outside [0, 1]; float32 images must be scaled to [0, 1]") }
            pixels[i] = UInt8((x * 255).rounded())
        }
        return (dims, pixels)
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
