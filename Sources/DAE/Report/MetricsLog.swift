// <run-dir>/metrics.jsonl: one JSON object per line (a MetricsRecord), each with the global `step`
// it describes.
//   {"kind":"epoch","epoch":1,"step":3000,"train_loss":0.0203,"eval":{...},"samples_per_s":1950,...}
//   {"kind":"train","epoch":1,"step":100,"train_loss":0.031}          (with --log-every N)
// On resume the lines after the resume step are dropped (the resumed run writes them again), so
// the file never holds a step twice and never misses one.

import Foundation

public final class MetricsLog {
    public let path: String
    public private(set) var records: [MetricsRecord] = []

    /// Opens the log. `keepThrough`: resuming after this global step (earlier lines are kept,
    /// later ones dropped); nil for a fresh run (any old file is replaced).
    public init(path: String, keepThrough: Int?) throws(DAEError) {
        self.path = path
        if let keepThrough, let data = FileManager.default.contents(atPath: path) {
            let decoder = JSONDecoder()
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                guard let record = try? decoder.decode(MetricsRecord.self, from: Data(line.utf8)) else { continue }
                if record.step <= keepThrough { records.append(record) }
            }
        }
        try writeFileAtomically(Array(records.map { jsonLine($0) + "\n" }.joined().utf8), to: path)
    }

    public var epochRecords: [MetricsRecord] { records.filter { $0.kind == .epoch } }

    public func append(_ record: MetricsRecord) throws(DAEError) {
        records.append(record)
        guard let handle = FileHandle(forWritingAtPath: path) else { throw DAEError.write(path: path, problem: "cannot open for appending") }
        defer { try? handle.close() }
        do {
            try handle.seekToEnd()
            try handle.write(contentsOf: Data((jsonLine(record) + "\n").utf8))
        } catch {
            throw DAEError.write(path: path, problem: "\(error)")
        }
    }
}
