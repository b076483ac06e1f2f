// swift-tools-version: 6.1
// Flint: T5 / FLAN-T5 checkpoints → memory-mapped .flint files with int8 weights, run and verified.
//
// Modules, with dependencies pointing one way (each target declares exactly the modules its files import):
//   FlintFormat ← FlintQuant ← FlintKernels ← FlintT5 ← FlintVerify      the engine (FlintTokenizer beside it)
//   FlintFormat ← FlintCheckpoint ← FlintConvert (+ FlintQuant)           checkpoints in, .flint out
//   FlintCheckpoint ← FlintHub (hf: downloads); FlintFormat ← FlintPack (.flint.zst)
//   FlintConvert + FlintVerify ← FlintRecipe (convert --target-top1)
//   FlintConvert + FlintT5 + FlintVerify ← FlintCalibration (calibrate, smooth, then convert: the default recipe)
//   all of the above ← Flint (`import Flint`: FlintModel, model opening, every module re-exported)
//   FlintT5 + FlintTokenizer ← FlintServe (`flint serve`: HTTP API, batching scheduler; Hummingbird)
//   Flint + FlintServe ← FlintCLI (the commands) ← FlintTool (the `flint` executable)
// No target uses unsafe build flags (-Ounchecked), so other packages can depend on Flint by version.
import PackageDescription

let package = Package(
    name: "Flint",
    platforms: [.macOS(.v13)],
    products: [
        // `import Flint` is enough; the modules are listed so that `import FlintT5` etc. keep working.
        .library(name: "Flint", targets: [
            "Flint", "FlintFormat", "FlintCheckpoint", "FlintQuant", "FlintConvert", "FlintPack", "FlintHub",
            "FlintTokenizer", "FlintKernels", "FlintT5", "FlintVerify", "FlintRecipe", "FlintCalibration",
        ]),
        .executable(name: "flint", targets: ["FlintTool"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // flint serve: Hummingbird 2 without its default traits (no swift-configuration), with the SwiftNIO,
        // service-lifecycle and swift-log it builds on, and swift-prometheus for /metrics.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // The .flint container: header, metadata, tensor table, reader (mmap) and atomic writer.
        .target(name: "FlintFormat"),
        // Hugging Face checkpoint readers (safetensors, PyTorch, Keras h5, Flax msgpack, config.json, shards).
        .target(name: "FlintCheckpoint", dependencies: ["FlintFormat", "CHDF5"]),
        // libhdf5 through a system library target (Keras tf_model.h5 checkpoints).
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"]), .brew(["hdf5"])]),
        // Hugging Face Hub download (hf:OWNER/NAME[@REV]) into the cache layout huggingface_hub uses (URLSession).
        .target(name: "FlintHub", dependencies: ["FlintFormat", "FlintCheckpoint"]),
        // Int8 per-row / per-group quantizers, half-precision conversion, error measures.
        .target(name: "FlintQuant", dependencies: ["FlintFormat"]),
        // Checkpoint folder → .flint file, with the quantization plan and keep-list.
        .target(name: "FlintConvert", dependencies: ["FlintFormat", "FlintCheckpoint", "FlintQuant"]),
        // libzstd through a system library target.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // .flint.zst distribution packing.
        .target(name: "FlintPack", dependencies: ["FlintFormat", "CZstd"]),
        // A plain C interface over libsentencepiece (C++).
        .target(name: "CSentencePiece", linkerSettings: [.linkedLibrary("sentencepiece"), .linkedLibrary("stdc++")]),
        // T5Tokenizer-compatible tokenizer (sentinels, </s>, decode).
        .target(name: "FlintTokenizer", dependencies: ["FlintFormat", "CSentencePiece"]),
        // AVX-512 / AVX2 / NEON int8 kernels in C (Swift on Linux cannot target wider vectors per function),
        // chosen at run time.
        .target(name: "CFlintKernels"),
        // Float and int8 matrix kernels, thread pool.
        .target(name: "FlintKernels", dependencies: ["FlintFormat", "FlintQuant", "CFlintKernels"]),
        // The T5 model and decoding (greedy, beam, sampling).
        .target(name: "FlintT5", dependencies: ["FlintFormat", "FlintKernels"]),
        // Quantized-vs-float comparison.
        .target(name: "FlintVerify", dependencies: ["FlintFormat", "FlintKernels", "FlintQuant", "FlintT5", "FlintTokenizer"]),
        // Automatic recipe search (`convert --target-top1`): per-tensor sensitivity, finer forms until the target holds.
        .target(name: "FlintRecipe", dependencies: ["FlintFormat", "FlintCheckpoint", "FlintQuant", "FlintConvert",
                                                    "FlintKernels", "FlintVerify"]),
        // Calibration at conversion: per-channel statistics of every linear layer's input on calibration prompts.
        .target(name: "FlintCalibration", dependencies: ["FlintFormat", "FlintCheckpoint", "FlintConvert", "FlintKernels", "FlintQuant", "FlintT5",
                                                         "FlintTokenizer", "FlintVerify"]),
        // `flint serve`: the HTTP API (OpenAI-compatible completions, embeddings, tokenize) and the scheduler that
        // batches concurrent requests into shared encoder and decoder steps.
        .target(name: "FlintServe", dependencies: [
            "FlintFormat", "FlintKernels", "FlintT5", "FlintTokenizer",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        // The library's front door: FlintModel (open, generate, stream, embed, tokenize) and every module above.
        .target(name: "Flint", dependencies: [
            "FlintFormat", "FlintCheckpoint", "FlintQuant", "FlintConvert", "FlintPack", "FlintHub",
            "FlintTokenizer", "FlintKernels", "FlintT5", "FlintVerify", "FlintRecipe", "FlintCalibration",
        ]),
        // The commands of the command-line tool (a library, so tests can run them in-process).
        .target(name: "FlintCLI", dependencies: [
            "Flint", "FlintFormat", "FlintCheckpoint", "FlintQuant", "FlintConvert", "FlintPack",
            "FlintTokenizer", "FlintKernels", "FlintT5", "FlintVerify", "FlintHub", "FlintRecipe", "FlintCalibration",
            "FlintServe",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // The `flint` executable: only the entry point. (Not named "flint": Sources/flint and Sources/Flint would
        // be one folder on a case-insensitive file system.)
        .executableTarget(name: "FlintTool", dependencies: ["FlintCLI"]),

        // Fuzz harnesses (Fuzz/, `make fuzz`): libFuzzer targets when built with -DFUZZING and
        // -sanitize=fuzzer,address; in a plain build, replay tools that run files through the same code.
        .target(name: "FuzzSupport", dependencies: ["FlintFormat"], path: "Fuzz/Support"),
        .executableTarget(name: "fuzz-flint-file", dependencies: ["FuzzSupport", "FlintFormat"], path: "Fuzz/FlintFile"),
        .executableTarget(name: "fuzz-safetensors", dependencies: ["FuzzSupport", "FlintFormat", "FlintCheckpoint"], path: "Fuzz/Safetensors"),
        .executableTarget(name: "fuzz-pickle-zip", dependencies: ["FuzzSupport", "FlintFormat", "FlintCheckpoint"], path: "Fuzz/PickleZip"),
        .executableTarget(name: "fuzz-msgpack", dependencies: ["FuzzSupport", "FlintFormat", "FlintCheckpoint"], path: "Fuzz/Msgpack"),
        .executableTarget(name: "fuzz-sentencepiece", dependencies: ["FuzzSupport", "FlintFormat", "FlintTokenizer"], path: "Fuzz/Sentencepiece"),
        .executableTarget(name: "fuzz-config-json", dependencies: ["FuzzSupport", "FlintFormat", "FlintCheckpoint"], path: "Fuzz/ConfigJSON"),
        .executableTarget(name: "fuzz-model", dependencies: ["FuzzSupport", "FlintFormat", "FlintT5"], path: "Fuzz/Model"),
        // The README's library example (Examples/Library/main.swift), built and run by FlintTests.
        .executableTarget(name: "flint-library-example", dependencies: ["Flint"], path: "Examples/Library"),

        // Fixture lookup and self-cleaning scratch folders, shared by the test targets.
        .target(name: "TestSupport", path: "Tests/Support"),
        .testTarget(name: "FlintFormatTests", dependencies: ["TestSupport", "FlintFormat"]),
        .testTarget(name: "FlintCheckpointTests", dependencies: ["TestSupport", "FlintCheckpoint", "FlintFormat", "CHDF5"]),
        .testTarget(name: "FlintQuantTests", dependencies: ["FlintQuant", "FlintFormat"]),
        .testTarget(name: "FlintConvertTests", dependencies: ["TestSupport", "FlintConvert", "FlintCheckpoint", "FlintFormat", "FlintQuant"]),
        .testTarget(name: "FlintPackTests", dependencies: ["TestSupport", "FlintPack", "FlintFormat"]),
        .testTarget(name: "FlintTokenizerTests", dependencies: ["TestSupport", "FlintTokenizer", "FlintCheckpoint", "FlintFormat"]),
        .testTarget(name: "FlintT5Tests", dependencies: ["TestSupport", "FlintT5", "FlintCheckpoint", "FlintFormat", "FlintKernels", "FlintQuant"]),
        // FlintCLI is not imported: the tests run the `flint` binary; it keeps `--target FlintCLITests` building it.
        .testTarget(name: "FlintCLITests", dependencies: ["TestSupport", "FlintCLI", "FlintFormat", "FlintPack"]),
        .testTarget(name: "FlintServeTests", dependencies: ["TestSupport", "FlintServe", "FlintT5", "FlintTokenizer", "FlintCheckpoint", "FlintFormat"]),
        .testTarget(name: "FlintVerifyTests", dependencies: ["TestSupport", "FlintVerify", "FlintConvert", "FlintCheckpoint", "FlintFormat",
                                                            "FlintKernels", "FlintQuant", "FlintTokenizer"]),
        .testTarget(name: "FlintKernelsTests", dependencies: ["FlintKernels", "FlintFormat"]),
        .testTarget(name: "FlintHubTests", dependencies: ["TestSupport", "FlintHub", "FlintFormat"]),
        .testTarget(name: "FlintRecipeTests", dependencies: ["TestSupport", "FlintRecipe", "FlintConvert", "FlintCheckpoint", "FlintFormat",
                                                             "FlintVerify", "FlintTokenizer"]),
        .testTarget(name: "FlintCalibrationTests", dependencies: ["TestSupport", "FlintCalibration", "FlintConvert", "FlintCheckpoint",
                                                                  "FlintFormat", "FlintQuant", "FlintT5", "FlintVerify",
                                                                  "FlintKernels", "FlintTokenizer"]),
        .testTarget(name: "FlintTests", dependencies: ["Flint", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
