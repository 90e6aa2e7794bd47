// How many threads a rank should run: the CPUs it may run on, and advice when threads would sit
// idle. The library decides the numbers and the warning texts; the CLI prints them (rank 0 only).

import Foundation

/// The CPUs this process may run on: its affinity mask, which is what Slurm (`--cpus-per-task`),
/// mpirun's bindings, taskset and cgroup cpusets set. On Linux it is read from
/// /proc/self/status (`Cpus_allowed`, the mask sched_getaffinity returns; Swift's Glibc module
/// does not export sched_getaffinity). Elsewhere, or if that fails: activeProcessorCount.
public func allowedCPUCount() -> Int {
    if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
       let count = cpusAllowed(status: status) {
        return count
    }
    return max(1, ProcessInfo.processInfo.activeProcessorCount)
}

/// The number of CPUs in the `Cpus_allowed:` line of a /proc/<pid>/status text (a hexadecimal
/// mask in comma-separated 32-bit words), nil if there is none or it is malformed or empty.
func cpusAllowed(status: String) -> Int? {
    for line in status.split(separator: "\n") where line.hasPrefix("Cpus_allowed:") {
        var count = 0
        for c in line.dropFirst("Cpus_allowed:".count) where c != "," && c != " " && c != "\t" {
            guard let digit = c.hexDigitValue else { return nil }
            count += digit.nonzeroBitCount
        }
        return count > 0 ? count : nil
    }
    return nil
}

/// The default threads of a rank: its share of the node's CPUs, `onlineCPUs / ranksOnNode`, but
/// never more than the CPUs it may run on (`allowedCPUs`). A launcher that binds each rank
/// (Slurm, mpirun --bind-to core) gives each its own mask, which is then used whole; unbound
/// ranks all see the whole node, and split it evenly. At least 1.
public func defaultThreadCount(allowedCPUs: Int, onlineCPUs: Int, ranksOnNode: Int) -> Int {
    max(1, min(allowedCPUs, onlineCPUs / max(1, ranksOnNode)))
}

/// `--threads N` capped at the CPUs the rank may run on (more threads only contend for them; the
/// workers spin between rounds), and the warning to print when it was capped.
public func cappedThreadCount(requested: Int, allowedCPUs: Int) -> (threads: Int, warning: String?) {
    let cpus = max(1, allowedCPUs)
    guard requested > cpus else { return (requested, nil) }
    return (cpus, "warning: --threads \(requested) is more than the \(cpus) CPU\(cpus == 1 ? "" : "s") this rank may run on; using \(cpus)")
}

/// Training in exact mode: a step's micro-batches are spread over the ranks and each rank's
/// threads take them one at a time, so a rank with more threads than micro-batches leaves some
/// idle. Returns a warning naming a --micro-batch or --batch-size that would use them all, or nil.
/// `batchSize` is the step's size (at most the training images), `ranks` the world size.
public func threadAdvice(threads: Int, ranks: Int, batchSize: Int, microBatch: Int) -> String? {
    let batch = max(1, batchSize), micro = max(1, min(microBatch, batch))
    let microBatches = (batch + micro - 1) / micro
    let perRank = (microBatches + ranks - 1) / max(1, ranks)   // the busiest rank's share
    guard threads > perRank else { return nil }
    let idle = threads - perRank
    let needed = threads * max(1, ranks)                      // micro-batches that keep every thread busy
    var fixes: [String] = []
    if batch / needed >= 1 { fixes.append("--micro-batch \(batch / needed)") }
    fixes.append("--batch-size \(needed * max(1, microBatch))")      // with the --micro-batch given
    let ranksText = ranks > 1 ? " per rank (\(microBatches) over \(ranks) ranks)" : ""
    return "warning: \(threads) threads per rank but only \(perRank) micro-batch\(perRank == 1 ? "" : "es") per step\(ranksText): "
        + "\(idle) thread\(idle == 1 ? "" : "s") idle; \(fixes.joined(separator: " or ")) would use all \(threads) (or pass --threads \(perRank))"
}
