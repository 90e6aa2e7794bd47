// Small SIMD and memory helpers shared by the layers' loops. Swift's SIMD types compile to SSE
// on baseline x86-64 (and NEON on ARM), so these need no target flags; unaligned loads and stores
// go through raw pointers.

@inline(__always) func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
}

@inline(__always) func store8(_ p: UnsafeMutablePointer<Float>, _ v: SIMD8<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

/// (a0, b0, a1, b1, a2, b2, a3, b3)
@inline(__always) func interleave(_ a: SIMD4<Float>, _ b: SIMD4<Float>) -> SIMD8<Float> {
    SIMD8(a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3])
}

/// out[0..<count] = 0, inline: the runs im2col zeroes are a row or two long, where a memset call
/// costs more than the stores.
@inline(__always) func fillZero(_ out: UnsafeMutablePointer<Float>, _ count: Int) {
    var x = 0
    while x + 4 <= count { UnsafeMutableRawPointer(out + x).storeBytes(of: SIMD4<Float>(), as: SIMD4<Float>.self); x += 4 }
    while x < count { out[x] = 0; x += 1 }
}

// 8- and 16-wide loads and stores that stay inside their buffers (the Winograd transforms): a full
// vector where it fits, else element by element (the lanes past the end are 0 and their results
// are not stored).

@inline(__always) func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always) func load16(_ p: UnsafePointer<Float>, available: Int) -> SIMD16<Float> {
    if available >= 16 { return load16(p) }
    var v = SIMD16<Float>()
    for i in 0..<max(0, available) { v[i] = p[i] }
    return v
}

@inline(__always) func load8(_ p: UnsafePointer<Float>, available: Int) -> SIMD8<Float> {
    if available >= 8 { return UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
    var v = SIMD8<Float>()
    for i in 0..<max(0, available) { v[i] = p[i] }
    return v
}

@inline(__always) func store<V: SIMD>(_ v: V, _ p: UnsafeMutablePointer<Float>, _ count: Int) where V.Scalar == Float {
    if count == V.scalarCount { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self); return }
    for i in 0..<count { p[i] = v[i] }
}

/// (a0, b0, a1, b1, ..., a7, b7)
@inline(__always) func interleave8(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD16<Float> {
    SIMD16(lowHalf: interleave(a.lowHalf, b.lowHalf), highHalf: interleave(a.highHalf, b.highHalf))
}

/// out[i] += x[i] for i < count (summing workers' gradients): 8 lanes at a time, each element
/// one IEEE add, so any vector width gives the same bits.
func addFloats(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i + 8 <= count {
        let sum = UnsafeRawPointer(out + i).loadUnaligned(as: SIMD8<Float>.self) + UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
        store8(out + i, sum)
        i += 8
    }
    while i < count { out[i] += x[i]; i += 1 }
}
