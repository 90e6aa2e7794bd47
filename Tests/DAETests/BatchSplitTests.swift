// The advice of a step that cannot be split among the ranks: whatever value the error suggests,
// a Trainer built with it must succeed (a fake world of N ranks; nothing is communicated).

@testable import DAE
import Foundation
import XCTest

final class BatchSplitTests: XCTestCase {
    /// The `--flag N` pairs an error message suggests.
    func suggestions(_ message: String) -> [(flag: String, value: Int)] {
        let regex = try! NSRegularExpression(pattern: "(--batch-size|--micro-batch) ([0-9]+)")
        return regex.matches(in: message, range: NSRange(message.startIndex..., in: message)).map {
            (String(message[Range($0.range(at: 1), in: message)!]), Int(message[Range($0.range(at: 2), in: message)!])!)
        }
    }

    func testEverySuggestedValueWorks() throws {
        let data = try Dataset.load(directory: repositoryRoot + "/data/mnist", split: .test).prefix(100)
        var failures = 0, suggested = 0
        for reduce in ReduceMode.allCases {
            for ranks in [2, 3, 8, 16] {
                for batch in [1, 3, 4, 7, 8, 20, 100] {
                    for micro in [1, 2, 5, 20] {
                        var config = TrainConfig()
                        (config.reduce, config.batchSize, config.microBatch) = (reduce, batch, micro)
                        let world = FakeWorld(size: ranks)
                        let message: String
                        do { _ = try Trainer(config: config, data: data, communicator: world); continue } catch { message = "\(error)" }
                        failures += 1
                        XCTAssertFalse(message.contains("\n"), message)
                        let values = suggestions(message)
                        XCTAssertFalse(values.isEmpty, "no value suggested: \(message)")
                        // each suggestion on its own ("A or B"), except "--batch-size B with --micro-batch 1" (together)
                        let groups: [[(flag: String, value: Int)]] = message.contains(" with --micro-batch") ? [values] : values.map { [$0] }
                        for group in groups {
                            var fixed = config
                            for (flag, value) in group {
                                if flag == "--batch-size" { fixed.batchSize = value } else { fixed.microBatch = value }
                            }
                            suggested += 1
                            XCTAssertNoThrow(try Trainer(config: fixed, data: data, communicator: world),
                                             "\(reduce) ranks \(ranks) batch \(batch) micro \(micro): \(message) -> \(group)")
                        }
                    }
                }
            }
        }
        XCTAssertGreaterThan(failures, 20)
        XCTAssertGreaterThan(suggested, failures)
    }

    func testTheCaseReportedByAUser() throws {
        // mpirun -np 8 ... --batch-size 4: once advised "--micro-batch 1 or less", which fails
        let problem = batchSplitProblem(ranks: 8, batchSize: 4, microBatch: 5, samples: 60_000, reduce: .exact)
        XCTAssertEqual(problem?.description, "--batch-size: 8 ranks need at least 8 micro-batches per step, but a batch of 4 in micro-batches of 4 has 1; --batch-size must be at least the number of ranks: use --batch-size 40 or more")
        XCTAssertNil(batchSplitProblem(ranks: 8, batchSize: 40, microBatch: 5, samples: 60_000, reduce: .exact))
        // fewer images than ranks: no flag value helps
        XCTAssertEqual(batchSplitProblem(ranks: 8, batchSize: 20, microBatch: 5, samples: 5, reduce: .fast)?.description,
                       "8 ranks but only 5 training images: every rank needs at least one; run at most 5 ranks")
    }
}
