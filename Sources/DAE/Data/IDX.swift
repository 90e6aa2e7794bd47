// The IDX format of MNIST (and Fashion-MNIST, KMNIST, ...): a big-endian header
//   [0, 0, type, ndims] [dim0: int32] ... [dimN-1: int32]
// followed by the values, row-major. MNIST uses type 0x08 (unsigned byte): magic 2051 (0x00000803,
// 3 dims: count, rows, cols) for images and 2049 (0x00000801, 1 dim: count) for labels.
// Files may be gzip-compressed; zlib inflates them.

import CZlib
import Foundation

/// A parsed IDX file of unsigned bytes.
public struct IDXArray: Sendable {
    public var dims: [Int]
    public var values: [UInt8]
}

public enum IDX {
    public static let imagesMagic: UInt32 = 2051
    public static let labelsMagic: UInt32 = 2049

    /// Reads an IDX file of unsigned bytes (raw, or gzip: detected by its magic bytes),
    /// and checks it against the expected magic number. Every problem is a `DAEError.data`
    /// naming the file.
    public static func read(path: String, expectedMagic: UInt32) throws(DAEError) -> IDXArray {
        let raw = try readFile(path)
        let bytes: [UInt8]
        if raw.count >= 2 && raw[0] == 0x1F && raw[1] == 0x8B {
            bytes = try gunzip(raw, path: path)
        } else if path.hasSuffix(".gz") {
            throw DAEError.data(path: path, problem: "not a gzip file (no gzip magic bytes 1f 8b); re-download it or decompress it by hand")
        } else {
            bytes = raw
        }
        return try parse(bytes, path: path, expectedMagic: expectedMagic)
    }

    /// Parses IDX bytes already in memory.
    public static func parse(_ bytes: [UInt8], path: String, expectedMagic: UInt32) throws(DAEError) -> IDXArray {
        if bytes.isEmpty { throw DAEError.data(path: path, problem: "file is empty") }
        guard bytes.count >= 4 else {
            throw DAEError.data(path: path, problem: "truncated: \(bytes.count) bytes, too short for an IDX header")
        }
        let magic = bigEndianUInt32(bytes, at: 0)
        let kind = expectedMagic == imagesMagic ? "images" : "labels"
        guard magic == expectedMagic else {
            throw DAEError.data(path: path, problem: "bad magic number \(magic) (0x\(String(magic, radix: 16))), expected \(expectedMagic) for an IDX \(kind) file")
        }
        let ndims = Int(bytes[3])
        let headerSize = 4 + 4 * ndims
        guard bytes.count >= headerSize else {
            throw DAEError.data(path: path, problem: "truncated: header declares \(ndims) dimensions but the file has \(bytes.count) bytes")
        }
        var dims: [Int] = []
        var total = 1
        for d in 0..<ndims {
            let size = Int(bigEndianUInt32(bytes, at: 4 + 4 * d))
            guard size > 0 else {
                throw DAEError.data(path: path, problem: "dimension \(d) is 0: the file holds no \(kind)")
            }
            dims.append(size)
            let (product, overflow) = total.multipliedReportingOverflow(by: size)
            guard !overflow, product <= 1 << 40 else {
                throw DAEError.data(path: path, problem: "dimensions \(dims) are implausibly large")
            }
            total = product
        }
        let actual = bytes.count - headerSize
        if actual < total {
            throw DAEError.data(path: path, problem: "truncated: dimensions \(dims) declare \(total) bytes of data, the file has \(actual)")
        }
        if actual > total {
            throw DAEError.data(path: path, problem: "\(actual - total) unexpected bytes after the \(total) bytes declared by dimensions \(dims)")
        }
        return IDXArray(dims: dims, values: Array(bytes[headerSize...]))
    }

    /// An IDX file of unsigned bytes: magic 0x0800 | dims.count, big-endian dimensions, values.
    public static func encode(dims: [Int], values: [UInt8]) -> [UInt8] {
        precondition(dims.reduce(1, *) == values.count && dims.count < 256)
        var out: [UInt8] = [0, 0, 0x08, UInt8(dims.count)]
        for d in dims { out += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
        return out + values
    }

    static func bigEndianUInt32(_ b: [UInt8], at i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    static func readFile(_ path: String) throws(DAEError) -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DAEError.data(path: path, problem: "no such file")
        }
        if isDirectory.boolValue { throw DAEError.data(path: path, problem: "is a directory, expected a file") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DAEError.data(path: path, problem: "cannot be read (permissions?)")
        }
        return [UInt8](data)
    }

    /// Inflates a whole gzip member with zlib.
    static func gunzip(_ input: [UInt8], path: String) throws(DAEError) -> [UInt8] {
        // The gzip trailer's last 4 bytes hold the uncompressed size mod 2^32: a good first guess.
        var capacity = 1 << 16
        if input.count >= 18 {
            let n = input.count
            let isize = Int(UInt32(input[n - 4]) | UInt32(input[n - 3]) << 8 | UInt32(input[n - 2]) << 16 | UInt32(input[n - 1]) << 24)
            // Untrusted (a truncated file ends in arbitrary bytes): deflate never expands more
            // than 1032:1, so a larger claim is ignored instead of allocated.
            if isize <= 1032 * input.count { capacity = max(capacity, isize + 1) }
        }
        var output = [UInt8](repeating: 0, count: capacity)
        var stream = z_stream()
        guard dae_inflate_init_gzip(&stream) == Z_OK else {
            throw DAEError.data(path: path, problem: "zlib could not start inflating")
        }
        defer { inflateEnd(&stream) }
        var produced = 0
        var status: Int32 = Z_OK
        var input = input
        input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = UInt32(inBuf.count)
            while true {
                if produced == output.count { output.append(contentsOf: repeatElement(0, count: output.count)) }
                output.withUnsafeMutableBufferPointer { outBuf in
                    stream.next_out = outBuf.baseAddress! + produced
                    stream.avail_out = UInt32(min(outBuf.count - produced, Int(UInt32.max)))
                    let before = Int(stream.avail_out)
                    status = inflate(&stream, Z_NO_FLUSH)
                    produced += before - Int(stream.avail_out)
                }
                if status == Z_STREAM_END { break }
                if status != Z_OK { break }
                if stream.avail_in == 0 && stream.avail_out > 0 { status = Z_BUF_ERROR; break }
            }
        }
        switch status {
        case Z_STREAM_END:
            output.removeSubrange(produced...)
            return output
        case Z_BUF_ERROR:
            throw DAEError.data(path: path, problem: "truncated gzip file (ended after \(produced) decompressed bytes); re-download or re-copy it")
        default:
            let message = stream.msg.map { String(cString: $0) } ?? "error \(status)"
            throw DAEError.data(path: path, problem: "corrupt gzip data: \(message)")
        }
    }
}
