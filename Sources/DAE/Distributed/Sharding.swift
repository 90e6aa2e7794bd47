// How work is cut up among ranks and threads. Two splits, each written once here:
//   evenShare:    `count` work items (micro-batches, eval batches, chain groups, probe chunks) cut
//                 into `parts` contiguous runs whose lengths differ by at most one. Ranks take
//                 runs of whole items, so an item's content (and the rounding of its GEMMs) never
//                 depends on the world size.
//   alignedShare: a buffer of `count` values cut among threads in multiples of `multiple` values
//                 (16 Int64 = 128 bytes), so that neighbouring parts share at most one cache line.
//                 Some parts may be empty; the bits do not depend on the split (each value is
//                 computed by itself).

/// Part `part` of `parts` of 0 ..< count: part*count/parts ..< (part+1)*count/parts.
/// Contiguous, in order, covering every item once; parts beyond `count` are empty.
/// E.g. 10 items in 4 parts: 0..<2, 2..<5, 5..<7, 7..<10.
@inlinable
public func evenShare(_ count: Int, part: Int, of parts: Int) -> Range<Int> {
    precondition(parts > 0 && part >= 0 && part < parts && count >= 0, "evenShare(\(count), part: \(part), of: \(parts))")
    return (part * count / parts) ..< ((part + 1) * count / parts)
}

/// Part `part` of `parts` of 0 ..< count in blocks of `multiple` values: every part but the last
/// non-empty one holds ceil(ceil(count / parts) / multiple) * multiple values.
/// E.g. 100 values in 3 parts of multiples of 16: 0..<48, 48..<96, 96..<100.
@inlinable
public func alignedShare(_ count: Int, part: Int, of parts: Int, multiple: Int = 16) -> Range<Int> {
    precondition(parts > 0 && part >= 0 && part < parts && count >= 0 && multiple > 0)
    let size = ((count + parts - 1) / parts + multiple - 1) / multiple * multiple
    return min(count, part * size) ..< min(count, (part + 1) * size)
}
