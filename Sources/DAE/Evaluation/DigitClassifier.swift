// A small classifier of the training data's pixels, to judge generated samples: an MLP
// Linear(H*W, 256) - ReLU - Linear(256, classes), softmax cross-entropy, Adam, trained for a few
// epochs (about 97-98% test accuracy on MNIST after 3 epochs). Deterministic for its seed.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public final class DigitClassifier {
    public static let hidden = 256
    public let inputs: Int, classes: Int, capacity: Int
    public let layout: ParameterLayout
    public let params: FloatBuffer, grads: FloatBuffer
    let fc1: Linear, fc2: Linear
    let x: FloatBuffer, h: FloatBuffer, logits: FloatBuffer, dLogits: FloatBuffer, dH: FloatBuffer

    public init(inputs: Int, classes: Int = 10, capacity: Int = 100, seed: UInt64 = 0) {
        self.inputs = inputs; self.classes = classes; self.capacity = capacity
        var layout = ParameterLayout()
        let o1 = Linear.register(&layout, prefix: "fc1", inFeatures: inputs, outFeatures: Self.hidden)
        let o2 = Linear.register(&layout, prefix: "fc2", inFeatures: Self.hidden, outFeatures: classes)
        self.layout = layout
        params = FloatBuffer(count: layout.count); grads = FloatBuffer(count: layout.count)
        initializeParameters(params, layout: layout, seed: seed)
        fc1 = Linear(inFeatures: inputs, outFeatures: Self.hidden, offsets: o1, params: params, grads: grads)
        fc2 = Linear(inFeatures: Self.hidden, outFeatures: classes, offsets: o2, params: params, grads: grads)
        x = FloatBuffer(count: capacity * inputs); h = FloatBuffer(count: capacity * Self.hidden)
        logits = FloatBuffer(count: capacity * classes); dLogits = FloatBuffer(count: capacity * classes)
        dH = FloatBuffer(count: capacity * Self.hidden)
    }

    /// The layer widths as "MLP inputs-hidden-classes", e.g. "MLP 784-256-10" for MNIST.
    public var architecture: String { "MLP \(inputs)-\(Self.hidden)-\(classes)" }

    /// A dataset whose images are not `inputs` pixels would be read into (and past) buffers sized
    /// for `inputs`: refused with one line naming both sizes.
    func checkSize(_ data: Dataset) throws(DAEError) {
        guard data.imageSize == inputs else {
            throw DAEError.data(path: data.source, problem: "images are \(data.height)x\(data.width) (\(data.imageSize) pixels) but the classifier (\(architecture)) takes \(inputs) inputs")
        }
    }

    /// Class probabilities of n images (x in [0,1], [n, inputs]) into `probabilities` [n, classes].
    public func predict(_ images: UnsafePointer<Float>, n: Int, probabilities: UnsafeMutablePointer<Float>) {
        var done = 0
        while done < n {
            let k = min(capacity, n - done)
            x.pointer.update(from: images + done * inputs, count: k * inputs)
            forward(k)
            softmax(k, into: probabilities + done * classes)
            done += k
        }
    }

    func forward(_ n: Int) {
        fc1.forward(x: x.pointer, y: h.pointer, n: n)
        ReLU.forward(h.pointer, count: n * Self.hidden)
        fc2.forward(x: h.pointer, y: logits.pointer, n: n)
    }

    func softmax(_ n: Int, into p: UnsafeMutablePointer<Float>) {
        for r in 0..<n {
            let z = logits.pointer + r * classes
            var top = z[0]
            for c in 1..<classes { top = max(top, z[c]) }
            var total: Float = 0
            for c in 0..<classes { p[r * classes + c] = expf(z[c] - top); total += p[r * classes + c] }
            for c in 0..<classes { p[r * classes + c] /= total }
        }
    }

    /// Trains on `data` for `epochs` epochs (Adam lr 1e-3, batches of `capacity`).
    public func train(on data: Dataset, epochs: Int, seed: UInt64 = 0) throws(DAEError) {
        try checkSize(data)
        let adam = Adam(parameterCount: layout.count, config: AdamConfig(lr: 1e-3))
        var order: [Int32] = []
        let probabilities = FloatBuffer(count: capacity * classes)
        for epoch in 1...max(1, epochs) {
            epochPermutation(count: data.count, seed: seed &+ 0xC1A5, epoch: epoch, into: &order)
            var first = 0
            while first < data.count {
                let n = min(capacity, data.count - first)
                for i in 0..<n { data.image(Int(order[first + i]), into: x.pointer + i * inputs) }
                forward(n)
                softmax(n, into: probabilities.pointer)
                // d(mean cross-entropy)/d logits = (p - onehot) / n
                for i in 0..<n {
                    let label = Int(data.labels[Int(order[first + i])])
                    for c in 0..<classes {
                        dLogits[i * classes + c] = (probabilities[i * classes + c] - (c == label ? 1 : 0)) / Float(n)
                    }
                }
                fc2.backward(dy: dLogits.pointer, x: h.pointer, dx: dH.pointer, n: n)
                ReLU.backward(y: h.pointer, grad: dH.pointer, count: n * Self.hidden)
                fc1.backward(dy: dH.pointer, x: x.pointer, dx: nil, n: n)
                adam.update(params: params, grads: grads)
                first += n
            }
        }
    }

    /// Accuracy on `data`.
    public func accuracy(on data: Dataset) throws(DAEError) -> Double {
        try checkSize(data)
        let images = FloatBuffer(count: data.count * inputs), p = FloatBuffer(count: data.count * classes)
        for i in 0..<data.count { data.image(i, into: images.pointer + i * inputs) }
        predict(images.pointer, n: data.count, probabilities: p.pointer)
        var correct = 0
        for i in 0..<data.count {
            var best = 0
            for c in 1..<classes where p[i * classes + c] > p[i * classes + best] { best = c }
            if best == Int(data.labels[i]) { correct += 1 }
        }
        return Double(correct) / Double(data.count)
    }
}
