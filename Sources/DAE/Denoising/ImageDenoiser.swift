// Denoising images with a trained model.
//
// The convolutional model takes any size: the image is padded on the right and bottom to a
// multiple of its side multiple by repeating the edge pixels (torch's 'replicate' padding), run
// through the network and cropped back. A large image is cut into overlapping square tiles that
// are run in batches, so memory is bounded by the tile batch and not by the image; the tiling is
// arranged so that the result equals that of running the whole padded image at once (up to float
// rounding). The stacked model takes whole images of its one input size.

/// How a model's image autoencoder can be applied to tiles of an image and give the same result
/// as on the whole image.
public struct TileGeometry: Sendable, Equatable {
    /// Colour planes of an image ([count, C, H, W]); the output has as many.
    public var channels: Int
    /// Sides the network takes are multiples of this (2^pools), and tiles start at multiples of
    /// it, so that every pooling window of a tile is a pooling window of the whole image.
    public var sideMultiple: Int
    /// Pixels of context on each side: every aligned block of sideMultiple x sideMultiple output
    /// pixels depends only on input pixels at most `halo` away from the block. The model's
    /// per-pixel receptive radius is always a safe (larger) value.
    public var halo: Int
    /// Bytes of the network's arenas per pixel of a batch (activations, workspaces, indices).
    public var arenaBytesPerPixel: Int

    public init(channels: Int, sideMultiple: Int, halo: Int, arenaBytesPerPixel: Int) {
        precondition(channels > 0 && sideMultiple > 0 && halo >= 0 && arenaBytesPerPixel > 0)
        self.channels = channels; self.sideMultiple = sideMultiple; self.halo = halo; self.arenaBytesPerPixel = arenaBytesPerPixel
    }

    /// The reference ConvDenoiser. Its halo, along one axis: output pixel y = 4q + r (r in 0...3)
    /// comes from code pixel q alone (both transposed convolutions have kernel 2 and stride 2, so
    /// they do not mix neighbours); code pixel q is the max over conv2 pixels 2q, 2q+1; those read
    /// pool1 pixels 2q-1 ... 2q+2 (3x3, padding 1); those are the max over conv1 pixels 4q-2 ...
    /// 4q+5; those read input pixels 4q-3 ... 4q+6. So the block 4q ... 4q+3 needs 3 pixels either
    /// side: halo 3, rounded up to a margin of 4. Per pixel the reach is 6 (pixel 4q+3 needs 4q-3),
    /// but only because the max-pool windows are fixed at even positions of the whole image: a
    /// tile starting at any other row would pair rows differently and compute something else.
    /// The bytes per pixel are measured from two small models' arenas (they grow linearly with
    /// batch x height x width): 285 floats and 12 indices, 1188 bytes. The arenas' fixed part,
    /// conv2's transformed weights and their gradient (32 x 32 x 64 floats, 256 KB), is left out.
    public static let conv = TileGeometry(model: .reference)

    /// The geometry of an image network: `halo` pixels of context, tiles aligned to `sideMultiple`,
    /// bytes per pixel measured from the arenas of `network(side)` for sides `probeSide` and twice it.
    static func measured(channels: Int, sideMultiple: Int, halo: Int, probeSide: Int, network: (Int) -> ImageNetwork) -> TileGeometry {
        let bytes = arenaBytesPerPixel(side: probeSide) { side in
            let probe = network(side)
            return (probe.arena, probe.indexArena)
        }
        return TileGeometry(channels: channels, sideMultiple: sideMultiple, halo: halo, arenaBytesPerPixel: bytes)
    }

    /// Arena bytes per pixel of `network(side)`, a model for one image of side x side: the growth
    /// from side s to 2s over the 3 s^2 pixels added (the fixed part cancels).
    static func arenaBytesPerPixel(side s: Int, _ network: (Int) -> (Arena<Float>, Arena<Int32>)) -> Int {
        func bytes(_ side: Int) -> Int {
            let (floats, indices) = network(side)
            return floats.capacity * MemoryLayout<Float>.size + indices.capacity * MemoryLayout<Int32>.size
        }
        return max(1, (bytes(2 * s) - bytes(s)) / (3 * s * s))
    }

    /// The geometry of `model` (ModelArchitecture.tileGeometry: each model's own analysis); for a
    /// model that is never tiled (the stacked model) the reference one, which it does not use.
    public init(model: ModelSpec) {
        self = model.architecture.tileGeometry() ?? .conv
    }

    /// The rows (and columns) at each inner edge of a tile whose output is thrown away: the halo
    /// rounded up to sideMultiple, so that the next tile also starts at a multiple of it.
    public var margin: Int { (halo + sideMultiple - 1) / sideMultiple * sideMultiple }

    /// The smallest tile side: a tile must keep at least one aligned block between its margins.
    public var smallestTile: Int { 2 * margin + sideMultiple }

    /// Rejects a tile side that is not a multiple of sideMultiple larger than twice the margin.
    public func check(tile: Int) throws(DAEError) {
        guard tile % sideMultiple == 0, tile > 2 * margin else {
            throw DAEError.badFlag("--tile", "\(tile) must be a multiple of \(sideMultiple) larger than \(2 * margin) (the model needs \(margin) pixels of context on each side of a tile)")
        }
    }
}

/// `count` images of one size as planes [count, C, H, W], values in [0,1].
public struct ImagePlanes: Sendable, Equatable {
    public var count: Int, height: Int, width: Int
    public var values: [Float]
    public init(count: Int, height: Int, width: Int, values: [Float]) {
        self.count = count; self.height = height; self.width = width; self.values = values
    }
}

public final class ImageDenoiser {
    public let model: ModelSpec
    public let geometry: TileGeometry
    /// The side of the square tiles (a multiple of geometry.sideMultiple), or nil for the stacked
    /// model, which takes whole images of its one size.
    public let tile: Int?
    let params: FloatBuffer
    let phase: Int
    /// The memory the tile batch's network may use when the tile side is not given: 256 MiB.
    public static let memoryBudget = 1 << 28
    /// The network of the last batch, kept for the next image with the same tile shape (a folder
    /// of photos from one camera) instead of allocating it again.
    var cached: (height: Int, width: Int, capacity: Int, network: DenoisingNetwork)?

    /// The largest tile side whose network fits `memoryBudget` for a single tile:
    /// tile^2 x arenaBytesPerPixel <= 256 MiB, which is 472 for the convolutional model.
    public static func defaultTile(_ geometry: TileGeometry) -> Int {
        largestTile(geometry, memory: memoryBudget)
    }

    /// The largest tile side whose network for a single tile fits in `memory` bytes (at least the
    /// smallest tile).
    public static func largestTile(_ geometry: TileGeometry, memory: Int) -> Int {
        let side = Int(Double(max(memory, 0) / geometry.arenaBytesPerPixel).squareRoot())
        return max(side / geometry.sideMultiple * geometry.sideMultiple, geometry.smallestTile)
    }

    /// The memory a tile's network may take: three quarters of the available memory (the rest is
    /// for the image's planes, the decoded file and everything else), or 256 MiB where the
    /// available memory is not known.
    public static func tileMemoryLimit(available: Int? = Dataset.availableMemory()) -> Int {
        available.map { $0 - $0 / 4 } ?? memoryBudget
    }

    /// Refuses a tile side whose network would not fit in `limit` bytes even for one tile: an
    /// image up to the tile's side runs whole, and the allocation would fail (or the machine
    /// swap) instead of tiling. The message gives the largest side that fits.
    public static func checkMemory(tile: Int, geometry: TileGeometry, limit: Int) throws(DAEError) {
        // in floating point: a side of 10^8 squared times the bytes per pixel overflows Int
        let needed = Double(tile) * Double(tile) * Double(geometry.arenaBytesPerPixel)
        guard needed > Double(limit) else { return }
        let largest = largestTile(geometry, memory: limit)
        throw DAEError.badFlag("--tile", String(format: "%d needs %.3g GB for the network of one tile, more than the %.3g GB of memory it may use; the largest tile that fits is %d (the default is %d)",
                                                tile, needed / 1e9, Double(limit) / 1e9, largest, defaultTile(geometry)))
    }

    /// `afterPhase`: for a stacked checkpoint saved during pre-training, the layers trained so far.
    /// Tiles of the model's own geometry and the default side.
    public convenience init(model: ModelSpec, params: FloatBuffer, afterPhase: Int = Int.max) {
        self.init(model: model, params: params, phase: afterPhase, geometry: TileGeometry(model: model), checkedTile: nil)
    }

    /// A denoiser with the given geometry and tile side (nil: `defaultTile`); the tile side is
    /// checked (`TileGeometry.check(tile:)`, and its network against `memoryLimit`, by default
    /// `tileMemoryLimit()`) and ignored for the stacked model.
    public convenience init(model: ModelSpec, params: FloatBuffer, afterPhase: Int = Int.max,
                            geometry: TileGeometry, tile: Int?, memoryLimit: Int? = nil) throws(DAEError) {
        if let tile {
            try geometry.check(tile: tile)
            // the stacked model is not tiled: its network is for one whole image whatever the tile
            if model.tiled {
                try Self.checkMemory(tile: tile, geometry: geometry, limit: memoryLimit ?? Self.tileMemoryLimit())
            }
        }
        self.init(model: model, params: params, phase: afterPhase, geometry: geometry, checkedTile: tile)
    }

    init(model: ModelSpec, params: FloatBuffer, phase: Int, geometry: TileGeometry, checkedTile: Int?) {
        self.model = model; self.params = params; self.phase = phase; self.geometry = geometry
        tile = model.tiled ? checkedTile ?? Self.defaultTile(geometry) : nil
    }

    /// Whether images of height x width can be denoised, and if not, why. Tiles make any size
    /// possible for a convolutional model (the decoders' pixel limit bounds it).
    public func check(height: Int, width: Int, source: String) throws(DAEError) {
        guard height > 0, width > 0 else {
            throw DAEError.data(path: source, problem: "the image is \(width)x\(height); it has no pixels")
        }
        if let s = model.stackedSpec, height * width != s.inputSize {
            throw DAEError.data(path: source, problem: "the image is \(width)x\(height) but the stacked model takes \(s.inputSize) pixels (28x28 for MNIST); use a convolutional model for other sizes")
        }
    }

    /// Bytes denoising one height x width image takes: the network for its tile batch (arenas and
    /// gradient buffer) plus the image's float planes in and out. The decoded file is extra.
    public func memoryEstimate(height: Int, width: Int) -> Int {
        let floatSize = MemoryLayout<Float>.size
        let planes = 2 * geometry.channels * height * width * floatSize
        let grads = model.makeLayout().count * floatSize
        guard let tile else {
            // StackedDenoiser's arena per sample (input, output, gradient, two gradient
            // workspaces, codes and decoded codes), for the one-image batch
            guard let s = model.stackedSpec else { return planes + grads }
            let d = s.widths
            let perSample = 3 * d.dropLast().max()! + 2 * d.max()! + d.dropFirst().reduce(0, +) + d.dropFirst().dropLast().reduce(0, +)
            return planes + grads + perSample * floatSize
        }
        let (h, ys) = Self.spans(size: height, tile: tile, geometry: geometry)
        let (w, xs) = Self.spans(size: width, tile: tile, geometry: geometry)
        let capacity = batchCapacity(height: h, width: w, tiles: ys.count * xs.count, batch: Self.defaultBatch)
        return planes + grads + capacity * h * w * geometry.arenaBytesPerPixel
    }

    /// The most tiles (or stacked-model images) run in one forward.
    public static let defaultBatch = 50

    /// `count` images of height x width, planes [count, C, H, W] with values in [0,1], into `out`,
    /// same layout. Up to `batch` tiles run in one forward.
    public func denoise(_ images: UnsafePointer<Float>, count: Int, height: Int, width: Int,
                        into out: UnsafeMutablePointer<Float>, batch: Int = ImageDenoiser.defaultBatch) {
        let sample = geometry.channels * height * width
        run((0..<count).map { Job(source: images + $0 * sample, target: out + $0 * sample, height: height, width: width) }, batch: batch)
    }

    /// Images of several sizes; tiles of the same shape share forwards across images.
    public func denoise(_ images: [ImagePlanes], batch: Int = ImageDenoiser.defaultBatch) -> [ImagePlanes] {
        var jobs: [Job] = []
        // The inputs' and outputs' pointers are valid only inside their closures: nest them, one
        // image at a time, and denoise once all are open.
        func nest(_ i: Int) -> [[Float]] {
            guard i < images.count else {
                run(jobs, batch: batch)
                return []
            }
            let image = images[i], sample = geometry.channels * image.height * image.width
            precondition(image.values.count == image.count * sample, "ImagePlanes values do not match count x channels x height x width")
            var rest: [[Float]] = []
            let out = [Float](unsafeUninitializedCapacity: image.values.count) { buffer, initialized in
                image.values.withUnsafeBufferPointer { source in
                    for k in 0..<image.count {
                        jobs.append(Job(source: source.baseAddress! + k * sample, target: buffer.baseAddress! + k * sample,
                                        height: image.height, width: image.width))
                    }
                    rest = nest(i + 1)
                }
                // every pixel is written: the tiles' owned regions cover each image
                initialized = image.values.count
            }
            return [out] + rest
        }
        return zip(images, nest(0)).map { ImagePlanes(count: $0.count, height: $0.height, width: $0.width, values: $1) }
    }

    /// One image to denoise: C planes of height x width at `source`, the result to `target`.
    struct Job {
        let source: UnsafePointer<Float>
        let target: UnsafeMutablePointer<Float>
        let height: Int, width: Int
    }

    /// A tile of job `job`: the network's input is the padded image's rows y0 ..< y0 + tile height
    /// and columns x0 ..< x0 + tile width; its output is kept for rows `ownY` and columns `ownX`
    /// (image coordinates), the part no other tile keeps.
    struct Tile {
        let job: Int
        let y0: Int, x0: Int
        let ownY: Range<Int>, ownX: Range<Int>
    }

    /// Tiles along one axis of `size` pixels: the tile side there and each tile's origin and the
    /// pixels it keeps. The image is padded to a multiple of sideMultiple, as the untiled run pads
    /// it. A padded side up to `tile` is one tile, the untiled run itself. Otherwise tiles of side
    /// `tile` start at multiples of sideMultiple, `tile - 2 margin` apart, and the last one ends
    /// exactly at the padded edge: a tile that went past it would see replicated pixels where the
    /// untiled run's convolutions see their zero padding. Each tile keeps from its first pixel
    /// past its leading margin (the image's start for the first) to where the next tile's kept
    /// pixels begin, so kept pixels always have their whole context inside the tile, or the
    /// image's own edge where the untiled run has it too.
    static func spans(size: Int, tile: Int?, geometry: TileGeometry) -> (side: Int, [(origin: Int, kept: Range<Int>)]) {
        guard let tile else { return (size, [(0, 0..<size)]) }
        let m = geometry.sideMultiple, margin = geometry.margin
        let padded = (size + m - 1) / m * m
        guard padded > tile else { return (padded, [(0, 0..<size)]) }
        var origins = [0]
        while origins.last! + tile < padded { origins.append(min(origins.last! + tile - 2 * margin, padded - tile)) }
        let spans = origins.indices.map { k in
            let start = k == 0 ? 0 : origins[k] + margin
            let end = k == origins.count - 1 ? size : min(origins[k + 1] + margin, size)
            return (origins[k], start ..< end)
        }
        return (tile, spans)
    }

    /// Tiles of height x width per forward: up to `batch` and `tiles`, and within `memoryBudget`
    /// (at least one, however large the tile asked for).
    func batchCapacity(height: Int, width: Int, tiles: Int, batch: Int) -> Int {
        guard tile != nil else { return max(1, min(batch, tiles)) }
        let fit = Self.memoryBudget / (height * width * geometry.arenaBytesPerPixel)
        return max(1, min(batch, tiles, fit))
    }

    func run(_ jobs: [Job], batch: Int) {
        precondition(batch > 0)
        // The tiles of all images, grouped by tile shape in order of first appearance: a network
        // has one input shape, and images larger than a tile all share the tile x tile shape.
        var groups: [(height: Int, width: Int, tiles: [Tile])] = []
        for (j, job) in jobs.enumerated() {
            let (h, ys) = Self.spans(size: job.height, tile: tile, geometry: geometry)
            let (w, xs) = Self.spans(size: job.width, tile: tile, geometry: geometry)
            var tiles: [Tile] = []
            tiles.reserveCapacity(ys.count * xs.count)
            for y in ys { for x in xs { tiles.append(Tile(job: j, y0: y.origin, x0: x.origin, ownY: y.kept, ownX: x.kept)) } }
            if let g = groups.firstIndex(where: { $0.height == h && $0.width == w }) {
                groups[g].tiles += tiles
            } else {
                groups.append((h, w, tiles))
            }
        }
        for group in groups {
            let capacity = batchCapacity(height: group.height, width: group.width, tiles: group.tiles.count, batch: batch)
            let network = network(height: group.height, width: group.width, capacity: capacity)
            var first = 0
            while first < group.tiles.count {
                let n = min(capacity, group.tiles.count - first)
                for i in 0..<n { load(group.tiles[first + i], of: jobs, into: network.input, slot: i, height: group.height, width: group.width) }
                network.forward(n: n)
                for i in 0..<n { keep(group.tiles[first + i], of: jobs, from: network.output, slot: i, height: group.height, width: group.width) }
                first += n
            }
        }
    }

    /// The network for tiles of height x width and batches of `capacity`: the cached one if it
    /// fits, else a new one that replaces it (so only one is alive at a time).
    func network(height: Int, width: Int, capacity: Int) -> DenoisingNetwork {
        if let c = cached, c.height == height, c.width == width, c.capacity >= capacity { return c.network }
        cached = nil   // released before the next is allocated
        let network = model.makeImageAutoencoder(height: height, width: width, capacity: capacity, parameters: params, afterPhase: phase)
        cached = (height, width, capacity, network)
        return network
    }

    /// Copies a tile into batch slot `slot` of the network's input [n, C, h, w], repeating the
    /// image's last row and column past its bottom and right edges.
    func load(_ tile: Tile, of jobs: [Job], into input: UnsafeMutablePointer<Float>, slot: Int, height h: Int, width w: Int) {
        let job = jobs[tile.job], (H, W) = (job.height, job.width)
        let inside = min(w, W - tile.x0)   // columns of the tile within the image (at least one)
        for c in 0..<geometry.channels {
            let plane = job.source + c * H * W, dst = input + (slot * geometry.channels + c) * h * w
            for y in 0..<h {
                let row = plane + min(tile.y0 + y, H - 1) * W, out = dst + y * w
                out.update(from: row + tile.x0, count: inside)
                for x in inside ..< w { out[x] = row[W - 1] }
            }
        }
    }

    /// Copies the kept part of batch slot `slot` of the network's output into the tile's image.
    func keep(_ tile: Tile, of jobs: [Job], from output: UnsafeMutablePointer<Float>, slot: Int, height h: Int, width w: Int) {
        let job = jobs[tile.job], (H, W) = (job.height, job.width)
        for c in 0..<geometry.channels {
            let src = output + (slot * geometry.channels + c) * h * w, plane = job.target + c * H * W
            for y in tile.ownY {
                (plane + y * W + tile.ownX.lowerBound).update(from: src + (y - tile.y0) * w + tile.ownX.lowerBound - tile.x0,
                                                              count: tile.ownX.count)
            }
        }
    }
}
