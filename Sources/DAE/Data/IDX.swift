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
        // The whole file in memory: its size is the file's real size, not a number read from it.
        let raw = try readFile(path)
        let bytes: [UInt8]
        if raw.count >= 2 && raw[0] == 0x1F && raw[1] == 0x8B {
            bytes = try gunzip(raw, path: path, expectedMagic: expectedMagic)
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
        guard let header = try declaredSize(bytes, path: path, expectedMagic: expectedMagic) else {
            throw DAEError.data(path: path, problem: bytes.count < 4
                ? "truncated: \(bytes.count) bytes, too short for an IDX header"
                : "truncated: header declares \(bytes[3]) dimensions but the file has \(bytes.count) bytes")
        }
        let (headerSize, dims, total) = (header.headerSize, header.dims, header.dataSize)
        let actual = bytes.count - headerSize
        if actual < total {
            throw DAEError.data(path: path, problem: "truncated: dimensions \(dims) declare \(total) bytes of data, the file has \(actual)")
        }
        if actual > total {
            throw DAEError.data(path: path, problem: "\(actual - total) unexpected bytes after the \(total) bytes declared by dimensions \(dims)")
        }
        return IDXArray(dims: dims, values: Array(bytes[headerSize...]))
    }

    /// What an IDX header at the start of `bytes` declares: its own size, the dimensions and the
    /// bytes of data they imply (at most `maxDataSize`). Nil while `bytes` is too short to hold
    /// the whole header (the gzip reader asks again as more is inflated); a bad magic number or
    /// dimension is an error at once.
    static func declaredSize(_ bytes: [UInt8], path: String, expectedMagic: UInt32) throws(DAEError)
        -> (headerSize: Int, dims: [Int], dataSize: Int)? {
        guard bytes.count >= 4 else { return nil }
        let magic = bigEndianUInt32(bytes, at: 0)
        let kind = expectedMagic == imagesMagic ? "images" : "labels"
        guard magic == expectedMagic else {
            throw DAEError.data(path: path, problem: "bad magic number \(magic) (0x\(String(magic, radix: 16))), expected \(expectedMagic) for an IDX \(kind) file")
        }
        let ndims = Int(bytes[3])
        let headerSize = 4 + 4 * ndims
        guard bytes.count >= headerSize else { return nil }
        var dims: [Int] = []
        var total = 1
        for d in 0..<ndims {
            let size = Int(bigEndianUInt32(bytes, at: 4 + 4 * d))
            guard size > 0 else {
                throw DAEError.data(path: path, problem: "dimension \(d) is 0: the file holds no \(kind)")
            }
            dims.append(size)
            let (product, overflow) = total.multipliedReportingOverflow(by: size)
            guard !overflow, product <= maxDataSize else {
                throw DAEError.data(path: path, problem: "dimensions \(dims) are implausibly large")
            }
            total = product
        }
        return (headerSize, dims, total)
    }

    /// The dimensions an IDX file's header declares, from its first bytes only (inflated first
    /// when the file is gzip): what a dataset will hold, known before it is read. The sizes they
    /// declare are checked against the file's real size first, so that nothing is ever sized by
    /// a header alone: a raw file must hold exactly the declared bytes, a gzip file must be large
    /// enough to inflate to them (deflate expands at most 1032:1).
    static func declaredDims(path: String, expectedMagic: UInt32) throws(DAEError) -> [Int] {
        var bytes = try readFilePrefix(path, count: 1 << 12)
        let gzip = bytes.starts(with: [0x1F, 0x8B])
        if gzip {
            var stream = z_stream()
            guard dae_inflate_init_gzip(&stream) == Z_OK else { throw DAEError.data(path: path, problem: "zlib could not start inflating") }
            defer { inflateEnd(&stream) }
            var head = [UInt8](repeating: 0, count: 1 << 10)
            let made = bytes.withUnsafeMutableBufferPointer { input in
                head.withUnsafeMutableBufferPointer { output in
                    stream.next_in = input.baseAddress; stream.avail_in = UInt32(input.count)
                    stream.next_out = output.baseAddress; stream.avail_out = UInt32(output.count)
                    // a member may end before the header does: go on into the next one (see gunzip)
                    while inflate(&stream, Z_NO_FLUSH) == Z_STREAM_END && stream.avail_out > 0 && stream.avail_in >= 2
                            && stream.next_in[0] == 0x1F && stream.next_in[1] == 0x8B {
                        inflateReset(&stream)
                    }
                    return output.count - Int(stream.avail_out)
                }
            }
            bytes = Array(head[0..<made])
        }
        guard let header = try declaredSize(bytes, path: path, expectedMagic: expectedMagic) else {
            throw DAEError.data(path: path, problem: "truncated: too short for an IDX header")
        }
        guard let size = fileSize(path) else { throw DAEError.data(path: path, problem: unreadableReason(path)) }
        let declared = header.headerSize + header.dataSize
        if gzip {
            let (possible, overflow) = size.multipliedReportingOverflow(by: 1032)
            if !overflow && possible < declared {
                throw DAEError.data(path: path, problem: "truncated or corrupt: dimensions \(header.dims) declare \(header.dataSize) bytes of data, more than a gzip file of \(size) bytes can hold; re-download or re-copy it")
            }
        } else if size < declared {
            throw DAEError.data(path: path, problem: "truncated: dimensions \(header.dims) declare \(header.dataSize) bytes of data, the file has \(size - header.headerSize)")
        } else if size > declared {
            throw DAEError.data(path: path, problem: "\(size - declared) unexpected bytes after the \(header.dataSize) bytes declared by dimensions \(header.dims)")
        }
        return header.dims
    }

    /// The largest data an IDX header may declare (1 TiB). Only a sanity cap: nothing is ever
    /// allocated from a header alone (see gunzip).
    static let maxDataSize = 1 << 40

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
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw DAEError.data(path: path, problem: "is a directory, expected a file")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DAEError.data(path: path, problem: unreadableReason(path))
        }
        return [UInt8](data)
    }

    /// Inflates a gzip file holding one IDX file, in bounded memory. Nothing read from the file
    /// sizes an allocation: not the gzip trailer's ISIZE (untrusted, and wrong for a truncated
    /// file), and not the IDX header. zlib inflates into a fixed 64 KiB window and the output
    /// grows only as inflated data actually arrives; once the first inflated bytes hold the IDX
    /// header, the size it declares bounds the output, and inflating stops with an error the
    /// moment the stream yields more than that, or ends early.
    ///
    /// Concatenated gzip members (`cat a.gz b.gz`, pigz's output) are one file, as gzip -d reads
    /// them: after the end of a member, input that starts with the gzip magic bytes is inflated
    /// as the next member; any other byte after the last member is trailing garbage, refused.
    ///
    /// Returns the IDX bytes (header and data) for `parse`, which checks them again in full.
    static func gunzip(_ input: [UInt8], path: String, expectedMagic: UInt32) throws(DAEError) -> [UInt8] {
        var stream = z_stream()
        guard dae_inflate_init_gzip(&stream) == Z_OK else {
            throw DAEError.data(path: path, problem: "zlib could not start inflating")
        }
        defer { inflateEnd(&stream) }
        let windowSize = 1 << 16
        var window = [UInt8](repeating: 0, count: windowSize)
        var output: [UInt8] = []
        var limit: Int? = nil            // header + data, once the header is known
        var dataSize = 0                 // the data the header declares
        var status: Int32 = Z_OK
        var input = input
        var failure: DAEError? = nil
        input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = UInt32(min(inBuf.count, Int(UInt32.max)))
            window.withUnsafeMutableBufferPointer { outBuf in
                while true {
                    // At most one byte beyond the limit: enough to tell that the data runs past it.
                    let room = limit.map { max(1, min(windowSize, $0 + 1 - output.count)) } ?? windowSize
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = UInt32(room)
                    status = inflate(&stream, Z_NO_FLUSH)
                    output.append(contentsOf: outBuf[0 ..< room - Int(stream.avail_out)])
                    if status != Z_OK && status != Z_STREAM_END { return }
                    if limit == nil {
                        do throws(DAEError) {
                            if let header = try declaredSize(output, path: path, expectedMagic: expectedMagic) {
                                let size = header.headerSize + header.dataSize
                                limit = size
                                dataSize = header.dataSize
                            }
                        } catch {
                            failure = error
                            return
                        }
                    }
                    if let limit, output.count > limit {
                        failure = DAEError.data(path: path, problem: "the gzip data holds more than the \(dataSize) bytes of data its IDX header declares; re-download the file")
                        return
                    }
                    if status == Z_STREAM_END {
                        // the next member, if the input goes on with one (see above)
                        guard stream.avail_in >= 2, stream.next_in[0] == 0x1F, stream.next_in[1] == 0x8B else { return }
                        inflateReset(&stream)
                        continue
                    }
                    // no input left and the stream not ended: the file is cut short
                    if stream.avail_in == 0 && stream.avail_out > 0 { status = Z_BUF_ERROR; return }
                }
            }
        }
        if let failure { throw failure }
        switch status {
        case Z_STREAM_END:
            let rest = Int(stream.avail_in)
            if rest > 0 {
                throw DAEError.data(path: path, problem: "\(rest) bytes of trailing garbage after the end of the gzip data (not another gzip member); re-download the file")
            }
            return output
        case Z_BUF_ERROR:
            let declared = limit.map { " of the \($0) bytes its IDX header declares" } ?? " bytes"
            throw DAEError.data(path: path, problem: "truncated gzip file (ended after \(output.count)\(declared)); re-download or re-copy it")
        default:
            let message = stream.msg.map { String(cString: $0) } ?? "error \(status)"
            throw DAEError.data(path: path, problem: "corrupt gzip data: \(message)")
        }
    }
}

/// The first `count` bytes of the file at `path` (fewer if it is shorter): headers without
/// reading whole files (IDX here, images in ImageFiles.swift).
func readFilePrefix(_ path: String, count: Int) throws(DAEError) -> [UInt8] {
    guard let handle = FileHandle(forReadingAtPath: path) else {
        throw DAEError.data(path: path, problem: unreadableReason(path))
    }
    defer { try? handle.close() }
    guard let data = try? handle.read(upToCount: count) else { return [] }
    return [UInt8](data)
}

/// The size in bytes of the file at `path` (following links), or nil when it cannot be read: what
/// a header's declared sizes are checked against before anything is allocated from them.
func fileSize(_ path: String) -> Int? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return Int(info.st_size)
}
