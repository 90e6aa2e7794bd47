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
