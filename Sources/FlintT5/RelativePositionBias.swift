// T5's learned relative-position bias: `T5Attention._relative_position_bucket` and `compute_bias` of
// transformers' `modeling_t5.py` (and `modeling_umt5.py`, where every block has its own table).
import Foundation
import FlintFormat

/// Hugging Face's `T5Attention._relative_position_bucket` for one relative position `key - query`.
public struct RelativePositionBucket: Sendable, Equatable {
    public let numBuckets: Int
    public let maxDistance: Int
    /// Encoder attention is bidirectional (half the buckets for keys after the query); decoder self-attention
    /// is causal.
    public let bidirectional: Bool

    public init(numBuckets: Int, maxDistance: Int, bidirectional: Bool) {
        self.numBuckets = numBuckets
        self.maxDistance = maxDistance
        self.bidirectional = bidirectional
    }

    /// The bucket of `relativePosition = keyPosition - queryPosition`.
    public func bucket(relativePosition: Int) -> Int {
        var buckets = numBuckets
        var bucket = 0
        var distance: Int
        if bidirectional {
            buckets /= 2
            if relativePosition > 0 { bucket += buckets }
            distance = abs(relativePosition)
        } else {
            distance = -min(relativePosition, 0)
        }
        let maxExact = buckets / 2
        if distance < maxExact {
            return bucket + distance
        }
        // The logarithmic half, computed in float32 like torch (the denominator is a Python double, cast to
        // float32 when it meets the float32 tensor) and truncated toward zero by `.to(torch.long)`.
        let logRatio = logf(Float(distance) / Float(maxExact))
        let scaled = logRatio / Float(log(Double(maxDistance) / Double(maxExact))) * Float(buckets - maxExact)
        let large = maxExact + Int(scaled)
        return bucket + min(large, buckets - 1)
    }
}

/// One layer's learned bias table `relative_attention_bias.weight` `[numBuckets, numHeads]`.
struct RelativePositionBias {
    let table: [Float]
    let numHeads: Int
    let bucketing: RelativePositionBucket

    /// `name`: e.g. `encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight`.
    init(_ loader: WeightLoader, _ name: String, config: T5Config, bidirectional: Bool) throws {
        let storage = try loader.matrix(name, rows: config.relativeAttentionNumBuckets, cols: config.numHeads)
        table = Array(storage.buffer)
        numHeads = config.numHeads
        bucketing = RelativePositionBucket(numBuckets: config.relativeAttentionNumBuckets,
                                           maxDistance: config.relativeAttentionMaxDistance,
                                           bidirectional: bidirectional)
    }

    /// The bias depends only on `key - query`, so it is stored per relative position rather than per
    /// (query, key) pair, which keeps long inputs at O(length) memory: writes `bias[h, r]` for
    /// `r = relative - lowest` with `relative` in `lowest...highest`, a buffer of
    /// `numHeads × (highest - lowest + 1)` floats.
    func fill(_ bias: UnsafeMutablePointer<Float>, lowest: Int, highest: Int) {
        let width = highest - lowest + 1
        for r in 0..<width {
            let bucket = bucketing.bucket(relativePosition: lowest + r)
            for h in 0..<numHeads {
                bias[h * width + r] = table[bucket * numHeads + h]
            }
        }
    }
}
