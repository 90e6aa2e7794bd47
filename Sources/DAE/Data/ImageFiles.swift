// Image files of a --data folder as 8-bit gray: PNG (libpng, PNG.swift), JPEG (libjpeg-turbo's
// TurboJPEG API) and TIFF (libtiff: 8- or 16-bit, gray, palette or colour, every page of a
// multi-page file). The kind is decided by the file's first bytes, not its name. Colour becomes
// gray as its luma: JPEG's own Y channel, and for TIFF 0.299 R + 0.587 G + 0.114 B (the same
// Rec. 601 weights), alpha composited onto black as PNG's reader does.

import CTIFF
import CTurboJPEG
import Foundation

public enum ImageFile {
    /// File name endings a folder is searched for (lower case).
    public static let extensions = ["png", "jpg", "jpeg", "tif", "tiff"]

    /// Every image in the file at `path` (one, or a TIFF's pages), as 8-bit gray.
    public static func decodeGray(path: String) throws(DAEError) -> [GrayImage] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DAEError.data(path: path, problem: "cannot be read (permissions?)")
        }
        let bytes = [UInt8](data)
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return [try PNG.decode(bytes, path: path)] }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return [try decodeJPEG(bytes, path: path)] }
        if bytes.starts(with: [0x49, 0x49, 0x2A, 0x00]) || bytes.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) {
            return try decodeTIFF(path: path)
        }
        throw DAEError.data(path: path, problem: "not a PNG, JPEG or TIFF image (unknown first bytes)")
    }

    static func checkSize(_ width: Int, _ height: Int, path: String) throws(DAEError) {
        guard width > 0, height > 0 else { throw DAEError.data(path: path, problem: "the image is empty (\(width)x\(height))") }
        guard width * height <= PNG.maxPixels else {
            throw DAEError.data(path: path, problem: "the image is \(width)x\(height), more than the \(PNG.maxPixels) pixels dae-dist reads")
        }
    }

    static func decodeJPEG(_ bytes: [UInt8], path: String) throws(DAEError) -> GrayImage {
        guard let handle = tjInitDecompress() else { throw DAEError.data(path: path, problem: "libjpeg-turbo could not start") }
        defer { tjDestroy(handle) }
        func failure(_ what: String) -> DAEError {
            DAEError.data(path: path, problem: "\(what): \(tjGetErrorStr2(handle).map { String(cString: $0) } ?? "libjpeg-turbo error")")
        }
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let header = bytes.withUnsafeBufferPointer {
            tjDecompressHeader3(handle, $0.baseAddress, UInt($0.count), &width, &height, &subsampling, &colorspace)
        }
        guard header == 0 else { throw failure("cannot read the JPEG header") }
        try checkSize(Int(width), Int(height), path: path)
        var pixels = [UInt8](repeating: 0, count: Int(width) * Int(height))
        let status = bytes.withUnsafeBufferPointer { jpeg in
            pixels.withUnsafeMutableBufferPointer { out in
                tjDecompress2(handle, jpeg.baseAddress, UInt(jpeg.count), out.baseAddress, width, 0, height,
                              Int32(TJPF_GRAY.rawValue), TJFLAG_ACCURATEDCT)
            }
        }
        // a warning (a truncated file decodes partly, the rest gray) is an error here too
        guard status == 0 else { throw failure("cannot decode the image data (truncated or corrupt?)") }
        return GrayImage(width: Int(width), height: Int(height), pixels: pixels)
    }

    static func decodeTIFF(path: String) throws(DAEError) -> [GrayImage] {
        dae_tiff_quiet()
        guard let tiff = TIFFOpen(path, "r") else {
            throw DAEError.data(path: path, problem: "cannot be read as a TIFF file (truncated or corrupt?)")
        }
        defer { TIFFClose(tiff) }
        var pages: [GrayImage] = []
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
            let pixels = raster.map { abgr -> UInt8 in
                let r = Double(abgr & 0xFF), g = Double((abgr >> 8) & 0xFF), b = Double((abgr >> 16) & 0xFF)
                let alpha = Double(abgr >> 24) / 255
                return UInt8(min(255, (0.299 * r + 0.587 * g + 0.114 * b) * alpha + 0.5))
            }
            pages.append(GrayImage(width: Int(width), height: Int(height), pixels: pixels))
        } while TIFFReadDirectory(tiff) != 0
        return pages
    }
}
