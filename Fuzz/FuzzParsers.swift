// libFuzzer target for the parsers of untrusted files: safetensors (checkpoints, weights), NumPy
// .npy arrays, IDX (data) and the gzip path in front of it. Any crash, trap, hang or sanitizer report is a bug;
// errors thrown are the expected outcome. Built and run by Fuzz/run (not part of the package:
// -sanitize=fuzzer replaces main).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzParsers(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let (tensors, metadata) = try? SafeTensors.decode(bytes, path: "fuzz.safetensors") {
        _ = SafeTensors.headerChecksum(tensors: tensors, metadata: metadata)
    }
    _ = SafeTensors.dataChecksum(bytes)
    _ = try? NPY.parseImages(bytes, path: "fuzz.npy")
    _ = try? IDX.parse(bytes, path: "fuzz-images", expectedMagic: IDX.imagesMagic)
    _ = try? IDX.parse(bytes, path: "fuzz-labels", expectedMagic: IDX.labelsMagic)
    if size >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B {
        if let inflated = try? IDX.gunzip(bytes, path: "fuzz.gz", expectedMagic: IDX.imagesMagic) {
            _ = try? IDX.parse(inflated, path: "fuzz.gz", expectedMagic: IDX.imagesMagic)
        }
    }
    return 0
}
