import Foundation
import Testing
@testable import FlintKernels

/// Two threads submitting to one ThreadPool at once: the pool runs one job at a time and the other caller runs
/// its parts itself (documented in ThreadPool.run), so both get every chunk exactly once, with no deadlock.
@Test func twoThreadsShareOnePool() {
    let pool = ThreadPool(threads: 2)
    let count = 10_000
    let results = (0..<2).map { _ in UnsafeMutableBufferPointer<Int32>.allocate(capacity: count) }
    defer { results.forEach { $0.deallocate() } }
    DispatchQueue.concurrentPerform(iterations: 2) { caller in
        let out = results[caller]
        out.initialize(repeating: 0)
        for round in 0..<300 {
            pool.parallelFor(count, granularity: 8) { range in
                for i in range { out[i] &+= Int32(round + 1) }
            }
        }
    }
    let expected = Int32(300 * 301 / 2)
    for caller in 0..<2 {
        #expect(results[caller].allSatisfy { $0 == expected }, "caller \(caller): some chunk ran twice or never")
    }
}
