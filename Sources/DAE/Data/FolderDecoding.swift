// Decoding a folder's images, the second pass of Dataset.load (DataSources.swift has the first,
// the plan): each rank decodes its evenShare of the files, its threads taking one file at a time,
// into the places the plan gives each image; the ranks agree on failure (the first failing file's
// message, on every rank), then each rank's block is broadcast from it, so every rank holds the
// same bytes whatever the number of ranks and threads.

import Foundation
import Synchronization

extension Dataset {
    /// The folder's files decoded (this rank's share, by `threads` threads) and shared over the
    /// ranks (see the header).
    static func decodeFolder(_ plan: DataPlan, firstImage: [Int], communicator: Communicator, threads: Int,
                             progress: (@Sendable (Int, Int) -> Void)?) throws(DAEError) -> Dataset {
        let (rank, size) = (communicator.rank, communicator.size)
        let mine = evenShare(plan.files.count, part: rank, of: size)
        let total = min(firstImage[mine.upperBound], plan.images) - firstImage[mine.lowerBound]
        var pixels = [UInt8](repeating: 0, count: plan.bytes)
        let state = DecodeState(next: mine.lowerBound)
        pixels.withUnsafeMutableBufferPointer { buffer in
            let out = SendablePointer(buffer.baseAddress!)
            let pool = WorkerPool(threads: max(1, min(threads, mine.count)))
            pool.run { worker in
                while !state.failed.load(ordering: .relaxed) {
                    let f = state.next.add(1, ordering: .relaxed).oldValue
                    if f >= mine.upperBound { break }
                    do throws(DAEError) {
                        try decodeFile(f, plan: plan, firstImage: firstImage, into: out.pointer)
                    } catch {
                        state.fail(file: f, error)
                    }
                    let done = state.decoded.add(min(firstImage[f + 1], plan.images) - firstImage[f], ordering: .relaxed).newValue
                    // only the caller's thread reports, when a new percent is reached
                    if worker == 0, let progress, done * 100 / max(1, total) > state.reportedPercent {
                        state.reportedPercent = done * 100 / max(1, total)
                        progress(done, total)
                    }
                }
            }
        }
        if let progress, state.reportedPercent < 100, state.failure.withLock({ $0 == nil }) { progress(total, total) }
        // every rank learns whether any failed, then the first failing rank's message
        var flags = [Int64](repeating: 0, count: size)
        flags[rank] = state.failure.withLock { $0 == nil } ? 0 : 1
        communicator.allreduceSum(&flags, count: size)
        if let failing = flags.firstIndex(where: { $0 != 0 }) {
            // the message as "path\nproblem": the failing rank's, the others' of the same length
            var message: [UInt8] = []
            if failing == rank, let error = state.failure.withLock({ $0?.error }) {
                if case .data(let path, let problem) = error { message = Array((path + "\n" + problem).utf8) }
                else { message = Array((plan.source + "\n" + error.description).utf8) }
            }
            var length = Int64(message.count)
            communicator.broadcast(&length, count: 8, root: failing)
            if failing != rank { message = [UInt8](repeating: 0, count: Int(length)) }
            message.withUnsafeMutableBytes { communicator.broadcast($0.baseAddress!, count: $0.count, root: failing) }
            let text = String(decoding: message, as: UTF8.self)
            let parts = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
            throw DAEError.data(path: String(parts[0]), problem: parts.count > 1 ? String(parts[1]) : "")
        }
        // rank r's files are one contiguous block of bytes: broadcast from r, in pieces that fit
        // MPI's 32-bit counts
        for r in 0..<size where size > 1 {
            let files = evenShare(plan.files.count, part: r, of: size)
            let start = byteOffset(plan, image: firstImage[files.lowerBound])
            let end = byteOffset(plan, image: firstImage[files.upperBound])
            pixels.withUnsafeMutableBytes { bytes in
                var at = start
                while at < end {
                    let n = min(end - at, 1 << 30)
                    communicator.broadcast(bytes.baseAddress! + at, count: n, root: r)
                    at += n
                }
            }
        }
        return Dataset(channels: plan.channels, sizes: plan.shapes.map { ($0.height, $0.width) }, pixels: pixels,
                       labels: plan.labels, source: plan.source, names: plan.names)
    }

    static func byteOffset(_ plan: DataPlan, image: Int) -> Int { image < plan.images ? plan.shapes[image].offset : plan.bytes }

    /// Decodes file `f` of the plan into its images' places; a file that no longer matches its
    /// header (changed, or a header that lied) is an error.
    static func decodeFile(_ f: Int, plan: DataPlan, firstImage: [Int], into out: UnsafeMutablePointer<UInt8>) throws(DAEError) {
        let path = plan.files[f]
        let images = try ImageFile.decode(path: path, channels: plan.channels)
        let expected = firstImage[f + 1] - firstImage[f]
        guard images.count == expected else {
            throw DAEError.data(path: path, problem: "its headers show \(expected) images but \(images.count) were decoded; was the file changed during loading?")
        }
        for (k, image) in images.enumerated() where firstImage[f] + k < plan.images {   // a limit may end inside the file
            let s = plan.shapes[firstImage[f] + k]
            guard image.height == s.height, image.width == s.width else {
                throw DAEError.data(path: path, problem: "its header says \(s.height)x\(s.width) but the image decodes as \(image.height)x\(image.width); was the file changed during loading?")
            }
            image.pixels.withUnsafeBufferPointer { (out + s.offset).update(from: $0.baseAddress!, count: $0.count) }
        }
    }
}

/// A pointer the decoding threads write through, each to its own images' bytes.
struct SendablePointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<UInt8>
    init(_ pointer: UnsafeMutablePointer<UInt8>) { self.pointer = pointer }
}

/// The decoding threads' shared state: the next file, the images done, the first failure.
final class DecodeState: @unchecked Sendable {
    let next: Atomic<Int>
    let decoded = Atomic<Int>(0)
    let failed = Atomic<Bool>(false)
    /// The failure of the lowest file index: files are taken in order, so every file before it
    /// has been decoded too, and which error wins does not depend on the threads' timing.
    let failure = Mutex<(file: Int, error: DAEError)?>(nil)
    var reportedPercent = 0        // the caller's thread only
    init(next: Int) { self.next = Atomic(next) }

    func fail(file: Int, _ error: DAEError) {
        failure.withLock { current in
            if current == nil || file < current!.file { current = (file, error) }
        }
        failed.store(true, ordering: .relaxed)
    }
}
