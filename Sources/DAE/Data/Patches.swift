// What one training sample is: a whole image, or a random crop ("patch") of one.
//
// Whole images (MNIST, a folder of same-size images): an epoch is one permutation of the images,
// keyed by (seed, epoch), and a sample's noise is keyed by its image index.
//
// Patches (--patch N): an epoch has K samples (--patches-per-epoch; default one per image, at
// least 10,000). Sample k of the epoch crops image order[k], where `order` strings together
// ceil(K / images) permutations of the images keyed by (seed, epoch, round), so that every image is
// cropped about equally often. The crop's corner and, with --augment flips, one of the 8 flips and
// 90-degree rotations of the square come from the stream keyed by (seed, epoch, k); the noise is
// keyed by k as well (an image is cropped several times an epoch). Nothing depends on the rank or
// the thread that takes the sample, so training stays bitwise the same on any number of ranks and a
// resumed run takes the same crops.
//
// Evaluation uses fixed crops of the validation images (`Dataset.fixedCrops`), the same every
// epoch and for every seed, so that scores of different runs compare.

/// How a run cuts its training samples from the images.
public struct PatchSampling: Sendable, Equatable {
    /// The side of the square crops.
    public var size: Int
    /// Crops per epoch (nil: one per image, at least `defaultMinimum`).
    public var perEpoch: Int?
    /// Each crop flipped and rotated by one of the square's 8 symmetries, drawn with its corner.
    public var flips: Bool

    public static let defaultMinimum = 10_000
    public static let maxSize = 4096
    public static let maxPerEpoch = 1 << 30

    public init(size: Int, perEpoch: Int? = nil, flips: Bool = false) {
        self.size = size; self.perEpoch = perEpoch; self.flips = flips
    }

    /// Crops per epoch for `images` images.
    public func samplesPerEpoch(images: Int) -> Int { perEpoch ?? max(images, Self.defaultMinimum) }

    /// Rejects sizes no model can take, naming the flag.
    public func validate(sideMultiple: Int) throws(DAEError) {
        guard size >= sideMultiple, size <= Self.maxSize, size % sideMultiple == 0 else {
            throw .badFlag("--patch", "\(size) must be a multiple of \(sideMultiple) (the model's pooling) from \(sideMultiple) to \(Self.maxSize)")
        }
        if let perEpoch {
            guard (1...Self.maxPerEpoch).contains(perEpoch) else {
                throw .badFlag("--patches-per-epoch", "must be from 1 to \(Self.maxPerEpoch), got \(perEpoch)")
            }
        }
    }
}

/// The training samples of a run: `data`'s images whole, or crops of them (see the header).
public struct TrainingSamples: Sendable {
    public let data: Dataset
    public let patches: PatchSampling?
    public let seed: UInt64

    public init(data: Dataset, patches: PatchSampling?, seed: UInt64) {
        self.data = data; self.patches = patches; self.seed = seed
    }

    /// Samples in one epoch.
    public var perEpoch: Int { patches?.samplesPerEpoch(images: data.count) ?? data.count }
    /// One sample's height and width.
    public var height: Int { patches?.size ?? data.height }
    public var width: Int { patches?.size ?? data.width }
    public var channels: Int { data.channels }
    /// Values per sample, [channels, height, width].
    public var sampleSize: Int { channels * height * width }

    /// Checks that every image can give a crop (or, without patches, that the images share one size).
    public func check() throws(DAEError) {
        guard let patches else { try data.requireOneSize(flagHint: "--patch"); return }
        for i in 0..<data.count {
            let shape = data.shape(i)
            guard shape.height >= patches.size, shape.width >= patches.size else {
                let name = data.names?[i] ?? "image \(i)"
                throw .data(path: data.source, problem: "\(name) is \(shape.height)x\(shape.width), smaller than --patch \(patches.size); use a smaller --patch or remove the image")
            }
        }
    }

    /// The image index of every sample of epoch `epoch` (its random key), in the order the epoch
    /// visits them.
    public func epochOrder(epoch: Int, into order: inout [Int32]) {
        guard patches != nil else { epochPermutation(count: data.count, seed: seed, epoch: epoch, into: &order); return }
        let total = perEpoch, images = data.count
        order.removeAll(keepingCapacity: true)
        var round = 0
        while order.count < total {
            // round 0 is the epoch's plain permutation; later rounds are keyed by (epoch, round)
            let first = order.count
            order.append(contentsOf: (0..<Int32(images)))
            var stream = RandomStream(seed: seed, purpose: .shuffle, UInt64(epoch), UInt64(round))
            var i = images - 1
            while i > 0 {
                order.swapAt(first + i, first + Int(stream.below(UInt32(i + 1))))
                i -= 1
            }
            round += 1
        }
        order.removeLast(order.count - total)
    }

    /// The key of sample `position` (of image `image`) in the noise stream: the image index for
    /// whole images (as the MNIST recipe always had), the position in the epoch for patches.
    @inline(__always) public func noiseKey(position: Int, image: Int) -> Int {
        patches == nil ? image : position
    }

    /// Writes sample `position` of the epoch keyed `epoch` (image `image`) into `out` as
    /// [channels, height, width] floats in [0,1].
    public func fill(position: Int, image: Int, epoch: Int, into out: UnsafeMutablePointer<Float>) {
        guard let patches else { data.image(image, into: out); return }
        var stream = RandomStream(seed: seed, purpose: .patch, UInt64(epoch), UInt64(position))
        data.cropPatch(image, size: patches.size, flips: patches.flips, stream: &stream, into: out)
    }
}

extension Dataset {
    /// A crop of side `size` of image `index` at a corner drawn from `stream`, then (with `flips`)
    /// one of the square's 8 symmetries drawn next, as [channels, size, size] floats x/255.
    func cropPatch(_ index: Int, size: Int, flips: Bool, stream: inout RandomStream, into out: UnsafeMutablePointer<Float>) {
        let shape = self.shape(index)
        let top = Int(stream.below(UInt32(shape.height - size + 1)))
        let left = Int(stream.below(UInt32(shape.width - size + 1)))
        let symmetry = flips ? Int(stream.below(8)) : 0
        let transpose = symmetry & 4 != 0, flipRows = symmetry & 2 != 0, flipColumns = symmetry & 1 != 0
        let plane = shape.height * shape.width
        pixels.withUnsafeBufferPointer { p in
            for c in 0..<channels {
                let src = p.baseAddress! + shape.offset + c * plane + top * shape.width + left
                let dst = out + c * size * size
                for y in 0..<size {
                    for x in 0..<size {
                        // out(y, x) reads the crop at (a, b): transposed, then flipped
                        let (a0, b0) = transpose ? (x, y) : (y, x)
                        let a = flipRows ? size - 1 - a0 : a0, b = flipColumns ? size - 1 - b0 : b0
                        dst[y * size + x] = Float(src[a * shape.width + b]) / 255
                    }
                }
            }
        }
    }

    /// `count` crops of side `size` (image k % self.count for crop k), at corners that depend on
    /// nothing but the crop's number: the same evaluation patches every epoch and for every seed.
    /// Images smaller than `size` are refused by the caller's check.
    public func fixedCrops(size: Int, count: Int) -> Dataset {
        let sample = channels * size * size
        var pixels = [UInt8](repeating: 0, count: count * sample)
        var labels = [UInt8](repeating: 0, count: count)
        let floats = UnsafeMutablePointer<Float>.allocate(capacity: sample)
        defer { floats.deallocate() }
        for k in 0..<count {
            let image = k % self.count
            var stream = RandomStream(seed: 0, purpose: .patch, 0, UInt64(k))
            cropPatch(image, size: size, flips: false, stream: &stream, into: floats)
            for i in 0..<sample { pixels[k * sample + i] = UInt8((floats[i] * 255).rounded()) }
            labels[k] = self.labels[image]
        }
        return Dataset(count: count, channels: channels, height: size, width: size, pixels: pixels, labels: labels,
                       source: source)
    }
}
