// Elementwise activations, applied in place on the layer output. Both backward passes need only
// the activation's output, so no pre-activation copy is kept.
//
//   ReLU:    y = max(x, 0)        dx = dy * (y > 0)          (PyTorch's threshold_backward)
//   Sigmoid: y = 1 / (1 + e^-x)   dx = dy * y * (1 - y)

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum ReLU {
    /// Branch-free so that it vectorises; NaN stays NaN (max keeps its first argument when the
    /// comparison fails), as torch.relu.
    public static func forward(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = max(x[i], 0) }
    }

    /// dx = dy * (y > 0), in place on the gradient. The gradient is loaded unconditionally so that
    /// the select vectorises (a load inside the ternary kept this loop scalar).
    public static func backward(y: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count {
            let g = grad[i]
            grad[i] = y[i] > 0 ? g : 0
        }
    }
}

public enum Sigmoid {
    public static func forward(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = 1 / (1 + expf(-x[i])) }
    }

    /// dx = dy * y * (1 - y), in place on the gradient.
    public static func backward(y: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { grad[i] = grad[i] * (y[i] * (1 - y[i])) }
    }
}
