// SmoothQuant-style migration of activation outliers into the weights (arXiv 2211.10438), folded exactly into
// the operator before each linear layer so the float model computes the same function:
//
//     y = W · x = (W · diag(s)) · (diag(s)⁻¹ · x)
//
// with, per input channel j, s_j = max|x_j|^α / max|W[:, j]|^(1−α) (the max over every layer reading that input).
// diag(s)⁻¹ goes into the producer of x: an RMS-norm weight (exactly: the norm multiplies by its weight last),
// the rows of `v` (attention is linear in the values), the rows of `wi_1` (the gated FFN multiplies the linear
// branch elementwise), or the rows of `wi` for a ReLU FFN (relu(x / s) = relu(x) / s for s > 0). Sites:
//
//     each block's self-attention layer_norm  → SelfAttention q, k, v columns
//     SelfAttention v rows                    → SelfAttention o columns
//     decoder cross-attention layer_norm      → EncDecAttention q columns
//     EncDecAttention v rows                  → EncDecAttention o columns
//     each block's FFN layer_norm             → wi_0, wi_1 (or wi) columns
//     wi_1 rows (gated) / wi rows (ReLU)      → wo columns
//     encoder.final_layer_norm                → every decoder block's EncDecAttention k, v columns  (across blocks)
//     decoder.final_layer_norm                → lm_head columns (untied models only: tied, the head is the embedding)
//
// Afterwards the activation a layer sees has channels about max|x_j|^(1−α) · max|W_j|^(1−α) — outlier channels
// shrink, and the weight columns they multiply grow — so both int8 activations and per-row int8 weights keep
// their precision. The statistics were measured on the original model; smoothing one site changes no other
// site's input (each fold is function-preserving at the linear layers' outputs).

import Foundation
import FlintCheckpoint
import FlintFormat
import FlintQuant

/// One fold: `producer` (element or rows) divided by s, `consumers`' columns multiplied by s.
public struct SmoothingSite: Sendable, Equatable {
    public var producer: String
    public var producerAxis: ChannelScaling.Axis
    public var consumers: [String]
    /// The layer whose input statistics set the scales (every consumer reads the same input).
    public var statisticsLayer: String
}

public struct SmoothingPlan: Sendable {
    public var alpha: Double
    public var scalings: [ChannelScaling]
    public var folds: [SmoothingFold]
}

public enum Smoothing {
    /// SmoothQuant's default migration strength.
    public static let defaultAlpha = 0.5
    /// Scales are clamped to [1/limit, limit]: a dead channel (never active) must not blow its weights up.
    static let scaleLimit: Float = 1e4

    /// Every fold the model allows (tensor names as in the checkpoint).
    public static func sites(config: T5Config) -> [SmoothingSite] {
        var sites: [SmoothingSite] = []
        let gated = config.isGatedFFN, relu = config.activation == .relu
        func add(_ producer: String, _ axis: ChannelScaling.Axis, _ consumers: [String]) {
            sites.append(SmoothingSite(producer: producer, producerAxis: axis, consumers: consumers,
                                       statisticsLayer: consumers[0]))
        }
        let layout = config.weightLayout
        for stack in layout.stacks {
            for b in 0..<layout.layerCount(stack) {
                let selfAttention = T5WeightLayout.sublayerPrefix(stack, b, .selfAttention)
                let attention = "\(selfAttention).SelfAttention"
                add("\(selfAttention).layer_norm.weight", .element, ["q", "k", "v"].map { "\(attention).\($0).weight" })
                add("\(attention).v.weight", .row, ["\(attention).o.weight"])
                if stack == .decoder {
                    let crossAttention = T5WeightLayout.sublayerPrefix(stack, b, .crossAttention)
                    let cross = "\(crossAttention).EncDecAttention"
                    add("\(crossAttention).layer_norm.weight", .element, ["\(cross).q.weight"])
                    add("\(cross).v.weight", .row, ["\(cross).o.weight"])
                }
                let feedForward = T5WeightLayout.sublayerPrefix(stack, b, .feedForward)
                let ffn = "\(feedForward).DenseReluDense"
                if gated {
                    add("\(feedForward).layer_norm.weight", .element, ["\(ffn).wi_0.weight", "\(ffn).wi_1.weight"])
                    add("\(ffn).wi_1.weight", .row, ["\(ffn).wo.weight"])
                } else {
                    add("\(feedForward).layer_norm.weight", .element, ["\(ffn).wi.weight"])
                    if relu { add("\(ffn).wi.weight", .row, ["\(ffn).wo.weight"]) }
                }
            }
        }
        let decoderBlocks = layout.layerCount(.decoder)
        if decoderBlocks > 0 {
            add("encoder.final_layer_norm.weight", .element, (0..<decoderBlocks).flatMap { b in
                ["k", "v"].map { "\(T5WeightLayout.sublayerPrefix(.decoder, b, .crossAttention)).EncDecAttention.\($0).weight" }
            })
            // Tied, the head is the embedding, which also feeds the input: no fold.
            if layout.outputProjection == T5WeightLayout.outputProjectionName {
                add("decoder.final_layer_norm.weight", .element, [T5WeightLayout.outputProjectionName])
            }
        }
        return sites
    }

    /// The scalings for every site with statistics, from the original weights' column maxima.
    public static func plan(_ folder: HFModelFolder, statistics: ActivationStatistics,
                            alpha: Double = defaultAlpha) throws -> SmoothingPlan {
        guard alpha > 0, alpha < 1 else { throw FlintError("smoothing: alpha must be in (0, 1), got \(alpha)") }
        var scalings: [ChannelScaling] = []
        var folds: [SmoothingFold] = []
        var scratch: [Float] = []
        for site in sites(config: folder.config) {
            guard let stats = statistics.layers[site.statisticsLayer] else { continue }
            guard folder.storedName(for: site.producer) == site.producer,
                  site.consumers.allSatisfy({ folder.storedName(for: $0) == $0 }) else { continue }
            let channels = stats.channels
            var weightMax = [Float](repeating: 0, count: channels)
            for consumer in site.consumers {
                let view = try folder.tensor(consumer)
                guard view.shape.count == 2, view.shape[1] == channels else {
                    throw FlintError("\(folder.path): tensor \"\(consumer)\" has shape \(view.shape); its calibrated input has \(channels) channels")
                }
                let rows = view.shape[0]
                // Plain float storage is read a slab of rows at a time (about 8 MB of float32), each slab's
                // pages handed back after it: widened whole, xxl's lm_head was a 526 MB copy beside the statistics.
                let slabRows = view.scheme == .none ? max(1, (8 << 20) / max(1, channels * 4)) : rows
                let elementBytes = view.scheme == .none ? view.storage.byteSize : 0
                var first = 0
                while first < rows {
                    let end = min(rows, first + slabRows)
                    if slabRows == rows {
                        try TensorDecoding.floats(view, into: &scratch)
                    } else {
                        if scratch.count != (end - first) * channels { scratch = [Float](repeating: 0, count: (end - first) * channels) }
                        let bytes = UnsafeRawBufferPointer(rebasing: view.data[(first * channels * elementBytes)..<(end * channels * elementBytes)])
                        try scratch.withUnsafeMutableBufferPointer { try HalfConversion.decode(bytes, storage: view.storage, into: $0) }
                        releaseMappedPages(bytes)
                    }
                    scratch.withUnsafeBufferPointer { w in
                        for r in 0..<(end - first) {
                            let row = w.baseAddress! + r * channels
                            for j in 0..<channels { weightMax[j] = max(weightMax[j], abs(row[j])) }
                        }
                    }
                    first = end
                }
                releaseMappedPages(view.data)
            }
            var scales = [Float](repeating: 1, count: channels)
            var after: Float = 0
            for j in 0..<channels {
                let x = stats.absMax[j], w = weightMax[j]
                if x > 0, w > 0 {
                    let s = Float(pow(Double(x), alpha) / pow(Double(w), 1 - alpha))
                    scales[j] = min(max(s, 1 / scaleLimit), scaleLimit)
                }
                after = max(after, x / scales[j])
            }
            for j in 0..<channels where scales[j] != 1 {
                scalings.append(ChannelScaling(tensor: site.producer, axis: site.producerAxis, channel: j,
                                               op: .divide, factor: scales[j]))
                for consumer in site.consumers {
                    scalings.append(ChannelScaling(tensor: consumer, axis: .column, channel: j, op: .multiply,
                                                   factor: scales[j]))
                }
            }
            folds.append(SmoothingFold(producer: site.producer, producerAxis: site.producerAxis.rawValue,
                                       consumers: site.consumers, scales: scales,
                                       activationMaxBefore: Double(stats.largest), activationMaxAfter: Double(after),
                                       minScale: Double(scales.min() ?? 1), maxScale: Double(scales.max() ?? 1)))
        }
        return SmoothingPlan(alpha: alpha, scalings: scalings, folds: folds)
    }

    /// The channel scalings a .flint file's `calibration.smoothing` records, in the order conversion applied
    /// them: applied to the original float weights (Converter `scalings`, or ModelVariant) they give the
    /// smoothed float model the file was quantized from, bit for bit.
    public static func scalings(from summary: SmoothingSummary) throws -> [ChannelScaling] {
        try summary.channelScalings()
    }
}
