// dae-dist info: what a checkpoint or weights file holds, from its header alone. Only the 8-byte
// length and the JSON header are read (SafeTensors.readHeader), never the tensor data: it answers
// at once for a file of any size, and still answers for a copy whose data was cut short.

import ArgumentParser
import DAE
import Foundation

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a checkpoint or weights file holds: model, configuration, position, versions, tensors.",
        discussion: "Reads only the file's header, not its tensor data. The header checksum (header_crc32) is verified; the data checksum is not (eval or --resume read the data).")

    @Argument(help: "A checkpoint (<run-dir>/checkpoints/step-N.safetensors) or weights file (model.safetensors).")
    var file: String
    @Flag(help: "Print the description as one JSON object.") var json = false

    func run() throws {
        try runReportingErrors { _ in
            let report = InfoReport(header: try SafeTensors.readHeader(path: file), file: file)
            if json { say(jsonLine(report)) } else { report.text.forEach(say) }
        }
    }
}

/// `info`'s description of a file; `--json` prints it as it is.
struct InfoReport: Codable {
    struct Position: Codable {
        var phase: Int?, epoch: Int?, stepInEpoch: Int?, globalStep: Int?, samplesSeen: Int?, optimizerStep: Int?
        enum CodingKeys: String, CodingKey {
            case phase, epoch, stepInEpoch = "step_in_epoch", globalStep = "global_step"
            case samplesSeen = "samples_seen", optimizerStep = "optimizer_step"
        }
    }
    struct Tensor: Codable { var name: String, dtype: String, shape: [Int], count: Int }

    var file: String
    var bytes: Int
    var expectedBytes: Int               // the size its header describes: 8 + header + data
    var kind: String                     // "checkpoint", "weights" or "safetensors" (not a dae-dist file)
    var formatVersion: String?
    var model: String?                   // the model's description; nil when the file does not say
    var configuration: [String: String]  // the training settings recorded, as the metadata has them
    var position: Position?              // checkpoints only
    var versions: [String: String]       // BuildInfo's keys; empty for files written before them
    var otherMetadata: [String: String]  // every other metadata entry, so that nothing is hidden
    var headerChecksum: String           // "ok", "mismatch" or "absent"
    var truncated: Bool                  // the file is shorter than its header says
    var tensors: [Tensor]                // in data order
    var parameters: Int                  // the model's values: optimizer state not counted
    var values: Int                      // every tensor's values

    enum CodingKeys: String, CodingKey {
        case file, bytes, expectedBytes = "expected_bytes", kind, formatVersion = "format_version", model, configuration, position, versions
        case otherMetadata = "other_metadata", headerChecksum = "header_checksum", truncated, tensors, parameters, values
    }

    /// The training settings, in the order shown. Checkpoints hold them all; weights files the
    /// epochs, seed, noise and loss.
    static let configurationKeys = ["epochs", "pretrain_epochs", "batch_size", "micro_batch", "lr", "lr_schedule", "schedule_epochs",
                                    "beta1", "beta2", "eps", "noise", "loss", "seed", "patch", "patches_per_epoch", "augment", "reduce", "world_size", "image_size", "train_samples", "data_fingerprint"]
    /// Keys shown elsewhere (position, model) or that only the loader needs.
    static let consumedKeys: Set<String> = ["format", "format_version", "model", "model_shape", "input_size", "hidden", "activation",
                                            "tied_weights", "phase", "epoch", "step_in_epoch", "global_step", "samples_seen",
                                            "optimizer.step", "optimizer", "epoch_loss_sum", "epoch_loss_sum_bits",
                                            SafeTensors.headerChecksumKey, "data_crc32"]

    init(header: SafeTensorsHeader, file: String) {
        let metadata = header.metadata
        self.file = file
        expectedBytes = 8 + header.headerLength + header.dataLength
        bytes = header.fileLength ?? expectedBytes
        switch metadata["format"] {
        case Checkpoint.format: kind = "checkpoint"
        case "dae-dist weights": kind = "weights"
        default: kind = "safetensors"
        }
        formatVersion = metadata["format_version"]
        // A file of another tool has no "model" key; ModelSpec would take it for the conv model.
        if kind != "safetensors" || metadata["model"] != nil {
            model = (try? ModelSpec(metadata: metadata, path: file))?.description
        }
        configuration = metadata.filter { Self.configurationKeys.contains($0.key) }
        if kind == "checkpoint" {
            func integer(_ key: String) -> Int? { metadata[key].flatMap { Int($0) } }
            position = Position(phase: integer("phase") ?? 0, epoch: integer("epoch"), stepInEpoch: integer("step_in_epoch"),
                                globalStep: integer("global_step"), samplesSeen: integer("samples_seen"),
                                optimizerStep: integer("optimizer.step"))
        }
        versions = metadata.filter { BuildInfo.metadataKeys.contains($0.key) }
        otherMetadata = metadata.filter {
            !Self.configurationKeys.contains($0.key) && !BuildInfo.metadataKeys.contains($0.key) && !Self.consumedKeys.contains($0.key)
        }
        if let stored = metadata[SafeTensors.headerChecksumKey] {
            let computed = String(format: "%08x", SafeTensors.headerChecksum(entries: header.entries, metadata: metadata))
            headerChecksum = stored == computed ? "ok" : "mismatch"
        } else {
            headerChecksum = "absent"
        }
        truncated = header.isTruncated
        tensors = header.entries.map { Tensor(name: $0.name, dtype: $0.dtype.rawValue, shape: $0.shape, count: $0.count) }
        values = tensors.reduce(0) { $0 + $1.count }
        parameters = tensors.filter { !$0.name.hasPrefix(Checkpoint.optimizerPrefix) }.reduce(0) { $0 + $1.count }
    }

    /// The human-readable form: sections of aligned "key  value" lines.
    var text: [String] {
        func row(_ key: String, _ value: String) -> String { "  " + key.padding(toLength: 18, withPad: " ", startingAt: 0) + value }
        var kindLine: String
        switch kind {
        case "checkpoint": kindLine = "dae-dist checkpoint, format version \(formatVersion ?? "?")"
        case "weights": kindLine = "dae-dist weights file"
        default: kindLine = "safetensors file (not written by dae-dist)"
        }
        var lines = ["\(file): \(kindLine), \(grouped(bytes)) bytes"]
        if truncated {
            lines.append("  TRUNCATED: the header describes \(grouped(expectedBytes)) bytes, the file has \(grouped(bytes)); its data cannot be loaded")
        }
        lines.append("model")
        lines.append(row("description", model ?? "not recorded"))
        if !configuration.isEmpty {
            lines.append("configuration")
            for key in Self.configurationKeys { if let value = configuration[key] { lines.append(row(key, value)) } }
        }
        if let p = position {
            func show(_ value: Int?) -> String { value.map(String.init) ?? "missing" }
            lines.append("position")
            lines += [row("phase", show(p.phase)), row("epoch", show(p.epoch)), row("step in epoch", show(p.stepInEpoch)),
                      row("global step", show(p.globalStep)), row("samples seen", show(p.samplesSeen)),
                      row("optimizer step", show(p.optimizerStep))]
        }
        lines.append("versions")
        if versions.isEmpty { lines.append(row("(none)", "written before dae-dist recorded its versions")) }
        for key in BuildInfo.metadataKeys { if let value = versions[key] { lines.append(row(key, value)) } }
        if !otherMetadata.isEmpty {
            lines.append("other metadata")
            for key in otherMetadata.keys.sorted() { lines.append(row(key, otherMetadata[key]!)) }
        }
        lines.append("header checksum")
        switch headerChecksum {
        case "ok": lines.append(row("header_crc32", "matches the header (the data's data_crc32 is not checked: info reads the header only)"))
        case "mismatch": lines.append(row("header_crc32", "MISMATCH: the metadata or tensor table was edited or is corrupt"))
        default: lines.append(row("header_crc32", "absent (weights files, and checkpoints written before it, have none)"))
        }
        lines.append("tensors (\(tensors.count)): \(grouped(parameters)) parameters" + (values != parameters ? ", \(grouped(values)) values with the optimizer state" : ""))
        let width = max(20, tensors.map(\.name.count).max() ?? 0)
        for t in tensors {
            let shape = "[" + t.shape.map(String.init).joined(separator: ", ") + "]"
            lines.append("  " + t.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + t.dtype
                         + "  " + shape.padding(toLength: 16, withPad: " ", startingAt: 0) + "  " + grouped(t.count))
        }
        return lines
    }

    /// 27169 -> "27,169".
    private func grouped(_ n: Int) -> String {
        let digits = String(n)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return out
    }
}
