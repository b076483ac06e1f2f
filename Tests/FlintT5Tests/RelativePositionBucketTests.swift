import Testing
@testable import FlintT5

// Expected buckets worked out by hand from transformers' `T5Attention._relative_position_bucket`
// (num_buckets 32, max_distance 128). Bidirectional: 16 buckets per side, 8 exact; causal: 32 buckets, 16 exact.
// The logarithmic part is max_exact + trunc(log(d / max_exact) / log(128 / max_exact) · (n - max_exact)).
struct RelativePositionBucketTests {
    let encoder = RelativePositionBucket(numBuckets: 32, maxDistance: 128, bidirectional: true)
    let decoder = RelativePositionBucket(numBuckets: 32, maxDistance: 128, bidirectional: false)

    @Test func bidirectionalExactRange() {
        // Keys before the query use buckets 0..<16, keys after it 16..<32.
        #expect(encoder.bucket(relativePosition: 0) == 0)
        #expect(encoder.bucket(relativePosition: -1) == 1)
        #expect(encoder.bucket(relativePosition: 1) == 17)
        #expect(encoder.bucket(relativePosition: -7) == 7)
        #expect(encoder.bucket(relativePosition: 7) == 23)
        #expect(encoder.bucket(relativePosition: 5) == 21)
    }

    @Test func bidirectionalLogarithmicRange() {
        #expect(encoder.bucket(relativePosition: -8) == 8)     // log(1) = 0
        #expect(encoder.bucket(relativePosition: 8) == 24)
        #expect(encoder.bucket(relativePosition: -12) == 9)    // log(1.5)/log(16)·8 = 1.17
        #expect(encoder.bucket(relativePosition: -16) == 10)   // log(2)/log(16)·8 = 2
        #expect(encoder.bucket(relativePosition: 16) == 26)
        #expect(encoder.bucket(relativePosition: -20) == 10)   // log(2.5)/log(16)·8 = 2.64
        #expect(encoder.bucket(relativePosition: -64) == 14)   // log(8)/log(16)·8 = 6
        #expect(encoder.bucket(relativePosition: -127) == 15)  // 7.99 → 7
        #expect(encoder.bucket(relativePosition: -128) == 15)  // 8 → capped at 15
        #expect(encoder.bucket(relativePosition: 128) == 31)
        #expect(encoder.bucket(relativePosition: -1000) == 15)
        #expect(encoder.bucket(relativePosition: 1000) == 31)
    }

    @Test func causalIgnoresFutureAndUsesAllBuckets() {
        for future in [1, 5, 7, 8, 16, 128, 1000] {
            #expect(decoder.bucket(relativePosition: future) == 0)
        }
        #expect(decoder.bucket(relativePosition: 0) == 0)
        #expect(decoder.bucket(relativePosition: -1) == 1)
        #expect(decoder.bucket(relativePosition: -7) == 7)
        #expect(decoder.bucket(relativePosition: -12) == 12)
        #expect(decoder.bucket(relativePosition: -16) == 16)   // log(1) = 0
        #expect(decoder.bucket(relativePosition: -20) == 17)   // log(1.25)/log(8)·16 = 1.72
        #expect(decoder.bucket(relativePosition: -64) == 26)   // log(4)/log(8)·16 = 10.67
        #expect(decoder.bucket(relativePosition: -127) == 31)  // 15.94 → 15
        #expect(decoder.bucket(relativePosition: -128) == 31)
        #expect(decoder.bucket(relativePosition: -1000) == 31)
    }
}
