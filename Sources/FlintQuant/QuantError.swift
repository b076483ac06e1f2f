// How far a reconstruction (dequantized or half-precision values) is from the original tensor.
// Sums are accumulated in Double so a tensor of millions of elements does not lose the small error terms.

import FlintFormat

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Running sums for one tensor, fed in pieces (a tensor converted in chunks) or all at once.
public struct QuantErrorAccumulator: Sendable, Equatable {
    public private(set) var count: Int = 0
    /// Σx²
    public private(set) var signalEnergy: Double = 0
    /// Σ(x − x̂)²
    public private(set) var errorEnergy: Double = 0
    /// Σx̂²
    public private(set) var reconstructedEnergy: Double = 0
    /// Σx·x̂
    public private(set) var crossProduct: Double = 0
    /// max |x − x̂|
    public private(set) var maxAbsError: Double = 0

    public init() {}

    /// Adds matching pieces of the original and the reconstruction (same count).
    public mutating func add(original: UnsafeBufferPointer<Float>, reconstructed: UnsafeBufferPointer<Float>) {
        precondition(original.count == reconstructed.count,
                     "QuantErrorAccumulator: \(original.count) original values vs \(reconstructed.count) reconstructed")
        var signal = 0.0, error = 0.0, recon = 0.0, cross = 0.0, maxError = maxAbsError
        for i in 0..<original.count {
            let x = Double(original[i]), y = Double(reconstructed[i])
            let d = x - y
            signal += x * x
            error += d * d
            recon += y * y
            cross += x * y
            // NaN differences must surface, not be skipped by the comparison.
            if !(d.magnitude <= maxError) { maxError = d.magnitude }
        }
        count += original.count
        signalEnergy += signal
        errorEnergy += error
        reconstructedEnergy += recon
        crossProduct += cross
        maxAbsError = maxError
    }

    /// 10·log10(Σx² / Σ(x−x̂)²): +∞ for an exact reconstruction (including all-zero tensors), −∞ when the
    /// original is all zeros but the reconstruction is not.
    public var snrDB: Double {
        if errorEnergy == 0 { return .infinity }
        if signalEnergy == 0 { return -.infinity }
        return 10 * log10(signalEnergy / errorEnergy)
    }

    /// Σx·x̂ / √(Σx²·Σx̂²); 1 when both are all zeros, 0 when exactly one is.
    public var cosine: Double {
        if signalEnergy == 0 && reconstructedEnergy == 0 { return 1 }
        if signalEnergy == 0 || reconstructedEnergy == 0 { return 0 }
        return crossProduct / (signalEnergy * reconstructedEnergy).squareRoot()
    }

    /// The summary of everything added so far.
    public var summary: QuantErrorSummary {
        QuantErrorSummary(count: count, snrDB: snrDB, maxAbsError: maxAbsError, cosine: cosine)
    }
}

/// Error measures of one tensor.
public struct QuantErrorSummary: Sendable, Equatable {
    public var count: Int
    /// Signal-to-noise ratio in dB; `+infinity` for an exact reconstruction (see `QuantError.jsonSNR`).
    public var snrDB: Double
    public var maxAbsError: Double
    public var cosine: Double

    public init(count: Int, snrDB: Double, maxAbsError: Double, cosine: Double) {
        self.count = count
        self.snrDB = snrDB
        self.maxAbsError = maxAbsError
        self.cosine = cosine
    }
}

public enum QuantError {
    /// 10·log10(Σx² / Σ(x−x̂)²) in Double; `+infinity` when the reconstruction is exact.
    public static func snrDB(original: UnsafeBufferPointer<Float>, reconstructed: UnsafeBufferPointer<Float>) -> Double {
        measure(original: original, reconstructed: reconstructed).snrDB
    }

    public static func snrDB(original: [Float], reconstructed: [Float]) -> Double {
        measure(original: original, reconstructed: reconstructed).snrDB
    }

    /// SNR, max abs error and cosine similarity in one pass.
    public static func measure(original: UnsafeBufferPointer<Float>, reconstructed: UnsafeBufferPointer<Float>) -> QuantErrorSummary {
        var acc = QuantErrorAccumulator()
        acc.add(original: original, reconstructed: reconstructed)
        return acc.summary
    }

    public static func measure(original: [Float], reconstructed: [Float]) -> QuantErrorSummary {
        original.withUnsafeBufferPointer { o in
            reconstructed.withUnsafeBufferPointer { r in measure(original: o, reconstructed: r) }
        }
    }

    /// JSON has no infinity: an SNR for JSON output is the finite value, or `nil` (print `null`, meaning
    /// "exact, infinite SNR") for +∞. −∞ (an all-zero tensor reconstructed as non-zero) and NaN also map to `nil`;
    /// callers that need to tell them apart can check `snrDB` themselves.
    public static func jsonSNR(_ snrDB: Double) -> Double? {
        snrDB.isFinite ? snrDB : nil
    }
}
