// The run directory as one job's property. Rank 0 of a training run holds an exclusive lock on
// <run-dir>/.lock for as long as the run lives: a second job on the same directory stops at once,
// naming the holder. The lock is flock(2)'s, which the kernel releases when the holder's process
// ends however it ends (a kill -9 included), so a crashed job never leaves a stale lock; the file
// itself stays, holding the last holder's host and pid for the message.
//
// It also guards a fresh start: a run without --resume in a directory that already holds
// checkpoints or final weights would otherwise mix two runs (and keep-K pruning, by step number,
// could delete the new run's checkpoint in favour of the old run's).

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

    /// What a fresh start would collide with: the checkpoints and the final weights of an earlier run.
    public func earlierRun() -> [String] {
        let checkpoints = Checkpoint.list(in: (directory as NSString).appendingPathComponent("checkpoints"))
        let weights = (directory as NSString).appendingPathComponent("model.safetensors")
        return checkpoints + (FileManager.default.fileExists(atPath: weights) ? [weights] : [])
    }

    /// --overwrite: removes an earlier run's outputs (checkpoints, weights, records, grids, event
    /// files, report), keeping the lock and anything else the user put there.
    public func clearEarlierRun() throws(DAEError) {
        for name in ["checkpoints", "model.safetensors", "config.json", "metrics.jsonl", "samples", "tensorboard", "report.html"] {
            let path = (directory as NSString).appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: path) else { continue }
            do { try FileManager.default.removeItem(atPath: path) } catch {
                throw .write(path: path, problem: "cannot remove it for --overwrite")
            }
        }
    }
}
