// <run-dir>/metrics.jsonl: one JSON object per line, each with the global `step` it describes.
//   {"kind":"epoch","epoch":1,"step":3000,"train_loss":0.0203,"eval":{...},"samples_per_s":1950,...}
//   {"kind":"train","epoch":1,"step":100,"train_loss":0.031}          (with --log-every N)
// On resume the lines after the resume step are dropped (the resumed run writes them again), so
// the file never holds a step twice and never misses one.

import Foundation

public final class MetricsLog {
    public let path: String
    public private(set) var records: [[String: Any]] = []

    /// Opens the log. `keepThrough`: resuming after this global step (earlier lines are kept,
    /// later ones dropped); nil for a fresh run (any old file is replaced).
    public init(path: String, keepThrough: Int?) throws(DAEError) {
        self.path = path
        if let keepThrough, let data = FileManager.default.contents(atPath: path) {
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let step = (object["step"] as? NSNumber)?.intValue else { continue }
                if step <= keepThrough { records.append(object) }
            }
        }
        try rewrite()
    }

    public var epochRecords: [[String: Any]] { records.filter { $0["kind"] as? String == "epoch" } }

    public func append(_ record: [String: Any]) throws(DAEError) {
        records.append(record)
        let line = Self.json(record) + "\n"
        guard let handle = FileHandle(forWritingAtPath: path) else { throw DAEError.write(path: path, problem: "cannot open for appending") }
        defer { try? handle.close() }
        do {
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(line.utf8))
        } catch {
            throw DAEError.write(path: path, problem: "\(error)")
        }
    }

    func rewrite() throws(DAEError) {
        try writeFileAtomically(Array(records.map { Self.json($0) + "\n" }.joined().utf8), to: path)
    }

    public static func json(_ object: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    public static func dictionary(_ m: EvalMetrics) -> [String: Any] {
        ["images": m.images, "mse": m.mse, "psnr": m.psnr, "ssim": m.ssim,
         "noisy_mse": m.noisyMSE, "noisy_psnr": m.noisyPSNR, "noisy_ssim": m.noisySSIM]
    }
}
