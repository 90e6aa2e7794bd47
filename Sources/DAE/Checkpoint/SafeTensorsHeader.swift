// A safetensors file's header without its data: `SafeTensors.readHeader` reads the 8-byte length
// and the JSON header only (validated by the same `parseHeader` as the full `decode`), so that
// `dae-dist info` describes a file of any size, or one whose data section was cut short, at once.

import Foundation

/// A safetensors file's header alone: what `SafeTensors.readHeader` gives without the data.
public struct SafeTensorsHeader: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var dtype: SafeTensor.DType
        public var shape: [Int]
        public var begin: Int, end: Int          // byte offsets in the data section
        public var count: Int { shape.reduce(1, *) }
    }
    public var entries: [Entry]                  // in data order
    public var metadata: [String: String]
    public var headerLength: Int                 // N, the JSON header's bytes (padding included)
    public var dataLength: Int                   // the bytes of data the tensors need
    public var fileLength: Int? = nil            // the file's size, when read from a file
    /// The file is shorter than its header says (a copy cut short): the data cannot be loaded.
    public var isTruncated: Bool { fileLength.map { $0 < 8 + headerLength + dataLength } ?? false }
}

extension SafeTensors {
    /// Reads only a file's first 8 + N bytes (the length and the JSON header) and validates the
    /// header as `decode` does, without reading the tensor data: `dae-dist info` on a file of any
    /// size. `fileLength` in the result tells whether the data section is all there.
    public static func readHeader(path: String) throws(DAEError) -> SafeTensorsHeader {
        func fail(_ problem: String) -> DAEError { .checkpoint(path: path, problem: problem) }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { throw fail(unreadableReason(path)) }
        guard !isFolder.boolValue else { throw fail("is a folder, not a safetensors file") }
        guard let file = FileHandle(forReadingAtPath: path) else { throw fail(unreadableReason(path)) }
        defer { try? file.close() }
        let fileLength: Int
        let prefix: Data
        do {
            fileLength = Int(try file.seekToEnd())
            try file.seek(toOffset: 0)
            prefix = try file.read(upToCount: 8) ?? Data()
        } catch {
            throw fail("cannot be read (\(error.localizedDescription))")
        }
        guard prefix.count == 8 else { throw fail("not a safetensors file (\(prefix.count) bytes, too short for a header)") }
        var headerLength: UInt64 = 0
        for (i, byte) in prefix.enumerated() { headerLength |= UInt64(byte) << (8 * UInt64(i)) }
        try checkHeaderLength(headerLength, available: fileLength - 8, fail)
        let json: Data
        do {
            json = try file.read(upToCount: Int(headerLength)) ?? Data()
        } catch {
            throw fail("cannot be read (\(error.localizedDescription))")
        }
        guard json.count == Int(headerLength) else { throw fail("truncated: the header ends after \(json.count) of its \(headerLength) bytes") }
        var header = try parseHeader([UInt8](json)[...], dataCount: nil, path: path)
        header.fileLength = fileLength
        return header
    }
}
