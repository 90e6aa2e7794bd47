// Reconstruction losses against the clean image, with the gradient taken straight through the
// model's final sigmoid (the model hands the loss its sigmoid output y; the loss returns dL/dz for
// the pre-sigmoid z, which is what the last layer's backward needs).
//
// `meanOver` is the number of values the loss is averaged over, normally the global batch's pixel
// count: a rank that holds part of the batch still produces the gradient of the *global* mean, so
// summing the ranks' gradients gives the full gradient.
//
//   MSE: L = 1/M sum (y - t)^2                          dL/dz = 2 (y - t) / M * y (1 - y)
//   BCE: L = -1/M sum [t log y + (1 - t) log(1 - y)]    dL/dz = (y - t) / max(y (1 - y), 1e-12) / M * y (1 - y)
//        with each log clamped at -100, exactly as torch.nn.BCELoss (forward and backward).
//
// A stacked autoencoder's upper layers with ReLU units reconstruct through a ReLU instead
// (`activation: .relu`, MSE only): dL/dz = 2 (y - t) / M * (y > 0). A network with no output
// activation (DnCNN's residual output, `activation: .identity`, MSE only: its outputs are not
// confined to [0,1]): dL/dy = 2 (y - t) / M.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum LossKind: String, Sendable, CaseIterable {
    case mse
    case bce

    /// Sum of the per-element losses over `count` values (the caller divides), in Double.
    public func sum(output y: UnsafePointer<Float>, target t: UnsafePointer<Float>, count: Int) -> Double {
        var total = 0.0
        switch self {
        case .mse:
            for i in 0..<count {
                let d = y[i] - t[i]
                total += Double(d * d)
            }
        case .bce:
            for i in 0..<count {
                let logY = max(logf(y[i]), -100)
                let log1mY = max(logf(1 - y[i]), -100)
                total += Double(-(t[i] * logY + (1 - t[i]) * log1mY))
            }
        }
        return total
    }

    /// dL/dz for the pre-activation output z, for `count` values of a loss averaged over `meanOver`.
    public func backward(output y: UnsafePointer<Float>, target t: UnsafePointer<Float>,
                         gradient dz: UnsafeMutablePointer<Float>, count: Int, meanOver: Int,
                         activation: OutputActivation = .sigmoid) {
        let scale = 1 / Float(meanOver)
        if activation == .relu {
            precondition(self == .mse, "a ReLU output is trained with MSE")
            for i in 0..<count { dz[i] = y[i] > 0 ? 2 * (y[i] - t[i]) * scale : 0 }
            return
        }
        if activation == .identity {
            precondition(self == .mse, "an output without activation is trained with MSE")
            for i in 0..<count { dz[i] = 2 * (y[i] - t[i]) * scale }
            return
        }
        switch self {
        case .mse:
            for i in 0..<count {
                let dy = 2 * (y[i] - t[i]) * scale
                dz[i] = dy * ((1 - y[i]) * y[i])
            }
        case .bce:
            for i in 0..<count {
                let dy = (y[i] - t[i]) / max((1 - y[i]) * y[i], 1e-12) * scale
                dz[i] = dy * ((1 - y[i]) * y[i])
            }
        }
    }
}
