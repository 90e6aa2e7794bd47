// Denoising images with a trained model: any size for the convolutional model (sides padded to
// multiples of 4 by repeating the edge pixels, as torch's 'replicate' padding, and the result
// cropped back), the model's own input size for a stacked one.

public final class ImageDenoiser {
    public let model: ModelSpec
    let params: FloatBuffer
    let phase: Int
    /// The largest image the convolutional model takes whole: its activations and workspaces need
    /// about 1 KB per pixel (229 floats and 12 indices), so 2^22 pixels is about 4 GB.
    public static let maxPixels = 1 << 22

    /// `afterPhase`: for a stacked checkpoint saved during pre-training, the layers trained so far.
    public init(model: ModelSpec, params: FloatBuffer, afterPhase: Int = Int.max) {
        self.model = model; self.params = params; self.phase = afterPhase
    }

    /// Whether images of height x width can be denoised, and if not, why.
    public func check(height: Int, width: Int, source: String) throws(DAEError) {
        if model.sideMultiple > 1, height * width > Self.maxPixels {
            throw DAEError.data(path: source, problem: "the image is \(height)x\(width), more than the \(Self.maxPixels) pixels denoised at once (about 1 KB of memory each); crop or scale it first")
        }
        if case .stacked(let s) = model, height * width != s.inputSize {
            throw DAEError.data(path: source, problem: "the image is \(height)x\(width) but the stacked model takes \(s.inputSize) pixels (28x28 for MNIST); use a convolutional model for other sizes")
        }
    }

    /// `count` images of height x width (values in [0,1], [count, H, W]) into `out`, same layout.
    public func denoise(_ images: UnsafePointer<Float>, count: Int, height: Int, width: Int,
                        into out: UnsafeMutablePointer<Float>, batch: Int = 50) {
        let m = model.sideMultiple, (paddedH, paddedW) = ((height + m - 1) / m * m, (width + m - 1) / m * m)
        let capacity = min(batch, count)
        let network = model.makeImageAutoencoder(height: paddedH, width: paddedW, capacity: capacity, parameters: params, afterPhase: phase)
        let size = paddedH * paddedW
        var first = 0
        while first < count {
            let n = min(capacity, count - first)
            for i in 0..<n {
                let src = images + (first + i) * height * width, dst = network.input + i * size
                for y in 0..<paddedH {
                    let sy = min(y, height - 1)
                    for x in 0..<paddedW { dst[y * paddedW + x] = src[sy * width + min(x, width - 1)] }
                }
            }
            network.forward(n: n)
            for i in 0..<n {
                let src = network.output + i * size, dst = out + (first + i) * height * width
                for y in 0..<height { (dst + y * width).update(from: src + y * paddedW, count: width) }
            }
            first += n
        }
    }
}
