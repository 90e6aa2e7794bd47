// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "dae-dist",
    products: [
        .executable(name: "dae-dist", targets: ["dae-dist"]),
        .library(name: "DAE", targets: ["DAE"]),
    ],
    // MPI is on by default; `swift build --disable-default-traits` builds a dae-dist with no MPI
    // dependency at all (a laptop without Open MPI), which always runs as a single process.
    traits: [
        .trait(name: "MPI", description: "Data parallelism over Open MPI (pkg-config ompi-c)."),
        .default(enabledTraits: ["MPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // System libraries, found by pkg-config (Debian: libopenblas-dev, zlib1g-dev, libpng-dev).
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        // libpng (Debian: libpng-dev): PNG images in and out (denoise, grids).
        .systemLibrary(name: "CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        // libjpeg-turbo's TurboJPEG API (Debian: libturbojpeg0-dev) and libtiff (libtiff-dev):
        // JPEG and TIFF images in --data folders.
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CTIFF", pkgConfig: "libtiff-4",
                       providers: [.apt(["libtiff-dev"])]),
        // Open MPI (Debian: libopenmpi-dev, openmpi-bin), only with the MPI trait.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        // dae-dist's own C kernels, each compiled for its instruction set by a function attribute
        // and chosen at run time by the CPU's features (no -march flag: the build runs anywhere).
        .target(name: "CKernels"),
        // The library: data, model, kernels, optimizer, checkpoints, training loop.
        .target(name: "DAE", dependencies: [
                    "CBLAS", "CZlib", "CPNG", "CTurboJPEG", "CTIFF", "CKernels",
                    .target(name: "CMPI", condition: .when(traits: ["MPI"])),
                ]),
        // The command-line tool.
        .executableTarget(name: "dae-dist", dependencies: [
            "DAE",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // The library's unit tests: PyTorch-reference fixtures, gradient checks, hand-computed values.
        .testTarget(name: "DAETests", dependencies: ["DAE"],
                    resources: [.copy("Fixtures")]),
        // End-to-end tests of the built `dae-dist` binary: flags, errors and exit codes, outputs.
        .testTarget(name: "EndToEndTests", dependencies: ["DAE", "dae-dist"]),
    ]
)
