// The build facts (BuildInfo) and the header-only reader: SafeTensors.readHeader validates a
// header as the full parser does, but never reads the tensor data, so a file whose data was cut
// short still shows its header while the full loader refuses it.

@testable import DAE
import Foundation
import XCTest

final class ProvenanceTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    let tensors = [SafeTensor(name: "b", shape: [2, 3], values: [1, 2, 3, 4, 5, 6]),
                   SafeTensor(name: "a", shape: [4], values: [7, 8, 9, 10]),
                   SafeTensor(name: "labels", shape: [3], values: [0, 1, 255], dtype: .u8)]
    let metadata = ["format": "test", "note": "caf\u{e9} \"quoted\""]

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = dir + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testHeaderMatchesTheFullParser() throws {
        let bytes = SafeTensors.encode(tensors, metadata: metadata)
        let path = try write(bytes, "whole.safetensors")
        let header = try SafeTensors.readHeader(path: path)
        let full = try SafeTensors.read(path: path)
        XCTAssertEqual(header.metadata, full.metadata)
        XCTAssertEqual(header.entries.map(\.name), full.tensors.map(\.name))
        XCTAssertEqual(header.entries.map(\.shape), full.tensors.map(\.shape))
        XCTAssertEqual(header.entries.map(\.dtype), [.f32, .f32, .u8])
        XCTAssertEqual(header.entries.map(\.count), [6, 4, 3])
        XCTAssertEqual(header.fileLength, bytes.count)
        XCTAssertEqual(8 + header.headerLength + header.dataLength, bytes.count)
        XCTAssertFalse(header.isTruncated)
        XCTAssertEqual(SafeTensors.headerChecksum(entries: header.entries, metadata: header.metadata),
                       SafeTensors.headerChecksum(tensors: full.tensors, metadata: full.metadata))
    }

    /// The data section cut short: the header reader still answers (and says so), the full one refuses.
    func testTruncatedDataStillGivesItsHeader() throws {
        let bytes = SafeTensors.encode(tensors, metadata: metadata)
        let path = try write(Array(bytes.dropLast(10)), "cut.safetensors")
        let header = try SafeTensors.readHeader(path: path)
        XCTAssertTrue(header.isTruncated)
        XCTAssertEqual(header.entries.map(\.name), ["b", "a", "labels"])
        XCTAssertEqual(header.metadata, metadata)
        XCTAssertThrowsError(try SafeTensors.read(path: path)) { XCTAssertTrue("\($0)".contains("truncated?"), "\($0)") }
        // no data at all
        let headerOnly = try write(Array(bytes.prefix(8 + header.headerLength)), "header-only.safetensors")
        XCTAssertEqual(try SafeTensors.readHeader(path: headerOnly).entries.count, 3)
    }

    /// A broken header is refused by both readers with the same message.
    func testBrokenHeadersAreRefusedAlike() throws {
        func file(header json: String, data: Int) -> [UInt8] {
            var text = Array(json.utf8)
            while text.count % 8 != 0 { text.append(0x20) }
            var n = UInt64(text.count).littleEndian
            return withUnsafeBytes(of: &n) { Array($0) } + text + [UInt8](repeating: 0, count: data)
        }
        let cases: [(String, [UInt8])] = [
            ("not JSON", file(header: "{nope", data: 0)),
            ("not an object", file(header: "[1, 2]", data: 0)),
            ("bad metadata", file(header: #"{"__metadata__":{"k":1}}"#, data: 0)),
            ("bad dtype", file(header: #"{"t":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#, data: 8)),
            ("wrong size", file(header: #"{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: 8)),
            ("overlap", file(header: #"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: 8)),
            ("gap", file(header: #"{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: 8)),
            ("float shape", file(header: #"{"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: 4)),
            ("short", [1, 2, 3]),
            ("long header", [0xff, 0xff, 0, 0, 0, 0, 0, 0] + Array("{}".utf8)),
        ]
        for (name, bytes) in cases {
            let path = try write(bytes, name.replacingOccurrences(of: " ", with: "-"))
            var fullError = "", headerError = ""
            XCTAssertThrowsError(try SafeTensors.read(path: path), name) { fullError = "\($0)" }
            XCTAssertThrowsError(try SafeTensors.readHeader(path: path), name) { headerError = "\($0)" }
            XCTAssertEqual(fullError, headerError, name)
            XCTAssertTrue(headerError.contains(path), headerError)
        }
    }

    func testHeaderLengthIsBounded() throws {
        var n = UInt64(SafeTensors.maxHeaderLength + 8).littleEndian
        let path = try write(withUnsafeBytes(of: &n) { Array($0) } + Array("{}".utf8), "huge")
        // the file is too short for it: refused before anything is allocated
        XCTAssertThrowsError(try SafeTensors.readHeader(path: path)) { XCTAssertTrue("\($0)".contains("exceeds"), "\($0)") }
    }

    func testMissingFileAndFolder() {
        XCTAssertThrowsError(try SafeTensors.readHeader(path: dir + "/none")) { XCTAssertTrue("\($0)".contains("no such file"), "\($0)") }
        XCTAssertThrowsError(try SafeTensors.readHeader(path: dir)) { XCTAssertTrue("\($0)".contains("is a folder"), "\($0)") }
    }

    func testBuildInfo() throws {
        let info = BuildInfo.current
        XCTAssertEqual(info.daeDist, BuildInfo.daeDistVersion)
        XCTAssertTrue(info.swift.hasPrefix("6.") || info.swift.hasPrefix("7."), info.swift)
        XCTAssertTrue(info.openblas.contains("OpenBLAS"), info.openblas)
        XCTAssertFalse(info.openblasCore.isEmpty)
        XCTAssertEqual(info.winogradTransforms, Winograd.avx512 ? "avx512" : "swift")
        XCTAssertEqual(info.metadata()["winograd_transforms"], info.winogradTransforms)
        XCTAssertTrue(["avx2", "baseline"].contains(info.updateKernels ?? ""), "\(String(describing: info.updateKernels))")
        XCTAssertEqual(info.metadata()["update_kernels"], info.updateKernels)
        XCTAssertTrue(["avx2_fma", "openblas"].contains(info.lockstepLinear ?? ""), "\(String(describing: info.lockstepLinear))")
        XCTAssertEqual(info.metadata()["lockstep_linear"], info.lockstepLinear)
        XCTAssertFalse(info.mpi.isEmpty)
        XCTAssertFalse(info.mpi.contains("\n"))
        XCTAssertTrue(info.os.hasPrefix("Linux") || info.os.hasPrefix("Darwin"), info.os)
        XCTAssertTrue(info.versionText.hasPrefix("dae-dist \(BuildInfo.daeDistVersion)\n"), info.versionText)
        XCTAssertEqual(info.metadata()["mpi"], info.mpi)
        XCTAssertNil(info.metadata(withMPI: false)["mpi"])
        XCTAssertTrue(Set(info.metadata().keys).isSubset(of: BuildInfo.metadataKeys))
        let decoded = try JSONDecoder().decode(BuildInfo.self, from: JSONEncoder().encode(info))
        XCTAssertEqual(decoded, info)
    }

    /// A config.json written before the build field existed still reads.
    func testOlderConfigWithoutBuildStillDecodes() throws {
        let old = """
        {"command":"dae-dist train","model":"ConvDenoiser","model_kind":"conv","epochs":2,"batch_size":128,"lr":0.001,
         "noise":"gaussian:0.5","loss":"mse","seed":0,"data":"data/mnist","train_samples":40,"height":28,"width":28,
         "world_size":1,"threads_per_rank":1,"reduce":"exact","micro_batch":32,"eval_every":1,"grid_columns":10,
         "checkpoint_every":0,"epoch_checkpoints":true,"keep":3,"log_every":0,"parameters":27169}
        """
        try Data(old.utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let config = try XCTUnwrap(RunConfiguration.read(directory: dir))
        XCTAssertNil(config.build)
        XCTAssertEqual(config.epochs, 2)
        XCTAssertFalse(config.rows.contains { $0.0.hasPrefix("build") })
    }
}

/// The OpenBLAS core dae-dist asks for when OpenBLAS fell back to its generic kernels.
final class BLASCoreTests: XCTestCase {
    let skylakeFlags: Set<String> = ["sse3", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]

    func testOnlyTheUnknownCPUFallbackIsReplaced() {
        XCTAssertEqual(BLASCore.upgrade(detected: "Prescott", cpuFlags: skylakeFlags), "SkylakeX")
        XCTAssertEqual(BLASCore.upgrade(detected: "Prescott", cpuFlags: ["sse3", "avx", "avx2", "fma"]), "Haswell")
        // AVX-512 F alone is not enough for SkylakeX's kernel (OpenBLAS needs BW, DQ, VL, CD too)
        XCTAssertEqual(BLASCore.upgrade(detected: "Prescott", cpuFlags: ["avx2", "fma", "avx512f"]), "Haswell")
        XCTAssertNil(BLASCore.upgrade(detected: "Prescott", cpuFlags: ["sse3", "avx"]))
        XCTAssertNil(BLASCore.upgrade(detected: "Prescott", cpuFlags: []))
        // a core OpenBLAS chose knowingly stays
        XCTAssertNil(BLASCore.upgrade(detected: "Zen", cpuFlags: skylakeFlags))
        XCTAssertNil(BLASCore.upgrade(detected: "Haswell", cpuFlags: skylakeFlags))
        XCTAssertNil(BLASCore.upgrade(detected: "SkylakeX", cpuFlags: skylakeFlags))
    }

    func testFlagsAreReadFromTheFirstCPU() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/cpuinfo"
        try "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse3 avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(BLASCore.cpuFlags(cpuinfo: path), ["fpu", "sse3", "avx2", "fma"])
        XCTAssertEqual(BLASCore.cpuFlags(cpuinfo: dir + "/missing"), [])
    }
}
