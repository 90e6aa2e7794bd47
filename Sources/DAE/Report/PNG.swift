// Grayscale PNG files through libpng's simplified API: reading any PNG (palette, 16-bit, colour,
// alpha) converted to 8-bit gray, and writing 8-bit gray. And the sample-grid layout of
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

public enum PNG {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    /// The largest image `decode` accepts (pixels): a guard against decompression bombs.
    public static let maxPixels = 1 << 24

    /// An 8-bit grayscale PNG of `image`.
    public static func encode(_ image: GrayImage) -> [UInt8] {
        var png = png_image()
        dae_png_image_init(&png)
        png.width = png_uint_32(image.width); png.height = png_uint_32(image.height)
        png.format = dae_png_format_gray()
        var size: png_alloc_size_t = 0
        return image.pixels.withUnsafeBytes { pixels -> [UInt8] in
            // first call: the size; second: the bytes
            let sized = png_image_write_to_memory(&png, nil, &size, 0, pixels.baseAddress, 0, nil)
            precondition(sized != 0 || size > 0, "libpng could not size a \(image.width)x\(image.height) image")
            var out = [UInt8](repeating: 0, count: Int(size))
            let ok = out.withUnsafeMutableBytes { png_image_write_to_memory(&png, $0.baseAddress, &size, 0, pixels.baseAddress, 0, nil) }
            precondition(ok != 0, "libpng failed to write a \(image.width)x\(image.height) image")
            out.removeSubrange(Int(size)...)
            return out
        }
    }

    /// Decodes a PNG file's bytes to 8-bit gray: colour is converted to gray by libpng (sRGB
    /// luminance), palettes are expanded, transparent pixels are composited onto black, and
    /// 16-bit samples are reduced to 8 bits as sRGB values (by value, v/257, unless a gAMA or sRGB
    /// chunk says otherwise: libpng's default would take untagged 16-bit data as linear light).
    /// Errors name `path`.
    public static func decode(_ bytes: [UInt8], path: String) throws(DAEError) -> GrayImage {
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
        let result: Result<GrayImage, DAEError> = bytes.withUnsafeBytes { file in
            guard png_image_begin_read_from_memory(&png, file.baseAddress, file.count) != 0 else {
                return .failure(failure("cannot read the PNG header"))
            }
            let (width, height) = (Int(png.width), Int(png.height))
            guard width > 0, height > 0 else { return .failure(DAEError.data(path: path, problem: "the image is empty (\(width)x\(height))")) }
            guard width * height <= maxPixels else {
                return .failure(DAEError.data(path: path, problem: "the image is \(width)x\(height), more than the \(maxPixels) pixels dae-dist reads"))
            }
            png.format = dae_png_format_gray()
            png.flags |= dae_png_flag_16bit_srgb()   // after begin_read, which sets the flags from the file
            var pixels = [UInt8](repeating: 0, count: dae_png_image_size(&png))
            let done = pixels.withUnsafeMutableBytes { png_image_finish_read(&png, nil, $0.baseAddress, 0, nil) }
            guard done != 0 else { return .failure(failure("cannot decode the image data (truncated or corrupt?)")) }
            return .success(GrayImage(width: width, height: height, pixels: pixels))
        }
        return try result.get()
    }
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
