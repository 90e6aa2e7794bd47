// How many threads a rank runs: the affinity mask read from /proc, the default share of a node,
// the cap on --threads and the advice when train's threads outnumber the micro-batches.

@testable import DAE
import Foundation
import XCTest

final class CPUsTests: XCTestCase {
    func testReadsTheAffinityMask() {
        XCTAssertEqual(cpusAllowed(status: "Name:\ta\nCpus_allowed:\tff\nCpus_allowed_list:\t0-7\n"), 8)
        XCTAssertEqual(cpusAllowed(status: "Cpus_allowed:\t00000000,00000001,80000000\n"), 2)
        XCTAssertNil(cpusAllowed(status: "Cpus_allowed:\t0\n"))
        XCTAssertNil(cpusAllowed(status: "Cpus_allowed:\tzz\n"))
        XCTAssertNil(cpusAllowed(status: "Name:\ta\n"))
        // this process: at least one, at most the machine's
        XCTAssertGreaterThanOrEqual(allowedCPUCount(), 1)
        XCTAssertLessThanOrEqual(allowedCPUCount(), ProcessInfo.processInfo.processorCount)
    }

    func testDefaultThreads() {
        // unbound ranks see the whole node and split it
        XCTAssertEqual(defaultThreadCount(allowedCPUs: 16, onlineCPUs: 16, ranksOnNode: 4), 4)
        // Slurm --cpus-per-task=8, two ranks on a 64-CPU node: each its own 8
        XCTAssertEqual(defaultThreadCount(allowedCPUs: 8, onlineCPUs: 64, ranksOnNode: 2), 8)
        // mpirun --bind-to core: one CPU each
        XCTAssertEqual(defaultThreadCount(allowedCPUs: 1, onlineCPUs: 16, ranksOnNode: 16), 1)
        // more ranks than CPUs: still one thread
        XCTAssertEqual(defaultThreadCount(allowedCPUs: 2, onlineCPUs: 2, ranksOnNode: 8), 1)
    }

    func testThreadsAboveTheCPUsAreCapped() {
        let (threads, warning) = cappedThreadCount(requested: 1000, allowedCPUs: 2)
        XCTAssertEqual(threads, 2)
        XCTAssertEqual(warning, "warning: --threads 1000 is more than the 2 CPUs this rank may run on; using 2")
        XCTAssertEqual(cappedThreadCount(requested: 2, allowedCPUs: 2).threads, 2)
        XCTAssertNil(cappedThreadCount(requested: 2, allowedCPUs: 2).warning)
        XCTAssertEqual(cappedThreadCount(requested: 3, allowedCPUs: 1).warning, "warning: --threads 3 is more than the 1 CPU this rank may run on; using 1")
    }

    func testAdviceWhenThreadsOutnumberMicroBatches() throws {
        // the README's Slurm example: 16 CPUs, batch 20 in micro-batches of 5, one rank
        let advice = try XCTUnwrap(threadAdvice(threads: 16, ranks: 1, batchSize: 20, microBatch: 5))
        XCTAssertEqual(advice, "warning: 16 threads per rank but only 4 micro-batches per step: 12 threads idle; --micro-batch 1 or --batch-size 80 would use all 16 (or pass --threads 4)")
        XCTAssertNil(threadAdvice(threads: 4, ranks: 1, batchSize: 20, microBatch: 5))
        XCTAssertNil(threadAdvice(threads: 2, ranks: 2, batchSize: 20, microBatch: 5))
        // every value suggested does keep every thread busy
        for threads in [2, 3, 8, 16] {
            for ranks in [1, 2, 3] {
                for batch in [4, 20, 64, 100] {
                    for micro in [1, 5, 20] {
                        guard let text = threadAdvice(threads: threads, ranks: ranks, batchSize: batch, microBatch: micro) else { continue }
                        let regex = try NSRegularExpression(pattern: "(--batch-size|--micro-batch) ([0-9]+)")
                        for m in regex.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                            let value = Int(text[Range(m.range(at: 2), in: text)!])!
                            let fixed = text[Range(m.range(at: 1), in: text)!] == "--batch-size"
                                ? threadAdvice(threads: threads, ranks: ranks, batchSize: value, microBatch: micro)
                                : threadAdvice(threads: threads, ranks: ranks, batchSize: batch, microBatch: value)
                            XCTAssertNil(fixed, "\(text) -> \(fixed ?? "")")
                        }
                    }
                }
            }
        }
    }
}
