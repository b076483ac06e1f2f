// Per-channel statistics of the activations entering each linear layer, gathered by running the float model on
// calibration prompts (FlintCalibration). Conversion reads them to smooth activation outliers into the weights
// (SmoothQuant); the .flint file keeps a per-layer summary (Formats/FLINT.md, "calibration").

import FlintFormat

/// What one linear layer's input looked like over the calibration rows (tokens).
public struct ChannelStatistics: Sendable, Equatable {
    /// max |x[:, c]| over every calibration row, per input channel c.
    public var absMax: [Float]
    /// The `ActivationStatistics.percentile`-th percentile of |x[:, c]| per channel: the value that at most
    /// (100 − percentile) % of the rows exceed (a robust maximum: one stray token does not set it).
    public var percentile: [Float]
    /// How many rows (tokens) were seen.
    public var rows: Int

    public init(absMax: [Float], percentile: [Float], rows: Int) {
        self.absMax = absMax
        self.percentile = percentile
        self.rows = rows
    }

    public var channels: Int { absMax.count }

    /// The largest channel maximum, and the median channel maximum (the typical scale the outliers stand out from).
    public var largest: Float { absMax.max() ?? 0 }
    public var medianAbsMax: Float {
        guard !absMax.isEmpty else { return 0 }
        return absMax.sorted()[absMax.count / 2]
    }

    /// The `count` channels with the largest maxima, largest first.
    public func topChannels(_ count: Int) -> [(channel: Int, absMax: Float)] {
        absMax.enumerated().sorted { $0.element > $1.element || ($0.element == $1.element && $0.offset < $1.offset) }
            .prefix(count).map { (channel: $0.offset, absMax: $0.element) }
    }
}

/// Statistics for every linear layer, keyed by the layer's weight name (`encoder.block.0.layer.0.SelfAttention.q.weight`).
public struct ActivationStatistics: Sendable, Equatable {
    public var layers: [String: ChannelStatistics]
    /// The percentile `ChannelStatistics.percentile` holds (e.g. 99.9).
    public var percentile: Double
    /// Calibration prompts run, and where they came from ("built-in verify prompts" or a file path).
    public var prompts: Int
    public var promptSource: String
    /// Tokens generated per prompt (the decoder side of the calibration).
    public var maxNewTokens: Int

    public init(layers: [String: ChannelStatistics], percentile: Double, prompts: Int, promptSource: String,
                maxNewTokens: Int) {
        self.layers = layers
        self.percentile = percentile
        self.prompts = prompts
        self.promptSource = promptSource
        self.maxNewTokens = maxNewTokens
    }
}

/// Accumulates `ChannelStatistics` for one layer, row by row: the running maximum, and the K largest values of
/// each channel (K = `tracked`), from which the percentile is read exactly while
/// `rows · (100 − percentile) / 100 < tracked`, and as the K-th largest value beyond that (a slightly higher
/// percentile; `percentileIsExact` says which). Memory: (K + 1) floats per channel.
public struct ChannelStatisticsAccumulator: Sendable {
    public let channels: Int
    public let tracked: Int
    public private(set) var rows = 0
    private var absMax: [Float]
    /// Per channel, the `tracked` largest |x| seen, ascending (slot 0 is the smallest of them).
    private var top: [Float]

    public init(channels: Int, tracked: Int = 16) {
        precondition(channels > 0 && tracked > 0)
        self.channels = channels
        self.tracked = tracked
        absMax = [Float](repeating: 0, count: channels)
        top = [Float](repeating: 0, count: channels * tracked)
    }

    /// Adds `rows` rows of `channels` values each (row-major, contiguous). NaN and ±∞ are ignored.
    public mutating func add(_ x: UnsafePointer<Float>, rows count: Int) {
        let k = tracked
        absMax.withUnsafeMutableBufferPointer { maxima in
            top.withUnsafeMutableBufferPointer { top in
                for r in 0..<count {
                    let row = x + r * channels
                    for c in 0..<channels {
                        let v = Swift.abs(row[c])
                        guard v.isFinite else { continue }
                        if v > maxima[c] { maxima[c] = v }
                        let base = c * k
                        guard v > top[base] else { continue }
                        // Insert into the ascending run, dropping its smallest.
                        var i = 0
                        while i + 1 < k && top[base + i + 1] < v {
                            top[base + i] = top[base + i + 1]
                            i += 1
                        }
                        top[base + i] = v
                    }
                }
            }
        }
        rows += count
    }

    /// Whether `statistics(percentile:)` is the exact percentile (enough values tracked for this many rows).
    public func percentileIsExact(_ percentile: Double) -> Bool {
        excluded(percentile) < tracked
    }

    /// Rows allowed above the percentile: ⌊rows · (100 − p) / 100⌋.
    private func excluded(_ percentile: Double) -> Int {
        // The small epsilon keeps 2000 · (100 − 99.9) / 100 = 1.9999… from rounding down to 1.
        Int((Double(rows) * (100 - percentile) / 100 + 1e-9).rounded(.down))
    }

    public func statistics(percentile: Double) -> ChannelStatistics {
        // The value with `excluded` values above it is the (excluded + 1)-th largest.
        let rank = min(excluded(percentile), tracked - 1, max(0, rows - 1))
        var p = [Float](repeating: 0, count: channels)
        for c in 0..<channels { p[c] = top[c * tracked + tracked - 1 - rank] }
        return ChannelStatistics(absMax: absMax, percentile: p, rows: rows)
    }
}
