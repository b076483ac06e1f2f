// Activation-aware int4 (the AWQ observation, arXiv 2306.00978): a weight column matters in proportion to the
// activations it multiplies, so
//   1. at every smoothing site whose consumers are all int4, the per-input-channel scales s_j (folded exactly into
//      the producer like SmoothQuant's: layer norm, v rows, wi_1 rows) are chosen to minimise the consumers'
//      activation-weighted int4 error, Σ_rows Σ_j m_j² (W_rj − Q(W·diag(s))_rj / s_j)², over the candidates
//      s = m^α (α in 0, ¼, ½, ¾, normalised to a geometric mean of 1 as AWQ does; α = 0 is no scaling) and the
//      SmoothQuant scales of the site (kept where they are best, and at sites with int8 consumers — FFN wo —
//      where W8A8 activations need them). m_j is channel j's calibrated 99.9th-percentile magnitude: the
//      diagonal of E[x xᵀ] stands in for the output error AWQ measures on stored activations.
//   2. the int4 quantizer weights each column's squared error by (m_j / s_j)² — its input magnitude after the
//      fold — when it picks a group's scale.
//   3. the FFN output projections wo, whose inputs carry the largest activations, stay int4 only where that
//      works: a wo whose chosen scales leave a relative activation-weighted int4 error (error over
//      Σ m_j² W_rj²) above the worst of the model's other int4 sites is kept per-row int8, its site back on
//      SmoothQuant's scales (what W8A8 needs).

import Foundation
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintQuant

enum Int4ActivationWeights {
    /// The AWQ exponents tried at each site (besides SmoothQuant's scales).
    static let alphas: [Double] = [0, 0.25, 0.5, 0.75]
    static let scaleLimit: Float = 1e4

    /// Per linear weight name: one non-negative weight per input column (the channel's percentile, over the
    /// smoothing factors applied to that column, squared), normalized to mean 1.
    static func columnWeights(_ statistics: ActivationStatistics, scalings: [ChannelScaling]) -> [String: [Float]] {
        let byTensor = scalings.byTensor()
        var weights: [String: [Float]] = [:]
        for (name, stats) in statistics.layers {
            var magnitude = stats.percentile
            for op in byTensor[name] ?? [] where op.axis == .column && op.channel < magnitude.count {
                // Column × s ⇒ input ÷ s (and the reverse).
                magnitude[op.channel] = op.op == .multiply ? magnitude[op.channel] / op.factor : magnitude[op.channel] * op.factor
            }
            var squares = magnitude.map { $0.isFinite ? $0 * $0 : 0 }
            let mean = squares.reduce(0, +) / Float(max(1, squares.count))
            guard mean > 0, mean.isFinite else { continue }
            // A floor keeps a never-active channel from being ignored entirely.
            for c in squares.indices { squares[c] = max(squares[c] / mean, 1e-3) }
            weights[name] = squares
        }
        return weights
    }

    static let feedForwardOutput = "*.DenseReluDense.wo.weight"

    /// `plan` with the scales of every site whose consumers `isInt4` replaced by the activation-aware choice
    /// (see the top of this file); its scalings are rebuilt from the folds, in the order the file records them.
    /// `keepInt8` lists the FFN output projections that int4 would hurt more than the other int4 layers (3.);
    /// `relativeErrors` gives, per consumer of a refined site, that site's relative error with the chosen scales.
    static func refine(_ plan: SmoothingPlan, folder: HFModelFolder, statistics: ActivationStatistics,
                       groupSize: Int, isInt4: (String) -> Bool) throws
        -> (plan: SmoothingPlan, keepInt8: [String], relativeErrors: [String: Double]) {
        let quantizer = try Int4Quantizer(groupSize: groupSize)
        var folds = plan.folds
        // Per refined fold: its relative activation-weighted int4 error with the chosen scales.
        var relativeError: [Int: Double] = [:]
        for index in folds.indices {
            let fold = folds[index]
            guard !fold.consumers.isEmpty, fold.consumers.allSatisfy(isInt4),
                  let stats = statistics.layers[fold.consumers[0]] else { continue }
            let channels = stats.channels
            let magnitude = (0..<channels).map { j in
                stats.percentile[j].isFinite && stats.percentile[j] > 0 ? stats.percentile[j] : min(stats.absMax[j], Float.greatestFiniteMagnitude)
            }
            var weights: [(rows: Int, values: [Float])] = []
            for consumer in fold.consumers {
                let view = try folder.tensor(consumer)
                guard view.shape.count == 2, view.shape[1] == channels else { continue }
                weights.append((view.shape[0], try TensorDecoding.floats(view)))
                releaseMappedPages(view.data)
            }
            guard weights.count == fold.consumers.count else { continue }
            var candidates: [[Float]] = [fold.scales]
            for alpha in alphas { candidates.append(awqScales(magnitude, alpha: alpha)) }
            var best = fold.scales
            var bestLoss = Double.infinity
            for scales in candidates {
                // A candidate whose scaled weights leave f16's range is out (the conversion would refuse it).
                guard let loss = try? weightedError(weights, scales: scales, magnitude: magnitude, quantizer: quantizer,
                                                    channels: channels, name: fold.consumers[0]),
                      loss.isFinite else { continue }
                if loss < bestLoss { bestLoss = loss; best = scales }
            }
            var energy = 0.0
            for (rows, values) in weights {
                for r in 0..<rows { for j in 0..<channels { let v = Double(magnitude[j]) * Double(values[r * channels + j]); energy += v * v } }
            }
            if energy > 0 && bestLoss.isFinite { relativeError[index] = bestLoss / energy }
            var after: Float = 0
            for j in 0..<channels { after = max(after, stats.absMax[j] / best[j]) }
            folds[index] = SmoothingFold(producer: fold.producer, producerAxis: fold.producerAxis, consumers: fold.consumers,
                                         scales: best, activationMaxBefore: fold.activationMaxBefore,
                                         activationMaxAfter: Double(after), minScale: Double(best.min() ?? 1),
                                         maxScale: Double(best.max() ?? 1))
        }
        // wo sites measured worse than every other int4 site go back to int8 and SmoothQuant's scales.
        let isOutput: (Int) -> Bool = { folds[$0].consumers.allSatisfy { globMatch(pattern: feedForwardOutput, name: $0) } }
        let limit = relativeError.filter { !isOutput($0.key) }.map(\.value).max() ?? 0
        var keepInt8: [String] = []
        for (index, error) in relativeError.sorted(by: { $0.key < $1.key }) where isOutput(index) && error > limit {
            folds[index] = plan.folds[index]
            keepInt8 += plan.folds[index].consumers
        }
        var refined = plan
        refined.scalings = try SmoothingSummary(alpha: plan.alpha, folds: folds).channelScalings()
        refined.folds = folds
        var errors: [String: Double] = [:]
        for (index, error) in relativeError { for consumer in plan.folds[index].consumers { errors[consumer] = error } }
        return (refined, keepInt8, errors)
    }

    /// s_j = m_j^α over the geometric mean of the active channels' (AWQ's normalisation keeps the weights'
    /// overall range), clamped like SmoothQuant's; 1 for a channel that never activated.
    static func awqScales(_ magnitude: [Float], alpha: Double) -> [Float] {
        guard alpha > 0 else { return [Float](repeating: 1, count: magnitude.count) }
        let active = magnitude.filter { $0 > 0 && $0.isFinite }
        guard !active.isEmpty else { return [Float](repeating: 1, count: magnitude.count) }
        let logMean = active.reduce(0.0) { $0 + log(Double($1)) } / Double(active.count)
        return magnitude.map { m in
            guard m > 0, m.isFinite else { return 1 }
            let s = Float(exp(alpha * (log(Double(m)) - logMean)))
            return min(max(s, 1 / scaleLimit), scaleLimit)
        }
    }

    /// Σ over the consumers of Σ_rj m_j² (W_rj − Q(W·diag(s))_rj / s_j)²: the int4 error of the scaled weights, as
    /// the original inputs see it (diagonal second-moment approximation of the output error).
    static func weightedError(_ weights: [(rows: Int, values: [Float])], scales: [Float], magnitude: [Float],
                              quantizer: Int4Quantizer, channels: Int, name: String) throws -> Double {
        // The quantizer's column weights: the scaled model's input magnitudes, (m_j / s_j)², mean 1.
        var columnWeights = (0..<channels).map { j -> Float in let v = magnitude[j] / scales[j]; return v * v }
        let mean = columnWeights.reduce(0, +) / Float(max(1, channels))
        if mean > 0, mean.isFinite { for j in 0..<channels { columnWeights[j] = max(columnWeights[j] / mean, 1e-3) } }
        var total = 0.0
        for (rows, values) in weights {
            var scaled = values
            for r in 0..<rows { for j in 0..<channels { scaled[r * channels + j] *= scales[j] } }
            let packed = try scaled.withUnsafeBufferPointer { w in
                try columnWeights.withUnsafeBufferPointer {
                    try quantizer.quantize(w, rows: rows, cols: channels, tensorName: name, columnWeights: $0)
                }
            }
            var restored = [Float](repeating: 0, count: rows * channels)
            try packed.bytes.withUnsafeBytes { bytes in
                try restored.withUnsafeMutableBufferPointer {
                    try Int4Quantizer.dequantize(bytes, geometry: packed.geometry, into: $0, tensorName: name)
                }
            }
            for r in 0..<rows {
                for j in 0..<channels {
                    let e = Double(values[r * channels + j]) - Double(restored[r * channels + j]) / Double(scales[j])
                    total += Double(magnitude[j]) * Double(magnitude[j]) * e * e
                }
            }
        }
        return total
    }
}
