// Owned, fixed-size, zero-initialised memory. Parameters, gradients, optimizer moments and
// activations each live in one such buffer; layers hold pointers (views) into them. Nothing is
// allocated after construction, so a training step never allocates.

public final class FloatBuffer {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    public init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { pointer.deallocate() }

    public subscript(i: Int) -> Float {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }
    public var array: [Float] { Array(buffer) }
}

/// Hands out consecutive slices of one allocation, sized up front by its owner (the sum of the
/// slices it will take).
/// Used for activations and workspaces: one `Arena` per batch capacity.
public final class Arena<Element: BitwiseCopyable> {
    public private(set) var used = 0
    public let capacity: Int
    let base: UnsafeMutablePointer<Element>

    public init(capacity: Int, zero: Element) {
        self.capacity = capacity
        base = .allocate(capacity: max(capacity, 1))
        base.initialize(repeating: zero, count: max(capacity, 1))
    }

    deinit { base.deallocate() }

    /// The next `count` elements. Trapping here is a programming error (the size pass was wrong).
    public func take(_ count: Int) -> UnsafeMutablePointer<Element> {
        precondition(used + count <= capacity, "arena overflow")
        defer { used += count }
        return base + used
    }
}

/// The slices of an arena counted before it exists, for a network whose list of activations
/// depends on its shape: `reserve` returns a slice's offset, `total` is the arena's size, and
/// `Arena.slice(at:)` turns an offset into a pointer once it is allocated.
public struct ArenaPlan {
    public private(set) var total = 0
    public init() {}
    public mutating func reserve(_ count: Int) -> Int {
        defer { total += count }
        return total
    }
}

extension Arena {
    /// The slice that starts `offset` elements in (an offset from an `ArenaPlan` of this size).
    public func slice(at offset: Int) -> UnsafeMutablePointer<Element> {
        precondition(offset >= 0 && offset <= capacity, "arena offset out of range")
        return base + offset
    }
}
