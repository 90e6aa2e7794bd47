// The safetensors format (huggingface/safetensors), written and read by hand: it is a dozen lines
// of layout and PyTorch, numpy and JAX all load it (safetensors.torch.load_file).
//
//   [8 bytes: N, little-endian UInt64] [N bytes: JSON header, padded with spaces to a multiple of 8]
//   [data: each tensor's little-endian values, contiguous, at the header's data_offsets]
//
// The header maps each tensor name to {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}
// (offsets relative to the start of the data), plus an optional "__metadata__" object whose values
// are all strings.

import CZlib
import Foundation

public struct SafeTensor: Sendable, Equatable {
    /// F32, or U8 for small integers such as class labels (written one byte each; read back only
    /// by other tools: dae-dist's own files are all F32).
    public enum DType: String, Sendable { case f32 = "F32", u8 = "U8" }
    public var name: String
    public var shape: [Int]
    public var values: [Float]
    public var dtype: DType
    public init(name: String, shape: [Int], values: [Float], dtype: DType = .f32) {
        precondition(shape.reduce(1, *) == values.count, "\(name): shape \(shape) does not match \(values.count) values")
        precondition(dtype == .f32 || values.allSatisfy { $0 >= 0 && $0 <= 255 && $0 == $0.rounded() }, "\(name): U8 values must be integers 0...255")
        self.name = name; self.shape = shape; self.values = values; self.dtype = dtype
    }
    var byteCount: Int { values.count * (dtype == .f32 ? 4 : 1) }
}

public enum SafeTensors {
    /// Encodes tensors (in the given order) and string metadata.
    public static func encode(_ tensors: [SafeTensor], metadata: [String: String] = [:]) -> [UInt8] {
        var header = "{"
        var entries: [String] = []
        if !metadata.isEmpty {
            let items = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            entries.append("\"__metadata__\":{\(items.joined(separator: ","))}")
        }
        var offset = 0
        for t in tensors {
            let size = t.byteCount
            entries.append("\(jsonString(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + size)]}")
            offset += size
        }
        header += entries.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + headerBytes.count + offset)
        var n = UInt64(headerBytes.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for t in tensors {
            if t.dtype == .u8 {
                out.append(contentsOf: t.values.map { UInt8($0) })
                continue
            }
            #if _endian(little)
            // the file's little-endian F32 is the in-memory layout: one copy (value by value,
            // a 67 MB checkpoint of the stacked model took 0.3 s)
            t.values.withUnsafeBytes { out.append(contentsOf: $0) }
            #else
            for value in t.values {
                var bits = value.bitPattern.littleEndian
                withUnsafeBytes(of: &bits) { out.append(contentsOf: $0) }
            }
            #endif
        }
        return out
    }

    /// The longest JSON header accepted (the safetensors library's own limit): a length beyond it
    /// is a damaged or foreign file, and nothing that large is read into memory.
    public static let maxHeaderLength = 100_000_000

    /// Decodes a safetensors file's bytes: its F32 tensors (in file order) and metadata.
    /// The bytes are untrusted: every inconsistency is a `DAEError.checkpoint` naming `path`, and
    /// nothing is allocated beyond the size of the input.
    public static func decode(_ bytes: [UInt8], path: String) throws(DAEError) -> (tensors: [SafeTensor], metadata: [String: String]) {
        func fail(_ problem: String) -> DAEError { .checkpoint(path: path, problem: problem) }
        guard bytes.count >= 8 else { throw fail("not a safetensors file (\(bytes.count) bytes, too short for a header)") }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        try checkHeaderLength(headerLength, available: bytes.count - 8, fail)
        let headerEnd = 8 + Int(headerLength)
        let dataCount = bytes.count - headerEnd
        let header = try parseHeader(bytes[8..<headerEnd], dataCount: dataCount, path: path)
        guard header.dataLength == dataCount else { throw fail("\(dataCount - header.dataLength) bytes after the last tensor") }
        var tensors: [SafeTensor] = []
        for e in header.entries {
            if e.dtype == .u8 {
                let values = bytes[(headerEnd + e.begin)..<(headerEnd + e.end)].map(Float.init)
                tensors.append(SafeTensor(name: e.name, shape: e.shape, values: values, dtype: .u8))
                continue
            }
            var values = [Float](repeating: 0, count: (e.end - e.begin) / 4)
            bytes.withUnsafeBufferPointer { raw in
                let base = raw.baseAddress! + headerEnd + e.begin
                for i in 0..<values.count {
                    let b = base + 4 * i
                    let bits = UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
                    values[i] = Float(bitPattern: bits)
                }
            }
            tensors.append(SafeTensor(name: e.name, shape: e.shape, values: values))
        }
        return (tensors, metadata: header.metadata)
    }

    /// The header length N of the first 8 bytes, against the `available` bytes after them.
    static func checkHeaderLength(_ headerLength: UInt64, available: Int, _ fail: (String) -> DAEError) throws(DAEError) {
        guard headerLength <= UInt64(available) else {
            throw fail("truncated or not a safetensors file: header length \(headerLength) exceeds the \(available) bytes after it")
        }
        guard headerLength >= 2 else { throw fail("not a safetensors file (header length \(headerLength))") }
        guard headerLength <= UInt64(maxHeaderLength) else {
            throw fail("not a safetensors file (header length \(headerLength), over the \(maxHeaderLength)-byte limit)")
        }
    }

    /// Validates the JSON header and returns its tensor table in data order. `dataCount` is the
    /// size of the data section when it is known (`decode`); `readHeader` passes nil, as it does
    /// not look at the data: the tensors must still tile a data section from 0 without gaps or
    /// overlaps, and the header then says how long that section must be (`dataLength`).
    static func parseHeader(_ json: ArraySlice<UInt8>, dataCount: Int?, path: String) throws(DAEError) -> SafeTensorsHeader {
        func fail(_ problem: String) -> DAEError { .checkpoint(path: path, problem: problem) }
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
                throw fail("corrupt safetensors header (not a JSON object)")
            }
            object = parsed
        } catch let error as DAEError {
            throw error
        } catch {
            throw fail("corrupt safetensors header (not valid JSON)")
        }
        var metadata: [String: String] = [:]
        if let meta = object["__metadata__"] {
            guard let dict = meta as? [String: Any] else { throw fail("__metadata__ is not an object") }
            for (k, v) in dict {
                guard let s = v as? String else { throw fail("__metadata__ value for '\(k)' is not a string") }
                metadata[k] = s
            }
        }
        // Without the data section's size, the bound on a tensor is the one `integers` puts on offsets.
        let limit = dataCount ?? maxOffset
        var entries: [SafeTensorsHeader.Entry] = []
        for (name, value) in object where name != "__metadata__" {
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shapeList = info["shape"] as? [Any], let offsetList = info["data_offsets"] as? [Any] else {
                throw fail("tensor '\(name)' has a malformed header entry")
            }
            let shape = try integers(shapeList, what: "shape of '\(name)'", fail)
            let offsets = try integers(offsetList, what: "data_offsets of '\(name)'", fail)
            guard let type = SafeTensor.DType(rawValue: dtype) else { throw fail("tensor '\(name)' has dtype \(dtype); only F32 (and U8) is supported") }
            let width = type == .f32 ? 4 : 1
            guard offsets.count == 2 else { throw fail("tensor '\(name)' needs 2 data_offsets, has \(offsets.count)") }
            var count = 1
            for d in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow, product <= limit else {
                    throw fail("tensor '\(name)' has shape \(shape), more elements than the file holds")
                }
                count = product
            }
            guard offsets[0] <= offsets[1], offsets[1] <= limit else {
                throw fail("tensor '\(name)' has data_offsets \(offsets) outside the \(limit)-byte data section (truncated?)")
            }
            guard offsets[1] - offsets[0] == count * width else {
                throw fail("tensor '\(name)' has \(offsets[1] - offsets[0]) bytes of data but shape \(shape) needs \(count * width)")
            }
            entries.append(.init(name: name, dtype: type, shape: shape, begin: offsets[0], end: offsets[1]))
        }
        // The tensors must tile the data section exactly: no overlaps, no holes (and, checked by
        // `decode`, nothing after).
        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var expected = 0
        for e in entries {
            guard e.begin == expected else {
                throw fail(e.begin < expected ? "tensor '\(e.name)' overlaps the tensor before it" : "a gap of \(e.begin - expected) bytes before tensor '\(e.name)'")
            }
            expected = e.end
        }
        return SafeTensorsHeader(entries: entries, metadata: metadata, headerLength: json.count, dataLength: expected)
    }

    /// The largest dimension or offset a header may state (about 512 GiB).
    static let maxOffset = Int(Int32.max) * 256

    /// A JSON array of non-negative integers (no floats, no booleans, nothing out of range).
    static func integers(_ list: [Any], what: String, _ fail: (String) -> DAEError) throws(DAEError) -> [Int] {
        guard list.count <= 64 else { throw fail("\(what) has \(list.count) entries") }
        var out: [Int] = []
        for item in list {
            // JSONSerialization gives integers as NSNumbers of type i/q, floats as d, booleans as c
            guard let number = item as? NSNumber, "iqlsQLIS".contains(String(cString: number.objCType)),
                  number.int64Value >= 0, number.int64Value <= Int64(maxOffset) else {
                throw fail("\(what) must hold non-negative integers, found \(item)")
            }
            out.append(number.intValue)
        }
        return out
    }

    /// The data section's CRC-32 (zlib's), as stored in checkpoint metadata.
    public static func dataChecksum(_ bytes: [UInt8]) -> UInt32? {
        guard bytes.count >= 8 else { return nil }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(bytes.count - 8) else { return nil }
        return bytes.withUnsafeBufferPointer { crc32(bytes: UnsafeRawBufferPointer($0)[(8 + Int(headerLength))...]) }
    }

    /// The metadata key under which a checkpoint stores `headerChecksum`.
    public static let headerChecksumKey = "header_crc32"

    /// zlib's CRC-32 of a file's header in a canonical form that does not depend on the JSON's
    /// whitespace, key order or escapes, so that any edit of a metadata value, an added or removed
    /// metadata key, or a renamed, reshaped, retyped or moved tensor changes it. The canonical form
    /// is a byte string built from netstrings, ns(s) = "<byte length of s in decimal>:<s in UTF-8>,":
    ///
    ///   for each metadata entry except header_crc32, keys in UTF-8 byte order:
    ///       "m" ns(key) ns(value)
    ///   then for each tensor, names in UTF-8 byte order:
    ///       "t" ns(name) ns(dtype) ns(dims in decimal joined by ",") ns("<begin>,<end>")
    ///
    /// (netstrings, so that no value can imitate a separator). `tensors` must be in data order, as
    /// `encode` writes them and `decode` returns them: the tensors tile the data section, so each
    /// one's data_offsets are the sum of the sizes before it. A CRC guards against corruption and
    /// accidental edits only: anyone can recompute it (docs/checkpoints.md has it in Python).
    public static func headerChecksum(tensors: [SafeTensor], metadata: [String: String]) -> UInt32 {
        var offset = 0
        var entries: [SafeTensorsHeader.Entry] = []
        for t in tensors {
            entries.append(.init(name: t.name, dtype: t.dtype, shape: t.shape, begin: offset, end: offset + t.byteCount))
            offset += t.byteCount
        }
        return headerChecksum(entries: entries, metadata: metadata)
    }

    /// The same checksum from a header's own tensor table (`readHeader`), without the data.
    public static func headerChecksum(entries: [SafeTensorsHeader.Entry], metadata: [String: String]) -> UInt32 {
        func netstring(_ s: String) -> [UInt8] { Array("\(s.utf8.count):".utf8) + Array(s.utf8) + [UInt8(ascii: ",")] }
        func byteOrder(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }
        var canonical: [UInt8] = []
        for key in metadata.keys.sorted(by: byteOrder) where key != headerChecksumKey {
            canonical += [UInt8(ascii: "m")] + netstring(key) + netstring(metadata[key]!)
        }
        for e in entries.sorted(by: { byteOrder($0.name, $1.name) }) {
            canonical += [UInt8(ascii: "t")] + netstring(e.name) + netstring(e.dtype.rawValue)
                + netstring(e.shape.map(String.init).joined(separator: ",")) + netstring("\(e.begin),\(e.end)")
        }
        return canonical.withUnsafeBytes { crc32(bytes: $0[...]) }
    }

    public static func read(path: String) throws(DAEError) -> (tensors: [SafeTensor], metadata: [String: String]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DAEError.checkpoint(path: path, problem: unreadableReason(path))
        }
        return try decode([UInt8](data), path: path)
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }
}

/// Writes bytes to `path` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory. A crash at any moment leaves either the old file or the new one.
/// `crashHalfway`: the fault-injection hook of `Checkpoint.save` (FaultInjection.swift), called
/// with the path once half the bytes are written.
public func writeFileAtomically(_ bytes: [UInt8], to path: String, crashHalfway: ((String) -> Never)? = nil) throws(DAEError) {
    let directory = (path as NSString).deletingLastPathComponent
    let dir = directory.isEmpty ? "." : directory
    do {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    } catch {
        throw DAEError.write(path: path, problem: "cannot create directory \(dir)")
    }
    let temporary = (dir as NSString).appendingPathComponent(".\((path as NSString).lastPathComponent).tmp-\(getpid())")
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw DAEError.write(path: path, problem: String(cString: strerror(errno))) }
    var written = 0
    let crashAt = crashHalfway != nil
    let failure: String? = bytes.withUnsafeBytes { raw -> String? in
        while written < raw.count {
            if let crashHalfway, written >= raw.count / 2 { crashHalfway(path) }
            let n = write(fd, raw.baseAddress! + written, crashAt ? raw.count / 2 - written : raw.count - written)
            if n < 0 {
                if errno == EINTR { continue }
                return String(cString: strerror(errno))
            }
            written += n
        }
        return fsync(fd) == 0 ? nil : String(cString: strerror(errno))
    }
    close(fd)
    if let failure {
        unlink(temporary)
        throw DAEError.write(path: path, problem: failure)
    }
    guard rename(temporary, path) == 0 else {
        let message = String(cString: strerror(errno))
        unlink(temporary)
        throw DAEError.write(path: path, problem: message)
    }
    let dirFD = open(dir, O_RDONLY)
    if dirFD >= 0 { fsync(dirFD); close(dirFD) }
}

/// zlib's CRC-32 of a byte range.
public func crc32(bytes: Slice<UnsafeRawBufferPointer>) -> UInt32 {
    var crc: uLong = crc32(0, nil, 0)
    var start = bytes.startIndex
    while start < bytes.endIndex {
        let n = min(bytes.endIndex - start, 1 << 30)
        crc = crc32(crc, bytes.base.baseAddress!.advanced(by: start).assumingMemoryBound(to: Bytef.self), uInt(n))
        start += n
    }
    return UInt32(truncatingIfNeeded: crc)
}
