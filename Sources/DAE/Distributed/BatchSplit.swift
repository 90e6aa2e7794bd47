// Whether a step can be split among the ranks, and if not, an error that names a value that works.

/// The error for a step that cannot be split among `ranks`, or nil when it can. Exact mode needs a
/// micro-batch per rank at least (the micro-batches are the unit ranks share); fast mode needs a
/// sample per rank. `batchSize` and `microBatch` are the flags' values, `samples` the training
/// images (a batch never holds more). Every value the message suggests has been checked to work:
/// a smaller micro-batch never makes fewer micro-batches, a larger batch never fewer either.
public func batchSplitProblem(ranks: Int, batchSize: Int, microBatch: Int, samples: Int, reduce: ReduceMode) -> DAEError? {
    let batch = min(batchSize, samples)
    guard ranks > 1, batch > 0 else { return nil }
    if samples < ranks {
        return .distributed("\(ranks) ranks but only \(samples) training images: every rank needs at least one; run at most \(samples) ranks")
    }
    switch reduce {
    case .exact:
        let micro = max(1, min(microBatch, batch))
        let count = (batch + micro - 1) / micro
        guard count < ranks else { return nil }
        let need = "\(ranks) ranks need at least \(ranks) micro-batches per step, but a batch of \(batch) in micro-batches of \(micro) has \(count)"
        // `ranks` micro-batches of the --micro-batch given: the batch that keeps that flag as it is
        let flagMicro = max(1, microBatch)
        let keeping = ranks * flagMicro <= samples ? "--batch-size \(ranks * flagMicro) or more" : nil
        if batch >= ranks {
            // batch / ranks >= 1 samples each gives at least `ranks` micro-batches
            return .badFlag("--micro-batch", need + "; use --micro-batch \(batch / ranks) or less" + (keeping.map { ", or \($0)" } ?? ""))
        }
        // fewer samples than ranks: no micro-batch size helps, the batch must grow
        return .badFlag("--batch-size", need + "; --batch-size must be at least the number of ranks: use "
                        + (keeping ?? "--batch-size \(ranks) with --micro-batch 1"))
    case .fast:
        guard batch < ranks else { return nil }
        return .badFlag("--batch-size", "\(ranks) ranks but only \(batch) samples per step; use --batch-size \(ranks) or more")
    }
}
