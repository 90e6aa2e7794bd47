// TensorBoard event files, written by hand: a TFRecord stream of `Event` protocol buffers.
//
//   record  = uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
//   masked  = ((crc >> 15) | (crc << 17)) + 0xa282ead8
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5;
//             SessionLog session_log = 7 }
//   Summary { repeated Value value = 1 }   Value { string tag = 1; float simple_value = 2; Image image = 4 }
//   Image   { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4 }
//   SessionLog { SessionStatus status = 1 }  (START = 1: TensorBoard then drops points at or after
//             this step from earlier sessions, which is what a resumed run needs)

import Foundation

public final class TensorBoardWriter {
    public let path: String
    let handle: FileHandle

    /// Opens a new event file in `directory` (TensorBoard reads every `*tfevents*` file there).
    public init(directory: String) throws(DAEError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw DAEError.write(path: directory, problem: "cannot create the TensorBoard folder")
        }
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        path = (directory as NSString).appendingPathComponent(
            String(format: "events.out.tfevents.%010d.%@.%d", Int(Date().timeIntervalSince1970), host, getpid()))
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw DAEError.write(path: path, problem: "cannot create the event file")
        }
        self.handle = handle
        var event = Proto()
        event.double(1, Date().timeIntervalSince1970)
        event.string(3, "brain.Event:2")
        try write(event.bytes)
    }

    deinit { try? handle.close() }

    /// A scalar point.
    public func scalar(_ tag: String, _ value: Double, step: Int) throws(DAEError) {
        var value_ = Proto()
        value_.string(1, tag)
        value_.float(2, Float(value))
        try summary(value_, step: step)
    }

    /// A PNG image.
    public func image(_ tag: String, png: [UInt8], width: Int, height: Int, channels: Int = 1, step: Int) throws(DAEError) {
        var image = Proto()
        image.varint(1, UInt64(height))
        image.varint(2, UInt64(width))
        image.varint(3, UInt64(channels))        // colorspace: 1 grayscale, 3 RGB
        image.bytes(4, png)
        var value = Proto()
        value.string(1, tag)
        value.message(4, image)
        try summary(value, step: step)
    }

    /// Marks a (re)start at `step`: TensorBoard discards older points from this step on.
    public func sessionStart(step: Int) throws(DAEError) {
        var log = Proto()
        log.varint(1, 1)                         // SessionLog.START
        var event = Proto()
        event.double(1, Date().timeIntervalSince1970)
        event.varint(2, UInt64(step))
        event.message(7, log)
        try write(event.bytes)
    }

    func summary(_ value: Proto, step: Int) throws(DAEError) {
        var summary = Proto()
        summary.message(1, value)
        var event = Proto()
        event.double(1, Date().timeIntervalSince1970)
        event.varint(2, UInt64(step))
        event.message(5, summary)
        try write(event.bytes)
    }

    func write(_ data: [UInt8]) throws(DAEError) {
        var record = [UInt8]()
        let length = littleEndian(UInt64(data.count))
        record += length
        record += littleEndian(CRC32C.masked(length))
        record += data
        record += littleEndian(CRC32C.masked(data))
        do {
            try handle.write(contentsOf: Data(record))
        } catch {
            throw DAEError.write(path: path, problem: "\(error)")
        }
    }

    func littleEndian<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
}

/// Just enough protocol-buffer encoding for events: varints, fixed 32/64, length-delimited fields.
struct Proto {
    var bytes: [UInt8] = []

    mutating func rawVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func key(_ field: Int, _ wire: UInt64) { rawVarint(UInt64(field) << 3 | wire) }
    mutating func varint(_ field: Int, _ v: UInt64) { key(field, 0); rawVarint(v) }
    mutating func double(_ field: Int, _ v: Double) { key(field, 1); withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
    mutating func float(_ field: Int, _ v: Float) { key(field, 5); withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
    mutating func bytes(_ field: Int, _ data: [UInt8]) { key(field, 2); rawVarint(UInt64(data.count)); bytes += data }
    mutating func string(_ field: Int, _ s: String) { bytes(field, Array(s.utf8)) }
    mutating func message(_ field: Int, _ m: Proto) { bytes(field, m.bytes) }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord framing requires; zlib only
/// has the other CRC-32.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    public static func checksum(_ data: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    public static func masked(_ data: [UInt8]) -> UInt32 {
        let crc = checksum(data)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
