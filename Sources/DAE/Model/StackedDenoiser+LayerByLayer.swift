// The stacked model's passes, layer by layer: the plain DenoisingNetwork calls, and the
// LayerByLayerNetwork calls the trainer makes instead (a team of threads on one replica, or
// exact mode's micro-batches in lockstep), in one unit, since all of them run through the same
// layer loops (encode, forward, backward below).

extension StackedDenoiser: LayerByLayerNetwork {
    // Forward and backward run layer by layer in one of two ways (LayerByLayerNetwork):
    // - a team splitting features (fast mode, Team.swift): each thread computes its share of
    //   every layer's output features (forward, weight gradients) or input features (input
    //   gradients), and the team meets (`sync`) before a layer reads what all wrote. Alone, the
    //   shares are whole layers and the syncs do nothing.
    // - groups (exact mode's micro-batches in lockstep): the n rows are consecutive groups of
    //   `groupSize` rows, and every layer runs over the groups before the next layer, every
    //   value the bits a pass over its group alone would give. Where the CPU has it, the
    //   products run on linear.c's C kernel (`lockstepKernel`), in which each value is one chain
    //   of fused multiply-adds in a fixed order whatever the call: the forward and the input
    //   gradients take all the groups in one call, a team splitting the features in panels of
    //   16 as in fast mode; each group's weight gradient is a call of its own (its rows are that
    //   group's sum). Without the kernel, OpenBLAS makes the calls a pass per group would make
    //   (its bits depend on the shape of a call), and a team splits the groups instead.
    //   The backward computes an untied layer's weight gradient a chunk of `weightChunk` output
    //   features at a time, and within a chunk group by group, reporting each as soon as it is
    //   final (`weightsFinal`): the chunk's gradient and the caller's accumulator for it then stay
    //   in cache over the groups, where a pass per micro-batch wrote and read the whole gradient
    //   from memory (docs/benchmarks.md); a team splits the chunks, so each chunk's reports come
    //   from one thread. So the bits depend on neither the team, nor how many groups a call
    //   holds, nor the world size. Tied weights take the groups one after another instead (a
    //   tied weight's gradient is final only once its encoder has added to what its decoder
    //   wrote), each through every layer, with whole-layer weight gradients, alone.

    /// Output features per weight-gradient chunk in lockstep: 56 rows of a 1000-wide layer's
    /// gradient (224 KB) and their accumulator (448 KB) fit in a core's L2 cache, and MNIST's
    /// widths 784 and 1000 make 14 and 18 chunks, an even split for a team of two. Fixed (not
    /// derived from the team), so that the bits do not depend on the threads where OpenBLAS
    /// computes them (the C kernel's do not depend on the chunks).
    static let weightChunk = 56

    /// body(rows) for the consecutive groups of `size` rows that make up `rows` (the last may be
    /// shorter).
    @inline(__always)
    func forEachGroup(_ rows: Range<Int>, size: Int, _ body: (Range<Int>) -> Void) {
        var start = rows.lowerBound
        while start < rows.upperBound {
            let end = min(start + size, rows.upperBound)
            body(start ..< end)
            start = end
        }
    }

    /// The team's part of a layer's `width` features: whole panels of the C kernel's 16 columns
    /// when it runs the products (`kernel`).
    @inline(__always)
    func features(_ width: Int, _ team: TeamPart, kernel: Bool) -> Range<Int> {
        kernel ? team.share(width, inUnitsOf: 16) : team.share(width)
    }

    /// Rows `rows` of x [n, in] through `layer` into y [n, out]'s columns `outputs` (the team's
    /// part), activated: with `kernel`, one call of the C kernel over all the rows, which gives
    /// every value the bits of a call on its group alone; else an OpenBLAS call per group of
    /// `groupSize`.
    @inline(__always)
    func forward(_ layer: Linear, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, rows: Range<Int>, groupSize: Int,
                 outputs: Range<Int>, _ kind: OutputActivation, kernel: Bool) {
        let inp = layer.inFeatures, out = layer.outFeatures
        if kernel {
            layer.forwardLockstep(x: x + rows.lowerBound * inp, y: y + rows.lowerBound * out, n: rows.count, outputs: outputs)
            activate(y + rows.lowerBound * out, n: rows.count, width: out, columns: outputs, kind)
            return
        }
        forEachGroup(rows, size: groupSize) { g in
            let yRows = y + g.lowerBound * out
            layer.forward(x: x + g.lowerBound * inp, y: yRows, n: g.count, outputs: outputs)
            activate(yRows, n: g.count, width: out, columns: outputs, kind)
        }
    }

    /// Encoders 0..<depth on rows `rows` of x [n, d0], in groups of `groupSize`, the team
    /// splitting features; codes[j] holds layer j's output. Ends synced.
    func encode(_ x: UnsafePointer<Float>, depth: Int, rows: Range<Int>, groupSize: Int, team: TeamPart = .alone, kernel: Bool = false) {
        var below = x
        for j in 0..<depth {
            forward(encoders[j], x: below, y: codes[j + 1], rows: rows, groupSize: groupSize, outputs: features(widths[j + 1], team, kernel: kernel),
                    hidden, kernel: kernel)
            team.sync()
            below = UnsafePointer(codes[j + 1])
        }
    }

    public func target(images: UnsafePointer<Float>, n: Int) -> UnsafePointer<Float> { target(images: images, rows: 0 ..< n, groupSize: n, team: .alone) }
    public func target(images: UnsafePointer<Float>, n: Int, team: TeamPart) -> UnsafePointer<Float> { target(images: images, rows: 0 ..< n, groupSize: n, team: team) }
    public func target(images: UnsafePointer<Float>, n: Int, groupSize: Int, team: TeamPart) -> UnsafePointer<Float> {
        if lockstepKernel { return target(images: images, rows: 0 ..< n, groupSize: groupSize, team: team, kernel: true) }
        return target(images: images, rows: team.share(n, inUnitsOf: groupSize), groupSize: groupSize, team: .alone)
    }

    /// The target of `rows`, the team splitting features.
    func target(images: UnsafePointer<Float>, rows: Range<Int>, groupSize: Int, team: TeamPart, kernel: Bool = false) -> UnsafePointer<Float> {
        guard case .layer(let k) = mode, k > 0 else { return images }
        encode(images, depth: k, rows: rows, groupSize: groupSize, team: team, kernel: kernel)      // the frozen layers' clean codes
        return UnsafePointer(codes[k])
    }

    public func forward(n: Int) { forward(rows: 0 ..< n, groupSize: n, team: .alone) }
    public func forward(n: Int, team: TeamPart) { forward(rows: 0 ..< n, groupSize: n, team: team) }
    public func forward(n: Int, groupSize: Int, team: TeamPart) {
        if lockstepKernel { forward(rows: 0 ..< n, groupSize: groupSize, team: team, kernel: true); return }
        forward(rows: team.share(n, inUnitsOf: groupSize), groupSize: groupSize, team: .alone)
    }

    /// Rows `rows` in groups of `groupSize`, the team splitting features; ends before the last
    /// layer's sync: the caller syncs before reading the output.
    func forward(rows: Range<Int>, groupSize: Int, team: TeamPart, kernel: Bool = false) {
        precondition(rows.upperBound <= capacity && groupSize > 0)
        switch mode {
        case .layer(let k):
            // input [n,d_k] -> y = codes[k+1] [n,d_{k+1}] -> output [n,d_k]
            forward(encoders[k], x: input, y: codes[k + 1], rows: rows, groupSize: groupSize,
                    outputs: features(widths[k + 1], team, kernel: kernel), hidden, kernel: kernel)
            team.sync()
            forward(decoders[k], x: codes[k + 1], y: output, rows: rows, groupSize: groupSize,
                    outputs: features(widths[k], team, kernel: kernel), outputActivation, kernel: kernel)
        case .deep(let depth):
            // input [n,d0] -> codes[1..depth] -> decoded[depth-1..1] -> output [n,d0]
            encode(input, depth: depth, rows: rows, groupSize: groupSize, team: team, kernel: kernel)
            var above = UnsafePointer(codes[depth])
            for j in (0..<depth).reversed() {
                let out = j == 0 ? output : decoded[j]
                forward(decoders[j], x: above, y: out, rows: rows, groupSize: groupSize, outputs: features(widths[j], team, kernel: kernel),
                        j == 0 ? .sigmoid : hidden, kernel: kernel)
                if j > 0 { team.sync() }
                above = UnsafePointer(out)
            }
        }
    }

    public func backward(n: Int) { backward(rows: 0 ..< n, team: .alone, lockstep: nil) { _ in } }

    /// A team's share; from a synced gradOutput, ends without a final sync (the caller syncs
    /// before reading the gradients).
    public func backward(n: Int, team: TeamPart) { backward(rows: 0 ..< n, team: team, lockstep: nil) { _ in } }

    /// The groups in lockstep, reporting the gradients as they become final; with a team, from a
    /// synced gradOutput, ending without a final sync.
    public func backward(n: Int, groupSize: Int, team: TeamPart, fixedPoint: FixedPointTarget?, weightsFinal: (Range<Int>) -> Void) {
        precondition(groupSize > 0)
        if spec.tied {
            precondition(team.count == 1, "tied weights run their groups alone")
            forEachGroup(0 ..< n, size: groupSize) {
                backward(rows: $0, team: team, lockstep: groupSize, fixedPoint: nil, weightsFinal: weightsFinal)
            }
        } else {
            backward(rows: 0 ..< n, team: team, lockstep: groupSize, fixedPoint: fixedPoint, weightsFinal: weightsFinal)
        }
    }

    /// The backward of `rows`, layer by layer: without `lockstep`, the team splitting features;
    /// with it (a group size), each layer over the groups (see above).
    func backward(rows: Range<Int>, team: TeamPart, lockstep groupSize: Int?, fixedPoint: FixedPointTarget? = nil,
                  weightsFinal: (Range<Int>) -> Void) {
        // in lockstep on OpenBLAS, this thread's groups (for the input gradients)
        let mine = groupSize.map { size in
            let part = team.share(rows.count, inUnitsOf: size)
            return rows.lowerBound + part.lowerBound ..< rows.lowerBound + part.upperBound
        } ?? rows
        let kernel = groupSize != nil && lockstepKernel
        /// One layer: weight and bias gradients, then with dx the gradient at the pre-activation
        /// of the layer below (x is that layer's activated output).
        func layer(_ layer: Linear, gradients: Range<Int>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                   dx: UnsafeMutablePointer<Float>?, accumulate: Bool) {
            let out = layer.outFeatures, inp = layer.inFeatures
            if let groupSize, !spec.tied {
                // this thread's chunks of output features, each over every group: dW's rows, then
                // db (one range each); on OpenBLAS, the chunk zeroed by memset, not by its beta = 0
                // pass (slower)
                let weight = gradients.lowerBound, bias = weight + out * inp
                forEachGroup(team.share(out, inUnitsOf: Self.weightChunk), size: Self.weightChunk) { chunk in
                    forEachGroup(rows, size: groupSize) { g in
                        if kernel {
                            // with a fixed-point target, dW's chunk goes straight into it
                            if !layer.backwardWeightsLockstep(dy: dy + g.lowerBound * out, x: x + g.lowerBound * inp, n: g.count,
                                                              outputs: chunk, into: fixedPoint) {
                                fixedPoint?.markOverflow()
                            }
                        } else {
                            (layer.gradWeight + chunk.lowerBound * inp).update(repeating: 0, count: chunk.count * inp)
                            layer.backwardWeights(dy: dy + g.lowerBound * out, x: x + g.lowerBound * inp, n: g.count, outputs: chunk,
                                                  accumulate: true)
                        }
                        if !kernel || fixedPoint == nil { weightsFinal(weight + chunk.lowerBound * inp ..< weight + chunk.upperBound * inp) }
                        weightsFinal(bias + chunk.lowerBound ..< bias + chunk.upperBound)
                    }
                }
                guard let dx else { return }
                if kernel {
                    // all the groups in one call, the team splitting the input features
                    let inputs = features(inp, team, kernel: true)
                    layer.backwardInputLockstep(dy: dy + rows.lowerBound * out, dx: dx + rows.lowerBound * inp, n: rows.count, inputs: inputs)
                    activationBackward(y: x + rows.lowerBound * inp, grad: dx + rows.lowerBound * inp, n: rows.count, width: inp, columns: inputs)
                    return
                }
                forEachGroup(mine, size: groupSize) { g in
                    layer.backwardInput(dy: dy + g.lowerBound * out, dx: dx + g.lowerBound * inp, n: g.count, inputs: 0 ..< inp)
                    activationBackward(y: x + g.lowerBound * inp, grad: dx + g.lowerBound * inp, n: g.count, width: inp, columns: 0 ..< inp)
                }
            } else {
                let outputs = team.share(out), inputs = team.share(inp)
                layer.backwardWeights(dy: dy + rows.lowerBound * out, x: x + rows.lowerBound * inp, n: rows.count, outputs: outputs,
                                      accumulate: accumulate)
                weightsFinal(gradients)
                guard let dx else { return }
                if kernel {
                    layer.backwardInputLockstep(dy: dy + rows.lowerBound * out, dx: dx + rows.lowerBound * inp, n: rows.count, inputs: inputs)
                } else {
                    layer.backwardInput(dy: dy + rows.lowerBound * out, dx: dx + rows.lowerBound * inp, n: rows.count, inputs: inputs)
                }
                activationBackward(y: x + rows.lowerBound * inp, grad: dx + rows.lowerBound * inp, n: rows.count, width: inp, columns: inputs)
            }
        }
        // Decoders first: with tied weights they write the shared weight gradient and the
        // encoders add theirs to it (the team syncs between the two).
        switch mode {
        case .layer(let k):
            layer(decoders[k], gradients: decoderGradients[k], dy: gradOutput, x: codes[k + 1], dx: gradA, accumulate: false)
            team.sync()
            layer(encoders[k], gradients: encoderGradients[k], dy: gradA, x: input, dx: nil, accumulate: spec.tied)
        case .deep(let depth):
            var dy = UnsafeMutablePointer(gradOutput), spare = gradA
            for j in 0..<depth {
                // decoder j: decoded[j+1] (or the code) -> decoded[j] (or the output)
                let x = j == depth - 1 ? codes[depth] : decoded[j + 1]
                layer(decoders[j], gradients: decoderGradients[j], dy: dy, x: x, dx: spare, accumulate: false)
                team.sync()
                (dy, spare) = (spare, dy == gradOutput ? gradB : dy)
            }
            for j in (0..<depth).reversed() {
                // encoder j: codes[j] (or the input) -> codes[j+1]; dy is the gradient at its pre-activation
                layer(encoders[j], gradients: encoderGradients[j], dy: dy, x: j == 0 ? input : codes[j], dx: j > 0 ? spare : nil,
                      accumulate: spec.tied)
                if j > 0 {
                    team.sync()
                    (dy, spare) = (spare, dy)
                }
            }
        }
    }
}
