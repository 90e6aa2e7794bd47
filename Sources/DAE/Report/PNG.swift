// Grayscale PNG writing (8-bit, colour type 0) with zlib: the IDAT stream is zlib's compress2 at
// level 9 over scanlines that each start with filter byte 0 (none); chunk CRCs are zlib's crc32.
// And the sample-grid layout of torchvision's make_grid/save_image, so grids compare with a
// PyTorch run's pixel for pixel.

import CZlib

public struct GrayImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]      // row-major, height * width
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height)
        self.width = width; self.height = height; self.pixels = pixels
    }
}

public enum PNG {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    public static func encode(_ image: GrayImage) -> [UInt8] {
        var raw = [UInt8]()
        raw.reserveCapacity((image.width + 1) * image.height)
        for y in 0..<image.height {
            raw.append(0)
            raw.append(contentsOf: image.pixels[(y * image.width)..<((y + 1) * image.width)])
        }
        var compressedSize = compressBound(uLong(raw.count))
        var compressed = [UInt8](repeating: 0, count: Int(compressedSize))
        let status = compress2(&compressed, &compressedSize, raw, uLong(raw.count), 9)
        precondition(status == Z_OK, "zlib compress2 failed: \(status)")
        compressed.removeSubrange(Int(compressedSize)...)

        var header = [UInt8]()
        header += bigEndian(UInt32(image.width)) + bigEndian(UInt32(image.height))
        header += [8, 0, 0, 0, 0]     // bit depth 8, grayscale, deflate, adaptive filtering, no interlace
        return signature + chunk("IHDR", header) + chunk("IDAT", compressed) + chunk("IEND", [])
    }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let typeBytes = Array(type.utf8)
        let body = typeBytes + data
        let crc = body.withUnsafeBytes { crc32(bytes: $0[...]) }
        return bigEndian(UInt32(data.count)) + body + bigEndian(crc)
    }

    static func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
}

public enum Grid {
    /// Lays out equally sized images (values in [0,1]) as torchvision's make_grid(nrow: columns,
    /// padding, pad_value 0) and rounds as save_image: uint8(clamp(x * 255 + 0.5, 0, 255)).
    public static func make(_ images: [[Float]], height: Int, width: Int, columns: Int, padding: Int = 2) -> GrayImage {
        let count = images.count
        let xmaps = max(1, min(columns, count)), ymaps = (count + xmaps - 1) / xmaps
        let cellH = height + padding, cellW = width + padding
        let gridW = cellW * xmaps + padding, gridH = cellH * ymaps + padding
        var pixels = [UInt8](repeating: 0, count: gridW * gridH)
        for (k, image) in images.enumerated() {
            let top = (k / xmaps) * cellH + padding, left = (k % xmaps) * cellW + padding
            for y in 0..<height {
                for x in 0..<width {
                    let v = min(max(image[y * width + x] * 255 + 0.5, 0), 255)
                    pixels[(top + y) * gridW + left + x] = UInt8(v)
                }
            }
        }
        return GrayImage(width: gridW, height: gridH, pixels: pixels)
    }
}
