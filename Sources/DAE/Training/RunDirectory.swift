// The run directory as one job's property. Rank 0 of a training run holds an exclusive lock on
// <run-dir>/.lock for as long as the run lives: a second job on the same directory stops at once,
// naming the holder. The lock is flock(2)'s, which the kernel releases when the holder's process
// ends however it ends (a kill -9 included), so a crashed job never leaves a stale lock; the file
// itself stays, holding the last holder's host and pid for the message.
//
// It also tells what the directory holds, so that TrainingRun.takeRunDirectory can refuse a start
// that would lose something saved there (a fresh start over a run would mix two runs, and keep-K
// pruning, by step number, could delete one run's checkpoints in favour of the other's); what
// --overwrite may remove (only the files a run writes); and the stale temporary files of a write
// that a killed process left. The rules are in docs/run-directory.md.

import Foundation

public final class RunDirectoryLock {
    public let directory: String
    let fd: Int32

    /// Creates `directory` if needed and takes its lock, or throws naming the job that holds it.
    public init(directory: String) throws(DAEError) {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .write(path: directory, problem: "cannot create the run directory")
        }
        let path = (directory as NSString).appendingPathComponent(".lock")
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .write(path: path, problem: String(cString: strerror(errno))) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = Self.holder(fd)
            close(fd)
            throw .badFlag("--run-dir", "\(directory) is in use by another dae-dist run (\(holder)); wait for it to end, or choose another --run-dir")
        }
        // who holds it, for the message another job would print
        let text = "pid \(getpid()) on \(ProcessInfo.processInfo.hostName)\n"
        _ = ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        self.fd = fd
    }

    /// Releases the lock (also released when the process ends).
    deinit { close(fd) }

    static func holder(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = pread(fd, &buffer, buffer.count, 0)
        let text = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
        return text.isEmpty ? "holder unknown" : text
    }

    /// Whether `checkpoint` lies in this directory's checkpoints/ folder (symbolic links and
    /// relative paths resolved).
    public func owns(checkpoint: String) -> Bool {
        let folder = (checkpoint as NSString).deletingLastPathComponent
        let own = (directory as NSString).appendingPathComponent("checkpoints")
        guard let resolved = Self.realPath(folder.isEmpty ? "." : folder), let ownResolved = Self.realPath(own) else { return false }
        return resolved == ownResolved
    }

    /// The run directory a checkpoint at <run-dir>/checkpoints/step-N.safetensors belongs to.
    public static func runDirectory(ofCheckpoint path: String) -> String? {
        let folder = (path as NSString).deletingLastPathComponent
        guard (folder as NSString).lastPathComponent == "checkpoints" else { return nil }
        let run = (folder as NSString).deletingLastPathComponent
        return run.isEmpty ? "." : run
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The files that make the directory a run's, newest checkpoint first: checkpoints (readable
    /// or not), the final weights, config.json and metrics.jsonl. A directory with none of them is
    /// new (or holds only the user's own files) and a run may start afresh in it.
    public func runFiles() -> [String] {
        let checkpoints = Checkpoint.list(in: (directory as NSString).appendingPathComponent("checkpoints"))
        let others = ["model.safetensors", "config.json", "metrics.jsonl"].map { (directory as NSString).appendingPathComponent($0) }
        return checkpoints + others.filter { FileManager.default.fileExists(atPath: $0) }
    }

    /// What training afresh would replace and could not be made again: the checkpoints and the
    /// final weights.
    public func trainedState() -> [String] {
        runFiles().filter { $0.hasSuffix(".safetensors") }
    }

    /// Removes the temporary files of checkpoint and output writes that a killed process left
    /// (`.NAME.tmp-PID`, see writeFileAtomically). Only the lock's holder writes here, so any
    /// such file is stale.
    public func removeStaleTemporaries() {
        for folder in [directory, (directory as NSString).appendingPathComponent("checkpoints"),
                       (directory as NSString).appendingPathComponent("samples")] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where Self.isTemporary(name) {
                try? FileManager.default.removeItem(atPath: (folder as NSString).appendingPathComponent(name))
            }
        }
    }

    /// `.step-000000050.safetensors.tmp-4242`: a write in progress (or a killed one).
    static func isTemporary(_ name: String) -> Bool {
        guard name.hasPrefix("."), let range = name.range(of: ".tmp-", options: .backwards) else { return false }
        return !name[range.upperBound...].isEmpty && name[range.upperBound...].allSatisfy(\.isNumber)
    }

    /// --overwrite: removes the files an earlier run wrote (checkpoints, weights, records, sample
    /// grids, event files, report), then the folders it made if they are left empty. The lock and
    /// anything else the user put there, in those folders too, stay.
    public func clearEarlierRun() throws(DAEError) {
        let fm = FileManager.default
        func remove(_ path: String) throws(DAEError) {
            do { try fm.removeItem(atPath: path) } catch {
                throw .write(path: path, problem: "cannot remove it for --overwrite (\(unreadableReason(path)))")
            }
        }
        func contents(_ folder: String) -> [String] { (try? fm.contentsOfDirectory(atPath: folder)) ?? [] }
        let folders: [(name: String, written: (String) -> Bool)] = [
            ("checkpoints", { $0.hasPrefix("step-") && $0.hasSuffix(".safetensors") }),
            ("samples", { $0.hasSuffix(".png") && $0.range(of: #"^(layer\d+-|fine-tune-)?epoch-\d{3,}\.png$"#, options: .regularExpression) != nil }),
            ("tensorboard", { $0.hasPrefix("events.out.tfevents.") }),
        ]
        for (name, written) in folders {
            let folder = (directory as NSString).appendingPathComponent(name)
            for file in contents(folder) where written(file) || Self.isTemporary(file) {
                try remove((folder as NSString).appendingPathComponent(file))
            }
            if fm.fileExists(atPath: folder) && contents(folder).isEmpty { try remove(folder) }
        }
        for name in ["model.safetensors", "config.json", "metrics.jsonl", "report.html"] {
            let path = (directory as NSString).appendingPathComponent(name)
            if fm.fileExists(atPath: path) { try remove(path) }
        }
    }
}
