// One error type for everything a user can get wrong. Each case renders as a single line that
// names the file or flag and says what to do; the CLI prints it and exits non-zero.

import Foundation

public enum DAEError: Error, CustomStringConvertible, Equatable {
    /// A data file that is missing, unreadable or malformed.
    case data(path: String, problem: String)
    /// A command-line flag with a bad value.
    case badFlag(String, String)
    /// A checkpoint or weights file that cannot be used.
    case checkpoint(path: String, problem: String)
    /// Writing an output failed (disk full, permissions).
    case write(path: String, problem: String)
    /// Training diverged or hit a numeric limit.
    case numeric(String)
    /// Anything about the distributed run (launcher, ranks).
    case distributed(String)

    public var description: String {
        switch self {
        case .data(let path, let problem): return "\(path): \(problem)"
        case .badFlag(let flag, let problem): return "\(flag): \(problem)"
        case .checkpoint(let path, let problem): return "\(path): \(problem)"
        case .write(let path, let problem): return "cannot write \(path): \(problem)"
        case .numeric(let problem): return problem
        case .distributed(let problem): return problem
        }
    }
}

/// Why `path` cannot be opened for reading, in words a user can act on: missing, a dangling or
/// looping symbolic link, a folder where a file was expected, or no permission. Used by every
/// reader instead of guessing "(permissions?)".
public func unreadableReason(_ path: String) -> String {
    var link = stat()
    guard lstat(path, &link) == 0 else {
        if errno == ENOTDIR { return "no such file (a part of the path is not a folder)" }
        return errno == ENOENT ? "no such file" : String(cString: strerror(errno))
    }
    var target = stat()
    if (link.st_mode & S_IFMT) == S_IFLNK && stat(path, &target) != 0 {
        let destination = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?"
        return errno == ELOOP ? "a symbolic link that loops (-> \(destination))"
                              : "a dangling symbolic link (-> \(destination), which does not exist)"
    }
    if access(path, R_OK) != 0 { return "cannot be read: permission denied (check its mode and owner)" }
    var info = stat()
    if stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR { return "is a folder, not a file" }
    return "cannot be read"
}
