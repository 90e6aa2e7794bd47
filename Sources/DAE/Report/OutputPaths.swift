// Output paths checked before anything is written. An output must not be a file the command
// reads (its checkpoint, data or images), however the path is spelled (./x, a relative path, a
// symbolic or hard link), nor a trained model's file: writing there would destroy what a run
// saved. Every command that writes files asks here, so they all refuse the same way.

import Foundation

public struct OutputPaths {
    /// The files read and the outputs claimed so far, by identity: who has each.
    var readers: [String: (what: String, path: String)] = [:]
    var writers: [String: String] = [:]

    /// The files the command reads: what each is in a message ("the --checkpoint file", "the
    /// input") and its path.
    public init(reading inputs: [(what: String, path: String)]) {
        for input in inputs { readers[Self.identity(input.path)] = input }
    }

    /// Claims `path` (given with or made from `flag`) as the output of `owner` (named in the
    /// message should another output claim it too), refusing it when it is a file the command
    /// reads, an output already claimed, or an existing file that must not be replaced
    /// (`protectedKind`). Claim every output before writing any.
    public mutating func claim(_ path: String, flag: String, for owner: String = "") throws(DAEError) {
        let target = Self.identity(path)
        if let input = readers[target] {
            let same = input.path == path ? "" : " (the same file)"
            throw DAEError.badFlag(flag, "\(path) is \(input.what) \(input.path)\(same), which this command reads; writing it would destroy it: choose another output path")
        }
        if let first = writers[target] {
            throw DAEError.badFlag(flag, "\(path) would be written twice, for \(first) and for \(owner); rename one of them or write them to separate folders")
        }
        if let kind = Self.protectedKind(path) {
            throw DAEError.badFlag(flag, "\(path) is an existing \(kind); writing it would destroy it: choose another output path")
        }
        writers[target] = owner
    }

    /// One output of a command: `claim` with the files it reads.
    public static func check(_ path: String, flag: String, reading inputs: [(what: String, path: String)]) throws(DAEError) {
        var outputs = OutputPaths(reading: inputs)
        try outputs.claim(path, flag: flag)
    }

    /// What identifies the file `path` names: its device and inode when it exists (every spelling
    /// and link of one file gives the same), otherwise its canonical absolute path, so that two
    /// outputs not yet written that would land on one file are told apart from two that would not.
    public static func identity(_ path: String) -> String {
        var info = stat()
        if stat(path, &info) == 0 { return "file \(info.st_dev):\(info.st_ino)" }
        return "path " + canonical(path)
    }

    /// `path` made absolute, with its longest existing leading part resolved by realpath
    /// (symbolic links, `.` and `..`) and the rest, which does not exist yet, appended as given.
    static func canonical(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var head = absolute.split(separator: "/").map(String.init), tail: [String] = []
        while true {
            if let resolved = realpath("/" + head.joined(separator: "/"), nil) {
                defer { free(resolved) }
                let base = String(cString: resolved)
                return tail.isEmpty ? base : (base == "/" ? "" : base) + "/" + tail.joined(separator: "/")
            }
            // realpath("/") always succeeds, so head is never emptied here
            tail.insert(head.removeLast(), at: 0)
        }
    }

    /// What an existing file at `path` is when it must not be replaced: a dae-dist checkpoint or
    /// weights file, or another safetensors file (by its header, or by its name when the header
    /// cannot be read); nil for anything else.
    static func protectedKind(_ path: String) -> String? {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue else { return nil }
        guard let header = try? SafeTensors.readHeader(path: path) else {
            return path.lowercased().hasSuffix(".safetensors") ? "safetensors file" : nil
        }
        switch header.metadata["format"] {
        case Checkpoint.format: return "dae-dist checkpoint"
        case "dae-dist weights": return "dae-dist weights file"
        case "dae-dist features": return nil
        default: return "safetensors file (a model's weights?)"
        }
    }
}
