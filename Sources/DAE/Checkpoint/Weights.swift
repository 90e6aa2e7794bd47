// The model's weights as a safetensors file with the reference PyTorch model's state_dict names
// and shapes, so that `model.load_state_dict(safetensors.torch.load_file(path), strict=True)`
// works on the reference ConvDenoiser (see docs/checkpoints.md).

public enum Weights {
    /// The parameters of a flat buffer as named tensors, in state_dict order.
    public static func tensors(_ params: FloatBuffer, layout: ParameterLayout, prefix: String = "") -> [SafeTensor] {
        layout.slots.map { slot in
            SafeTensor(name: prefix + slot.name, shape: slot.shape,
                       values: Array(UnsafeBufferPointer(start: params.pointer + slot.offset, count: slot.count)))
        }
    }

    public static func save(_ params: FloatBuffer, layout: ParameterLayout, to path: String,
                            metadata: [String: String] = [:]) throws(DAEError) {
        try writeFileAtomically(SafeTensors.encode(tensors(params, layout: layout), metadata: metadata), to: path)
    }

    /// Copies the tensors named by `layout` (plus `prefix`) into `params`, checking that every one
    /// is present with the right shape. Extra tensors (such as optimizer state) are ignored.
    public static func load(_ tensors: [SafeTensor], into params: FloatBuffer, layout: ParameterLayout,
                            prefix: String = "", path: String) throws(DAEError) {
        var byName: [String: SafeTensor] = [:]
        for t in tensors { byName[t.name] = t }
        for slot in layout.slots {
            guard let t = byName[prefix + slot.name] else {
                throw DAEError.checkpoint(path: path, problem: "missing tensor '\(prefix + slot.name)'; is this a dae-dist checkpoint of the same model?")
            }
            guard t.shape == slot.shape else {
                throw DAEError.checkpoint(path: path, problem: "tensor '\(t.name)' has shape \(t.shape), expected \(slot.shape)")
            }
            guard t.values.allSatisfy({ $0.isFinite }) else {
                throw DAEError.checkpoint(path: path, problem: "tensor '\(t.name)' holds NaN or infinite values")
            }
            t.values.withUnsafeBufferPointer { (params.pointer + slot.offset).update(from: $0.baseAddress!, count: slot.count) }
        }
    }

    /// The phase a file's model had reached: a checkpoint's `phase` (for a stacked model saved
    /// during pre-training, the layers beyond it are untrained), or everything for a weights file.
    public static func trainedPhase(_ metadata: [String: String]) -> Int {
        metadata["phase"].flatMap { Int($0) }.map { max($0, 0) } ?? Int.max
    }

    /// Reads a weights file or checkpoint: which model it holds (from its metadata), its
    /// parameters, and its metadata.
    public static func loadModel(path: String) throws(DAEError) -> (model: ModelSpec, params: FloatBuffer, metadata: [String: String]) {
        let (tensors, metadata) = try SafeTensors.read(path: path)
        let model = try ModelSpec(metadata: metadata, path: path)
        let layout = model.makeLayout()
        let params = FloatBuffer(count: layout.count)
        try load(tensors, into: params, layout: layout, path: path)
        return (model, params, metadata)
    }
}
