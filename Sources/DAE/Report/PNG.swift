// PNG files through libpng's simplified API: reading any PNG (palette, 16-bit, colour, alpha) as
// 8-bit gray or 8-bit RGB, and writing 8-bit gray or RGB. And the sample-grid layout of
// torchvision's make_grid/save_image, so grids compare with a PyTorch run's pixel for pixel.

import CPNG

public struct GrayImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]      // row-major, height * width
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height)
        self.width = width; self.height = height; self.pixels = pixels
    }
}

/// An 8-bit image of 1 (gray) or 3 (RGB) channels stored as planes, [channels, height, width]
/// (torch's CHW), the layout of `Dataset.pixels`.
public struct PlanarImage: Sendable, Equatable {
    public var channels: Int
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]
    public init(channels: Int, width: Int, height: Int, pixels: [UInt8]) {
        precondition((channels == 1 || channels == 3) && pixels.count == channels * width * height)
        self.channels = channels; self.width = width; self.height = height; self.pixels = pixels
    }

    /// The same image with `channels` planes: gray repeated into R, G and B, or colour to gray as
    /// 0.299 R + 0.587 G + 0.114 B (Rec. 601 luma), rounded.
    public func converted(to channels: Int) -> PlanarImage {
        if channels == self.channels { return self }
        let n = width * height
        if channels == 3 { return PlanarImage(channels: 3, width: width, height: height, pixels: pixels + pixels + pixels) }
        var gray = [UInt8](repeating: 0, count: n)
        for i in 0..<n { gray[i] = luma(pixels[i], pixels[n + i], pixels[2 * n + i]) }
        return PlanarImage(channels: 1, width: width, height: height, pixels: gray)
    }
}

/// Rec. 601 luma of an 8-bit colour, rounded: the gray of a colour pixel wherever dae-dist
/// converts one itself (TIFF, .npy; libpng and libjpeg use the same weights).
@inline(__always) func luma(_ r: UInt8, _ g: UInt8, _ b: UInt8, alpha: Double = 1) -> UInt8 {
    let red = 0.299 * Double(r), green = 0.587 * Double(g), blue = 0.114 * Double(b)
    let y: Double = (red + green + blue) * alpha + 0.5
    return UInt8(min(255, y))
}

/// Interleaved pixels (RGBRGB..., `stride` bytes per pixel) to planes RRR...GGG...BBB....
func planes(fromInterleaved bytes: UnsafeRawBufferPointer, pixels n: Int, stride: Int = 3) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 3 * n)
    for i in 0..<n {
        out[i] = bytes[stride * i]; out[n + i] = bytes[stride * i + 1]; out[2 * n + i] = bytes[stride * i + 2]
    }
    return out
}

public enum PNG {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    /// The largest image `decode` accepts (pixels): a guard against decompression bombs.
    public static let maxPixels = 1 << 24

    /// An 8-bit grayscale PNG of `image`.
    public static func encode(_ image: GrayImage) -> [UInt8] {
        encode(planes: image.pixels, channels: 1, width: image.width, height: image.height)
    }

    /// An 8-bit gray or RGB PNG of `image`.
    public static func encode(_ image: PlanarImage) -> [UInt8] {
        encode(planes: image.pixels, channels: image.channels, width: image.width, height: image.height)
    }

    /// An 8-bit PNG of planes [channels, height, width] (1: gray, 3: RGB).
    public static func encode(planes: [UInt8], channels: Int, width: Int, height: Int) -> [UInt8] {
        precondition((channels == 1 || channels == 3) && planes.count == channels * width * height,
                     "PNG.encode: \(planes.count) bytes are not \(channels) planes of \(width)x\(height)")
        var png = png_image()
        dae_png_image_init(&png)
        png.width = png_uint_32(width); png.height = png_uint_32(height)
        png.format = channels == 1 ? png_uint_32(PNG_FORMAT_GRAY) : png_uint_32(PNG_FORMAT_RGB)
        // libpng writes interleaved rows: RGBRGB...
        var rows = planes
        if channels == 3 {
            let n = width * height
            for i in 0..<n { rows[3 * i] = planes[i]; rows[3 * i + 1] = planes[n + i]; rows[3 * i + 2] = planes[2 * n + i] }
        }
        var size: png_alloc_size_t = 0
        return rows.withUnsafeBytes { pixels -> [UInt8] in
            // first call: the size; second: the bytes
            let sized = png_image_write_to_memory(&png, nil, &size, 0, pixels.baseAddress, 0, nil)
            precondition(sized != 0 || size > 0, "libpng could not size a \(width)x\(height) image")
            var out = [UInt8](repeating: 0, count: Int(size))
            let ok = out.withUnsafeMutableBytes { png_image_write_to_memory(&png, $0.baseAddress, &size, 0, pixels.baseAddress, 0, nil) }
            precondition(ok != 0, "libpng failed to write a \(width)x\(height) image")
            out.removeSubrange(Int(size)...)
            return out
        }
    }

    /// An 8-bit PNG of floats [channels, height, width] in [0, 1], rounded as torchvision's
    /// save_image: uint8(clamp(x * 255 + 0.5, 0, 255)).
    public static func encode(planes: [Float], channels: Int, width: Int, height: Int) -> [UInt8] {
        encode(planes: planes.map { UInt8(min(max($0 * 255 + 0.5, 0), 255)) }, channels: channels, width: width, height: height)
    }

    /// Width, height and whether the image is colour (RGB or palette), from the IHDR chunk at the
    /// start of a PNG file (its first 26 bytes at least). Nil when `bytes` do not start that way.
    static func header(_ bytes: [UInt8]) -> (width: Int, height: Int, colour: Bool)? {
        guard bytes.count >= 26, Array(bytes.prefix(8)) == signature, Array(bytes[12..<16]) == Array("IHDR".utf8) else { return nil }
        let be = { (i: Int) in Int(bytes[i]) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3]) }
        return (be(16), be(20), bytes[25] & 2 != 0)      // colour types 2, 3, 6 have bit 1 set
    }

    /// Decodes a PNG file's bytes to 8-bit gray: colour is converted to gray by libpng (sRGB
    /// luminance), palettes are expanded, transparent pixels are composited onto black, and
    /// 16-bit samples are reduced to 8 bits as sRGB values (by value, v/257, unless a gAMA or sRGB
    /// chunk says otherwise: libpng's default would take untagged 16-bit data as linear light).
    /// Errors name `path`.
    public static func decode(_ bytes: [UInt8], path: String) throws(DAEError) -> GrayImage {
        let image = try decode(bytes, path: path, channels: 1)
        return GrayImage(width: image.width, height: image.height, pixels: image.pixels)
    }

    /// Decodes a PNG file's bytes to `channels` planes of 8 bits, as `decode(_:path:)` does for
    /// gray; for 3 channels a colour PNG is read as RGB and a gray one has its plane repeated.
    public static func decode(_ bytes: [UInt8], path: String, channels: Int) throws(DAEError) -> PlanarImage {
        precondition(channels == 1 || channels == 3)
        guard bytes.count >= 8, Array(bytes.prefix(8)) == signature else {
            throw DAEError.data(path: path, problem: "not a PNG file (no PNG signature)")
        }
        var png = png_image()
        dae_png_image_init(&png)
        defer { png_image_free(&png) }
        func failure(_ what: String) -> DAEError {
            let message = withUnsafeBytes(of: png.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return DAEError.data(path: path, problem: "\(what): \(message.isEmpty ? "libpng error" : message)")
        }
        // libpng reads from `bytes` until finish_read: both calls inside one borrow of them
        let result: Result<PlanarImage, DAEError> = bytes.withUnsafeBytes { file in
            guard png_image_begin_read_from_memory(&png, file.baseAddress, file.count) != 0 else {
                return .failure(failure("cannot read the PNG header"))
            }
            let (width, height) = (Int(png.width), Int(png.height))
            guard width > 0, height > 0 else { return .failure(DAEError.data(path: path, problem: "the image is empty (\(width)x\(height))")) }
            guard width * height <= maxPixels else {
                return .failure(DAEError.data(path: path, problem: "the image is \(width)x\(height), more than the \(maxPixels) pixels dae-dist reads"))
            }
            // a gray file is read as gray and repeated: its three planes are then exactly equal
            let rgb = channels == 3 && png.format & png_uint_32(PNG_FORMAT_FLAG_COLOR) != 0
            png.format = rgb ? png_uint_32(PNG_FORMAT_RGB) : dae_png_format_gray()
            png.flags |= dae_png_flag_16bit_srgb()   // after begin_read, which sets the flags from the file
            var pixels = [UInt8](repeating: 0, count: (rgb ? 3 : 1) * width * height)
            let done = pixels.withUnsafeMutableBytes { png_image_finish_read(&png, nil, $0.baseAddress, 0, nil) }
            guard done != 0 else { return .failure(failure("cannot decode the image data (truncated or corrupt?)")) }
            if rgb {
                let planar = pixels.withUnsafeBytes { planes(fromInterleaved: $0, pixels: width * height) }
                return .success(PlanarImage(channels: 3, width: width, height: height, pixels: planar))
            }
            return .success(PlanarImage(channels: 1, width: width, height: height, pixels: pixels).converted(to: channels))
        }
        return try result.get()
    }
}

public enum Grid {
    /// Lays out equally sized images (values in [0,1], each [channels, height, width]) as
    /// torchvision's make_grid(nrow: columns, padding, pad_value 0) and rounds as save_image:
    /// uint8(clamp(x * 255 + 0.5, 0, 255)).
    public static func make(_ images: [[Float]], channels: Int = 1, height: Int, width: Int, columns: Int, padding: Int = 2) -> PlanarImage {
        let count = images.count
        let xmaps = max(1, min(columns, count)), ymaps = (count + xmaps - 1) / xmaps
        let cellH = height + padding, cellW = width + padding
        let gridW = cellW * xmaps + padding, gridH = cellH * ymaps + padding
        var pixels = [UInt8](repeating: 0, count: channels * gridW * gridH)
        for (k, image) in images.enumerated() {
            let top = (k / xmaps) * cellH + padding, left = (k % xmaps) * cellW + padding
            for c in 0..<channels {
                for y in 0..<height {
                    for x in 0..<width {
                        let v = min(max(image[(c * height + y) * width + x] * 255 + 0.5, 0), 255)
                        pixels[(c * gridH + top + y) * gridW + left + x] = UInt8(v)
                    }
                }
            }
        }
        return PlanarImage(channels: channels, width: gridW, height: gridH, pixels: pixels)
    }
}
