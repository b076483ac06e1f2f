// Options several commands share, each declared once as an @OptionGroup type (parsed and validated by
// ArgumentParser before the command's own validate() runs).

import ArgumentParser
import Flint
import FlintCheckpoint
import FlintFormat
import FlintKernels

/// `--kernels auto|weight-only|w8a8` of run, verify, bench and embed. `auto` (the default) picks the fastest
/// kernels that stay faithful for the file: W8A8 (int8 activations) when conversion smoothed the model's
/// activation outliers into its weights (metadata `calibration.smoothing`), weight-only otherwise — a
/// data-free file's activation outliers are exactly what per-row int8 activations cannot carry.
enum KernelChoice: String, CaseIterable, ExpressibleByArgument {
    case auto
    case weightOnly = "weight-only"
    case w8a8

    static let help = "Int8 kernels: auto (w8a8 for files converted with calibration+smoothing, else weight-only), weight-only (int8 weights, float math) or w8a8 (int8 activations too, faster)."

    /// Names are matched without regard to case (`W8A8` works), as before.
    init?(argument: String) {
        self.init(rawValue: argument.lowercased())
    }

    /// The kernels this choice runs for these weights.
    /// The library's rule (`FlintModel.Kernels.mode(for:)`), so `flint run` and `FlintModel` agree.
    func resolve(for weights: WeightSource) -> Int8KernelMode {
        let kernels: FlintModel.Kernels
        switch self {
        case .auto: kernels = .auto
        case .weightOnly: kernels = .weightOnly
        case .w8a8: kernels = .w8a8
        }
        // Only `.dequantized` (not offered by the commands) widens int8 to float32.
        return kernels.mode(for: weights) ?? .weightOnly
    }
}

/// `--kernels` and `--threads`: how the model's matrix products run.
struct KernelOptions: ParsableArguments {
    @Option(help: ArgumentHelp(KernelChoice.help))
    var kernels: KernelChoice = .auto

    @Option(help: "Threads for the matrix kernels, 1–1024 (default: all active processors).")
    var threads: Int?

    func validate() throws {
        if let threads, !(1...ThreadPool.maximumThreads).contains(threads) {
            throw ValidationError("--threads must be between 1 and \(ThreadPool.maximumThreads), got \(threads)")
        }
    }

    /// The pool the kernels run on: `--threads N` gets its own, otherwise the process-wide one.
    func makePool() -> ThreadPool {
        threads.map { ThreadPool(threads: $0) } ?? ThreadPool.shared
    }

    /// The int8 kernel mode for these weights (`auto` looks at how the file was converted).
    func mode(for weights: WeightSource) -> Int8KernelMode {
        kernels.resolve(for: weights)
    }
}

/// `--kv-cache`: the precision of the decoder's attention caches.
enum AttentionCacheChoice: String, CaseIterable, ExpressibleByArgument {
    case auto, f32, f16

    static let help = "Decoder key/value caches: auto (f16 for int8/int4 models, f32 for float ones), f32 or f16 (half the bytes each decoding step reads; rounding far below int8 error)."

    /// nil: the model's default (`T5ForConditionalGeneration.defaultAttentionCache`).
    var precision: AttentionCachePrecision? {
        switch self {
        case .auto: return nil
        case .f32: return .f32
        case .f16: return .f16
        }
    }
}

struct AttentionCacheOptions: ParsableArguments {
    @Option(name: .customLong("kv-cache"), help: ArgumentHelp(AttentionCacheChoice.help))
    var choice: AttentionCacheChoice = .auto
}

/// `--json`: the result as JSON on stdout instead of text (each command's discussion describes the fields).
struct JSONOption: ParsableArguments {
    @Flag(help: "Print the result as JSON.")
    var json = false
}

/// `--force`, shared by every command that writes a file: without it an existing output is never replaced.
struct OverwriteOptions: ParsableArguments {
    @Flag(help: "Replace the output file if it exists (an output that is one of the inputs is refused even so).")
    var force = false
}

/// What a command's required `-o/--output` file is, for its help line.
protocol OutputFileKind {
    static var help: String { get }
}

/// A .flint model file (`convert`).
enum FlintOutputFile: OutputFileKind {
    static let help = "Output .flint file."
}

/// A safetensors checkpoint (`export`).
enum SafetensorsOutputFile: OutputFileKind {
    static let help = "Output .safetensors file."
}

/// A required `-o/--output FILE` with `--force`: the file is written to a temporary name and renamed into
/// place, and an existing one is replaced only with --force.
struct OutputFileOptions<Kind: OutputFileKind>: ParsableArguments {
    @Option(name: .shortAndLong, help: ArgumentHelp(Kind.help))
    var output: String

    @OptionGroup var overwrite: OverwriteOptions

    init() {}

    var force: Bool { overwrite.force }

    func validate() throws {
        guard !output.isEmpty, !output.hasSuffix("/") else { throw ValidationError("--output must name a file") }
    }
}

/// `convert --from safetensors|pytorch|h5|msgpack`.
extension CheckpointFormat: ExpressibleByArgument {}
