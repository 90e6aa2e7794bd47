// The trainer's state in and out: a checkpoint's state taken over and broadcast to every rank,
// the final weights written; and the step profile the benchmark reads.

import Foundation

extension Trainer {
    /// Takes over a checkpoint's state (on the rank that read it; then call `broadcastState`).
    /// `path` names the checkpoint in the error when its tensors do not fit this model.
    public func restore(_ state: CheckpointState, path: String = "checkpoint") throws(DAEError) {
        for (name, values) in [("parameters", state.parameters), ("exp_avg", state.firstMoment), ("exp_avg_sq", state.secondMoment)]
        where values.count != params.count {
            throw .checkpoint(path: path, problem: "holds \(values.count) \(name) values, this model has \(params.count)")
        }
        state.parameters.withUnsafeBufferPointer { params.pointer.update(from: $0.baseAddress!, count: params.count) }
        optimizer.restore(step: state.optimizerStep, m: state.firstMoment, v: state.secondMoment)
        position = state.position
        if position.stepInEpoch >= stepsPerEpoch {     // saved at an epoch's last step: start the next
            position.epoch += 1
            position.stepInEpoch = 0
            position.epochLossSum = 0
        }
        advancePhase()
    }

    /// Copies rank `root`'s parameters, optimizer state and position to every rank.
    public func broadcastState(root: Int = 0) {
        communicator.broadcast(UnsafeMutableRawPointer(params.pointer), count: params.count * 4, root: root)
        communicator.broadcast(UnsafeMutableRawPointer(optimizer.m.pointer), count: params.count * 4, root: root)
        communicator.broadcast(UnsafeMutableRawPointer(optimizer.v.pointer), count: params.count * 4, root: root)
        var fields: [Int64] = [Int64(optimizer.step), Int64(position.epoch), Int64(position.stepInEpoch),
                               Int64(position.globalStep), Int64(position.samplesSeen),
                               Int64(bitPattern: position.epochLossSum.bitPattern), Int64(position.phase)]
        fields.withUnsafeMutableBytes { communicator.broadcast($0.baseAddress!, count: $0.count, root: root) }
        optimizer.restore(step: Int(fields[0]))
        position.epoch = Int(fields[1]); position.stepInEpoch = Int(fields[2])
        position.globalStep = Int(fields[3]); position.samplesSeen = Int(fields[4])
        position.epochLossSum = Double(bitPattern: UInt64(bitPattern: fields[5]))
        position.phase = Int(fields[6])
        advancePhase()
    }

    /// Throws if the parameters or Adam's moments hold a value that is not finite (training has
    /// diverged), so that such a state is never written. One pass over three buffers.
    public func checkFinite() throws(DAEError) {
        for (name, buffer) in [("parameters", params), ("Adam's first moment", optimizer.m), ("Adam's second moment", optimizer.v)] {
            var bad = 0
            for i in 0..<buffer.count where !buffer[i].isFinite { bad += 1 }
            guard bad == 0 else {
                throw .numeric("training diverged by step \(position.globalStep): \(bad) of the \(buffer.count) values of the \(name) are not finite (nothing written); try a smaller --lr")
            }
        }
    }

    /// The largest magnitude among the parameters: a run whose weights grow without bound
    /// (too large an --lr) can stay finite and never trip checkFinite, while its network is dead.
    public func largestWeight() -> Float {
        var largest: Float = 0
        for i in 0..<params.count { largest = max(largest, abs(params[i])) }
        return largest
    }

    /// Whether any rank has asked to stop, agreed by all ranks (one small allreduce); for a stop
    /// that arrives before the first step.
    public func agreeOnStop() -> Bool {
        var flag: Int64 = stopRequested() ? 1 : 0
        communicator.allreduceSum(&flag, count: 1)
        return flag != 0
    }

    /// The final weights, named as the reference PyTorch model's state_dict.
    public func saveWeights(to path: String) throws(DAEError) {
        var metadata = config.model.metadata
        metadata["format"] = "dae-dist weights"
        metadata["epochs"] = String(config.epochs)
        if config.model.stackedSpec != nil { metadata["pretrain_epochs"] = String(config.pretrainEpochs) }
        metadata["seed"] = String(config.seed)
        metadata["noise"] = config.noise.description
        metadata["loss"] = config.loss.rawValue
        if let patches = config.patches { metadata["patch"] = String(patches.size) }   // eval scores crops of that side
        for (key, value) in BuildInfo.current.metadata(withMPI: false) { metadata[key] = value }   // not "mpi": see BuildInfo.metadata
        try Weights.save(params, layout: layout, to: path, metadata: metadata)
    }
}

/// Accumulated wall time of the parts of a step, filled when set as `Trainer.profile`.
public final class StepProfile {
    public var assembly = 0.0     // clean images and their corrupted copies
    public var loss = 0.0         // the loss and its gradient
    public var fixedPoint = 0.0   // micro-batch gradients to fixed point
    public var update = 0.0       // back to Float (exact mode), and Adam
    /// The convolutional model's layers, in the slots of ConvDenoiser.phaseNames.
    public let layers = UnsafeMutablePointer<Double>.allocate(capacity: ConvDenoiser.phaseNames.count)

    public init() { reset() }
    deinit { layers.deallocate() }

    public func reset() {
        assembly = 0; loss = 0; fixedPoint = 0; update = 0
        layers.initialize(repeating: 0, count: ConvDenoiser.phaseNames.count)
    }
}
