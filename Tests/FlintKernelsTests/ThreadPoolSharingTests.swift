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

/// More workers than cores, so workers are often descheduled between jobs and wake after their job has ended and
/// the next has begun: every part of every job must still run exactly once (a claim carries its job's generation),
/// with part counts that change from job to job.
@Test func oversubscribedPoolRunsEveryPartOnce() {
    let threads = ProcessInfo.processInfo.activeProcessorCount * 2 + 1
    let pool = ThreadPool(threads: threads)
    let count = 257
    let out = UnsafeMutableBufferPointer<Int32>.allocate(capacity: count)
    defer { out.deallocate() }
    out.initialize(repeating: 0)
    var expected = [Int32](repeating: 0, count: count)
    for round in 0..<3000 {
        let used = 1 + round % count  // 1…count items: from one part to all of them
        pool.parallelFor(used) { range in
            for i in range { out[i] &+= 1 }
        }
        for i in 0..<used { expected[i] += 1 }
    }
    #expect(Array(out) == expected, "some part ran twice or never")
}

/// A pool is clamped to 1…maximumThreads (its claim word keeps 16 bits for the part index), so an absurd request
/// neither makes 70 000 threads nor mis-claims; the clamped pool still runs every part once.
@Test func poolSizeIsClampedToItsBounds() {
    #expect(ThreadPool(threads: 0).threadCount == 1)
    #expect(ThreadPool(threads: -5).threadCount == 1)
    let big = ThreadPool(threads: ThreadPool.maximumThreads + 68_000)
    #expect(big.threadCount == ThreadPool.maximumThreads)
    let count = 5000
    let out = UnsafeMutableBufferPointer<Int32>.allocate(capacity: count)
    defer { out.deallocate() }
    out.initialize(repeating: 0)
    big.parallelFor(count) { range in for i in range { out[i] &+= 1 } }
    #expect(out.allSatisfy { $0 == 1 }, "some part ran twice or never")
}
