// The networks' activations are channel-major over the batch, [C, n, h, w], so that one GEMM covers
// the whole batch; the DenoisingNetwork contract (data, noise, loss) is sample-major, [n, C, h, w].
// With one channel the two coincide; with more, a network swaps the two outer axes at its entry
// and exit with this copy.

/// dst[j, i, plane] = src[i, j, plane] for src [outer, inner, plane] (dst is [inner, outer, plane]).
public func transposePlanes(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                            outer: Int, inner: Int, plane: Int) {
    for i in 0..<outer {
        for j in 0..<inner {
            (dst + (j * outer + i) * plane).update(from: src + (i * inner + j) * plane, count: plane)
        }
    }
}
