// What the end-to-end tests share: the built dae-dist binary, run as a user would run it (from the
// repository root), a scratch directory, and the repository root.

import Foundation

enum DAEDist {
    /// The dae-dist binary built next to this test bundle.
    static let binary: String = {
        let here = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        return here.deletingLastPathComponent().appendingPathComponent("dae-dist").path
    }()

    struct Result { var status: Int32; var stdout: String; var stderr: String }

    /// Runs dae-dist with `arguments` in the repository root and waits for it.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: repositoryRoot)
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }
}

/// A scratch directory; the caller removes it.
func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "dae-dist-e2e-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The repository root (this file is Tests/EndToEndTests/Helpers.swift).
let repositoryRoot: String = {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
}()
