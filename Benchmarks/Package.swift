// swift-tools-version: 6.1
// Micro-benchmarks of Flint's matrix kernels (ordo-one/benchmark). A separate package so that the main build and
// `swift test` never compile the benchmark library. Run from the repository root:
//   swift package --package-path Benchmarks benchmark --target Int8Kernels --no-progress
import PackageDescription

let package = Package(
    name: "FlintBenchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(path: ".."),
        // Only the malloc interposer trait: the default "RuntimeInterposer" trait pulls in a package this
        // machine's package mirror does not carry.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "Int8Kernels",
            dependencies: [
                .product(name: "Flint", package: "main"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/Int8Kernels",
            swiftSettings: [.unsafeFlags(["-Ounchecked"])],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v5]
)
