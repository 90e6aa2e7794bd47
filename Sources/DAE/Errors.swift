// One error type for everything a user can get wrong. Each case renders as a single line that
// names the file or flag and says what to do; the CLI prints it and exits non-zero.

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
