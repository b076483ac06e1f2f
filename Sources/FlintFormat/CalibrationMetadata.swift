// The `calibration` object of the .flint metadata (Formats/FLINT.md, "Calibration"): what the activations of
// every linear layer looked like on the calibration prompts, and which smoothing folds conversion applied.

/// One linear layer's input over the calibration rows.
public struct CalibrationLayerSummary: Codable, Sendable, Equatable {
    /// Rows (tokens) seen.
    public var rows: Int
    /// max |x| over every channel and row.
    public var absMax: Double
    /// The largest per-channel percentile (CalibrationSummary.percentile) of |x|.
    public var percentileMax: Double
    /// The median over channels of the per-channel maximum: the scale outliers stand out from.
    public var medianChannelAbsMax: Double
    /// The channels with the largest maxima, largest first: `[channel, abs_max]` pairs.
    public var topChannels: [[Double]]

    public init(rows: Int, absMax: Double, percentileMax: Double, medianChannelAbsMax: Double, topChannels: [[Double]]) {
        self.rows = rows
        self.absMax = absMax
        self.percentileMax = percentileMax
        self.medianChannelAbsMax = medianChannelAbsMax
        self.topChannels = topChannels
    }

    enum CodingKeys: String, CodingKey {
        case rows
        case absMax = "abs_max"
        case percentileMax = "percentile_max"
        case medianChannelAbsMax = "median_channel_abs_max"
        case topChannels = "top_channels"
    }
}

/// One smoothing fold: `producer` divided by per-channel scales s, `consumers`' input columns multiplied by s.
public struct SmoothingFold: Codable, Sendable, Equatable {
    public var producer: String
    /// `element` (a layer-norm weight) or `row` (a linear layer's output channel).
    public var producerAxis: String
    public var consumers: [String]
    /// s_j per channel: the producer's element/row j was divided by it, each consumer's column j multiplied.
    public var scales: [Float]
    /// The consumers' largest input channel before smoothing (calibration) and after (max_j max|x_j| / s_j).
    public var activationMaxBefore: Double
    public var activationMaxAfter: Double
    public var minScale: Double
    public var maxScale: Double

    public init(producer: String, producerAxis: String, consumers: [String], scales: [Float],
                activationMaxBefore: Double, activationMaxAfter: Double, minScale: Double, maxScale: Double) {
        self.producer = producer
        self.producerAxis = producerAxis
        self.consumers = consumers
        self.scales = scales
        self.activationMaxBefore = activationMaxBefore
        self.activationMaxAfter = activationMaxAfter
        self.minScale = minScale
        self.maxScale = maxScale
    }

    enum CodingKeys: String, CodingKey {
        case producer, consumers, scales
        case producerAxis = "producer_axis"
        case activationMaxBefore = "activation_max_before"
        case activationMaxAfter = "activation_max_after"
        case minScale = "min_scale"
        case maxScale = "max_scale"
    }
}

public struct SmoothingSummary: Codable, Sendable, Equatable {
    /// Migration strength α of s_j = max|x_j|^α / max|W_j|^(1−α).
    public var alpha: Double
    public var folds: [SmoothingFold]

    public init(alpha: Double, folds: [SmoothingFold]) {
        self.alpha = alpha
        self.folds = folds
    }
}

public struct CalibrationSummary: Codable, Sendable, Equatable {
    public var prompts: Int
    /// "built-in verify prompts" or the --calibration file's name.
    public var promptSource: String
    public var maxNewTokens: Int
    /// The percentile `percentile_max` refers to (e.g. 99.9).
    public var percentile: Double
    /// Keyed by the linear layer's weight name.
    public var layers: [String: CalibrationLayerSummary]
    /// Nil when the statistics were recorded but nothing was smoothed.
    public var smoothing: SmoothingSummary?

    public init(prompts: Int, promptSource: String, maxNewTokens: Int, percentile: Double,
                layers: [String: CalibrationLayerSummary], smoothing: SmoothingSummary?) {
        self.prompts = prompts
        self.promptSource = promptSource
        self.maxNewTokens = maxNewTokens
        self.percentile = percentile
        self.layers = layers
        self.smoothing = smoothing
    }

    enum CodingKeys: String, CodingKey {
        case prompts
        case promptSource = "prompt_source"
        case maxNewTokens = "max_new_tokens"
        case percentile, layers, smoothing
    }
}
