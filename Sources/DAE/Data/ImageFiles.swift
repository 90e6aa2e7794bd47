// Image files of a --data folder as 8-bit gray or RGB: PNG (libpng, PNG.swift), JPEG
// (libjpeg-turbo's TurboJPEG API) and TIFF (libtiff: 8- or 16-bit, gray, palette or colour, every
// page of a multi-page file). The kind is decided by the file's first bytes, not its name.
//
// Two passes. `headers` reads only what gives each image's size and whether it is colour (PNG's
// IHDR chunk, the JPEG frame header, each TIFF directory), so a folder can be measured before
// anything is decoded. `decode` then makes 1 or 3 planes per image:
//   - gray (1): colour becomes its luma: libpng's sRGB luminance for PNG, JPEG's own Y channel,
//     and for TIFF 0.299 R + 0.587 G + 0.114 B (the same Rec. 601 weights);
//   - RGB (3): a colour image's R, G, B planes; a gray image's plane repeated three times.
// Alpha is composited onto black (as PNG's reader does), palettes are expanded, and 16-bit
// samples are reduced to 8 bits (v/257 for PNG and TIFF): the dataset holds bytes. Headers tell
// the bit depth, so that loaders can warn about 16-bit files (sixteenBitNote).

import CPNG
import CTIFF
import CTurboJPEG
import Foundation

/// What a file's header says about one of its images.
public struct ImageHeader: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// RGB or palette (true) or gray (false); alpha does not count.
    public let colour: Bool
    /// Bits per sample in the file: 8 for most, 16 for a 16-bit PNG or TIFF (reduced to 8 bits
    /// when decoded), less for a packed gray or palette image.
    public let bitDepth: Int
    public init(width: Int, height: Int, colour: Bool, bitDepth: Int = 8) {
        self.width = width; self.height = height; self.colour = colour; self.bitDepth = bitDepth
    }
}

public enum ImageFile {
    /// File name endings a folder is searched for (lower case).
    public static let extensions = ["png", "jpg", "jpeg", "tif", "tiff"]

    enum Kind { case png, jpeg, tiff }

    static func kind(_ bytes: [UInt8], path: String) throws(DAEError) -> Kind {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return .png }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if bytes.starts(with: [0x49, 0x49, 0x2A, 0x00]) || bytes.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { return .tiff }
        throw DAEError.data(path: path, problem: "not a PNG, JPEG or TIFF image (unknown first bytes)")
    }

    static func readAll(_ path: String) throws(DAEError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DAEError.data(path: path, problem: unreadableReason(path))
        }
        return [UInt8](data)
    }

    /// The size and colour of every image in the file (one, or a TIFF's pages), from its headers
    /// only. Sizes beyond `PNG.maxPixels` and empty images are refused here, before any decoding.
    public static func headers(path: String) throws(DAEError) -> [ImageHeader] {
        let start = try readFilePrefix(path, count: 1 << 16)
        let found: [ImageHeader]
        switch try kind(start, path: path) {
        case .png:
            guard let h = PNG.header(start) else { throw DAEError.data(path: path, problem: "cannot read the PNG header (truncated or corrupt?)") }
            found = [ImageHeader(width: h.width, height: h.height, colour: h.colour, bitDepth: Int(start[24]))]   // IHDR's bit depth
        case .jpeg:
            // the frame header usually sits in the first 64 KiB; after large metadata, read on
            if let header = try jpegHeader(start, path: path, final: false) { found = [header] }
            else { found = [try jpegHeader(try readAll(path), path: path, final: true)!] }
        case .tiff:
            found = try tiffHeaders(path: path)
        }
        for h in found { try checkSize(h.width, h.height, path: path) }
        return found
    }

    /// Every image in the file at `path` (one, or a TIFF's pages), as 8-bit gray.
    public static func decodeGray(path: String) throws(DAEError) -> [GrayImage] {
        try decode(path: path, channels: 1).map { GrayImage(width: $0.width, height: $0.height, pixels: $0.pixels) }
    }

    /// Every image in the file at `path` (one, or a TIFF's pages), as `channels` (1 or 3) planes.
    public static func decode(path: String, channels: Int) throws(DAEError) -> [PlanarImage] {
        precondition(channels == 1 || channels == 3)
        let bytes = try readAll(path)
        switch try kind(bytes, path: path) {
        case .png: return [try PNG.decode(bytes, path: path, channels: channels)]
        case .jpeg: return [try decodeJPEG(bytes, path: path, channels: channels)]
        case .tiff: return try decodeTIFF(path: path, channels: channels)
        }
    }

    /// The warning for the files of `paths` that hold 16-bit images, out of `total` files of
    /// `what` ("the train split", "the input"), or nil when there are none: they are reduced to
    /// 8 bits (v/257), so an image that uses a small part of the 16-bit range (values 0-300, say)
    /// loads nearly black. Names the first file and, when it can be read cheaply (a PNG, a TIFF
    /// in strips), the range of its values.
    public static func sixteenBitNote(_ paths: [String], of total: Int, what: String) -> String? {
        guard let first = paths.first else { return nil }
        let range = sixteenBitRange(path: first).map { ", values \($0.lowerBound)-\($0.upperBound) of 0-65535" } ?? ""
        let files = paths.count == 1 ? "1 file" : "\(paths.count) files"
        return "warning: \(files) of \(total) in \(what) hold\(paths.count == 1 ? "s" : "") 16-bit images (e.g. \(first)\(range)); "
            + "they are reduced to 8 bits (v/257), so values in a small part of the 16-bit range load dark: scale them to 8 bits first to keep their contrast"
    }

    /// The warning `sixteenBitNote` gives for the image files `paths` (denoise's inputs, say),
    /// from their headers; nil when none is 16-bit or a header cannot be read (the decoder then
    /// names the problem).
    public static func sixteenBitNote(inputs paths: [String], what: String) -> String? {
        let deep = paths.filter { path in ((try? headers(path: path)) ?? []).contains { $0.bitDepth > 8 } }
        return sixteenBitNote(deep, of: paths.count, what: what)
    }

    /// The smallest and largest 16-bit sample of a PNG or of a TIFF's first page stored in
    /// strips (every channel alike), or nil for anything else.
    static func sixteenBitRange(path: String) -> ClosedRange<Int>? {
        guard let bytes = try? readAll(path), let kind = try? kind(bytes, path: path) else { return nil }
        var low = Int.max, high = Int.min
        let note = { (v: UInt16) in low = min(low, Int(v)); high = max(high, Int(v)) }
        switch kind {
        case .png:
            var png = png_image()
            dae_png_image_init(&png)
            defer { png_image_free(&png) }
            let ok: Bool = bytes.withUnsafeBytes { file in
                guard png_image_begin_read_from_memory(&png, file.baseAddress, file.count) != 0 else { return false }
                // linear 16-bit is what an untagged 16-bit file holds: its values come out unchanged
                png.format = png_uint_32(PNG_FORMAT_FLAG_LINEAR) | (png.format & png_uint_32(PNG_FORMAT_FLAG_COLOR))
                var samples = [UInt16](repeating: 0, count: Int(png.width) * Int(png.height) * (png.format & png_uint_32(PNG_FORMAT_FLAG_COLOR) != 0 ? 3 : 1))
                guard samples.withUnsafeMutableBytes({ png_image_finish_read(&png, nil, $0.baseAddress, 0, nil) }) != 0 else { return false }
                for v in samples { note(v) }
                return true
            }
            guard ok else { return nil }
        case .tiff:
            guard let tiff = try? openTIFF(path) else { return nil }
            defer { TIFFClose(tiff) }
            guard tiffField16(tiff, TIFFTAG_BITSPERSAMPLE) == 16, TIFFIsTiled(tiff) == 0 else { return nil }
            var strip = [UInt16](repeating: 0, count: (Int(TIFFStripSize(tiff)) + 1) / 2)
            for s in 0..<TIFFNumberOfStrips(tiff) {
                let read = strip.withUnsafeMutableBytes { TIFFReadEncodedStrip(tiff, s, $0.baseAddress, tmsize_t($0.count)) }
                guard read > 0 else { return nil }
                for v in strip[0 ..< Int(read) / 2] { note(v) }    // libtiff gives 16-bit samples in the machine's order
            }
        case .jpeg:
            return nil
        }
        return low <= high ? low...high : nil
    }

    static func checkSize(_ width: Int, _ height: Int, path: String) throws(DAEError) {
        guard width > 0, height > 0 else { throw DAEError.data(path: path, problem: "the image is empty (\(width)x\(height))") }
        guard width * height <= PNG.maxPixels else {
            throw DAEError.data(path: path, problem: "the image is \(width)x\(height), more than the \(PNG.maxPixels) pixels dae-dist reads")
        }
    }

    static func jpegFailure(_ handle: tjhandle, _ what: String, path: String) -> DAEError {
        DAEError.data(path: path, problem: "\(what): \(tjGetErrorStr2(handle).map { String(cString: $0) } ?? "libjpeg-turbo error")")
    }

    /// The JPEG's size and colour space from the bytes given; nil (unless `final`) when they end
    /// before the frame header.
    static func jpegHeader(_ bytes: [UInt8], path: String, final: Bool) throws(DAEError) -> ImageHeader? {
        guard let handle = tjInitDecompress() else { throw DAEError.data(path: path, problem: "libjpeg-turbo could not start") }
        defer { tjDestroy(handle) }
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let status = bytes.withUnsafeBufferPointer {
            tjDecompressHeader3(handle, $0.baseAddress, UInt($0.count), &width, &height, &subsampling, &colorspace)
        }
        // a file cut before its frame header can "succeed" with a size of 0x0: truncated, not empty
        guard status == 0, width > 0, height > 0 else {
            if !final { return nil }
            if status != 0 { throw jpegFailure(handle, "cannot read the JPEG header (truncated or corrupt?)", path: path) }
            throw DAEError.data(path: path, problem: "truncated or corrupt JPEG: no frame header with the image's size (\(bytes.count) bytes)")
        }
        return ImageHeader(width: Int(width), height: Int(height), colour: colorspace != Int32(TJCS_GRAY.rawValue))
    }

    static func decodeJPEG(_ bytes: [UInt8], path: String, channels: Int) throws(DAEError) -> PlanarImage {
        guard let handle = tjInitDecompress() else { throw DAEError.data(path: path, problem: "libjpeg-turbo could not start") }
        defer { tjDestroy(handle) }
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let header = bytes.withUnsafeBufferPointer {
            tjDecompressHeader3(handle, $0.baseAddress, UInt($0.count), &width, &height, &subsampling, &colorspace)
        }
        guard header == 0 else { throw jpegFailure(handle, "cannot read the JPEG header (truncated or corrupt?)", path: path) }
        guard width > 0, height > 0 else {
            throw DAEError.data(path: path, problem: "truncated or corrupt JPEG: no frame header with the image's size (\(bytes.count) bytes)")
        }
        try checkSize(Int(width), Int(height), path: path)
        // a gray JPEG is decoded as gray and repeated: its three planes are then exactly equal
        let rgb = channels == 3 && colorspace != Int32(TJCS_GRAY.rawValue)
        let n = Int(width) * Int(height)
        var pixels = [UInt8](repeating: 0, count: (rgb ? 3 : 1) * n)
        let status = bytes.withUnsafeBufferPointer { jpeg in
            pixels.withUnsafeMutableBufferPointer { out in
                tjDecompress2(handle, jpeg.baseAddress, UInt(jpeg.count), out.baseAddress, width, 0, height,
                              Int32(rgb ? TJPF_RGB.rawValue : TJPF_GRAY.rawValue), TJFLAG_ACCURATEDCT)
            }
        }
        // a warning (a truncated file decodes partly, the rest gray) is an error here too
        guard status == 0 else { throw jpegFailure(handle, "cannot decode the image data (truncated or corrupt?)", path: path) }
        if rgb {
            let planar = pixels.withUnsafeBytes { planes(fromInterleaved: $0, pixels: n) }
            return PlanarImage(channels: 3, width: Int(width), height: Int(height), pixels: planar)
        }
        return PlanarImage(channels: 1, width: Int(width), height: Int(height), pixels: pixels).converted(to: channels)
    }

    /// A 16-bit TIFF field (TIFFGetField is variadic, which Swift cannot call; its va_list form
    /// it can).
    static func tiffField16(_ tiff: OpaquePointer, _ tag: Int32) -> UInt16? {
        var value: UInt16 = 0
        let found = withUnsafeMutablePointer(to: &value) { pointer in
            withVaList([pointer]) { TIFFVGetField(tiff, UInt32(tag), $0) }
        }
        return found != 0 ? value : nil
    }

    /// Whether the current TIFF directory is colour: its photometric interpretation is neither
    /// min-is-black nor min-is-white (RGB, palette, YCbCr, CMYK, ...), or, without one, it has
    /// three samples or more per pixel.
    static func tiffIsColour(_ tiff: OpaquePointer) -> Bool {
        if let photometric = tiffField16(tiff, TIFFTAG_PHOTOMETRIC) {
            return Int32(photometric) != PHOTOMETRIC_MINISBLACK && Int32(photometric) != PHOTOMETRIC_MINISWHITE
        }
        return (tiffField16(tiff, TIFFTAG_SAMPLESPERPIXEL) ?? 1) >= 3
    }

    static func openTIFF(_ path: String) throws(DAEError) -> OpaquePointer {
        dae_tiff_quiet()
        guard let tiff = TIFFOpen(path, "r") else {
            throw DAEError.data(path: path, problem: "cannot be read as a TIFF file (truncated or corrupt?)")
        }
        return tiff
    }

    static func tiffHeaders(path: String) throws(DAEError) -> [ImageHeader] {
        let tiff = try openTIFF(path)
        defer { TIFFClose(tiff) }
        var pages: [ImageHeader] = []
        repeat {
            var width: UInt32 = 0, height: UInt32 = 0
            guard dae_tiff_size(tiff, &width, &height) != 0 else {
                throw DAEError.data(path: path, problem: "page \(pages.count + 1) has no image size")
            }
            pages.append(ImageHeader(width: Int(width), height: Int(height), colour: tiffIsColour(tiff),
                                     bitDepth: Int(tiffField16(tiff, TIFFTAG_BITSPERSAMPLE) ?? 1)))
        } while TIFFReadDirectory(tiff) != 0
        return pages
    }

    static func decodeTIFF(path: String, channels: Int) throws(DAEError) -> [PlanarImage] {
        let tiff = try openTIFF(path)
        defer { TIFFClose(tiff) }
        var pages: [PlanarImage] = []
        repeat {
            var width: UInt32 = 0, height: UInt32 = 0
            guard dae_tiff_size(tiff, &width, &height) != 0 else {
                throw DAEError.data(path: path, problem: "page \(pages.count + 1) has no image size")
            }
            try checkSize(Int(width), Int(height), path: path)
            var raster = [UInt32](repeating: 0, count: Int(width) * Int(height))   // ABGR, one per pixel
            let ok = raster.withUnsafeMutableBufferPointer {
                TIFFReadRGBAImageOriented(tiff, width, height, $0.baseAddress, Int32(ORIENTATION_TOPLEFT), 0)
            }
            guard ok != 0 else { throw DAEError.data(path: path, problem: "cannot decode page \(pages.count + 1) (truncated, corrupt or an unsupported encoding?)") }
            let n = raster.count
            let rgb = channels == 3 && tiffIsColour(tiff)
            var pixels = [UInt8](repeating: 0, count: (rgb ? 3 : 1) * n)
            for (i, abgr) in raster.enumerated() {
                let r = UInt8(abgr & 0xFF), g = UInt8((abgr >> 8) & 0xFF), b = UInt8((abgr >> 16) & 0xFF)
                let alpha = Double(abgr >> 24) / 255
                if rgb {
                    for (c, v) in [r, g, b].enumerated() { pixels[c * n + i] = UInt8(min(255, Double(v) * alpha + 0.5)) }
                } else {
                    pixels[i] = luma(r, g, b, alpha: alpha)
                }
            }
            pages.append(PlanarImage(channels: 1 + (rgb ? 2 : 0), width: Int(width), height: Int(height), pixels: pixels).converted(to: channels))
        } while TIFFReadDirectory(tiff) != 0
        return pages
    }
}
