// A small persistent thread pool: the matrix kernels split their output rows over it. Threads are created once
// and sleep on a condition variable between jobs, so a decode step pays a wake-up, not a thread start.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization
internal import CFlintKernels

public final class ThreadPool: @unchecked Sendable {
    /// Number of threads that work on a job, the calling thread included.
    public let threadCount: Int
    private let state: PoolState

    /// The most threads a pool runs (callers validate against it; `init` clamps to it). Far above any core count
    /// a T5 model can use, and well inside the 16 bits that a job's claim word keeps for the part index.
    public static let maximumThreads = 1024

    /// A process-wide pool sized to the active processor count, for callers that do not manage their own.
    public static let shared = ThreadPool()

    /// - Parameter threads: the number of threads working on each job, the caller included, clamped to
    ///   `1...maximumThreads`; by default the number of active processors.
    public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        threadCount = min(max(1, threads), ThreadPool.maximumThreads)
        state = PoolState(workers: threadCount - 1)
    }

    deinit { state.shutDown() }

    /// Runs `body(t)` for every `t` in `0..<threadCount` concurrently and returns when all have finished. Each `t`
    /// runs exactly once, on whichever thread claims it first (the calling thread claims too), so a worker that is
    /// slow to wake (a busy or oversubscribed host) does not hold the caller up: the caller runs the parts nobody has
    /// started. If the pool is already busy (a nested call from inside a job, or a second thread submitting at the
    /// same time) the parts run one after another on the calling thread instead of deadlocking.
    public func run(_ body: (Int) -> Void) { run(parts: threadCount, body) }

    /// `body(part)` for every part in `0..<parts` (at most `threadCount` of them), claimed as in `run(_:)`.
    func run(parts: Int, _ body: (Int) -> Void) {
        let parts = min(parts, threadCount)
        guard parts > 1 else {
            if parts == 1 { body(0) }
            return
        }
        if !state.tryBeginJob() {
            for part in 0..<parts { body(part) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            let generation = state.dispatch(escapable, parts: parts)
            while let part = state.claim(generation: generation, parts: parts) {
                escapable(part)
                state.completePart(of: parts)
            }
            state.waitForParts(parts)
        }
        state.endJob()
    }

    /// Splits `0..<count` into at most `threadCount` contiguous chunks whose sizes are multiples of `granularity`
    /// (except the last) and runs `body` on each chunk concurrently. Jobs with fewer than `minimumPerThread` items
    /// per thread use fewer threads, so tiny jobs do not pay for wake-ups. The chunks depend only on the arguments and
    /// `threadCount`, never on which thread runs which, so results are the same from run to run.
    public func parallelFor(_ count: Int, granularity: Int = 1, minimumPerThread: Int = 1,
                            _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let step = max(1, granularity)
        let units = (count + step - 1) / step
        let maxParts = max(1, min(threadCount, units, count / max(1, minimumPerThread)))
        if maxParts == 1 {
            body(0..<count)
            return
        }
        let unitsPerPart = (units + maxParts - 1) / maxParts
        run(parts: maxParts) { part in
            let start = part * unitsPerPart * step
            let end = min(count, (part + 1) * unitsPerPart * step)
            if start < end { body(start..<end) }
        }
    }
}

/// The shared state between the submitting thread and the workers. Separate from ThreadPool so that worker
/// threads do not keep the pool alive: the pool's deinit shuts them down.
private final class PoolState: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let submitMutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let workReady = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let workDone = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Guarded by `mutex`.
    private var generation = 0
    private var job: ((Int) -> Void)?
    private var jobParts = 0
    private var stopping = false
    private var running = 0
    // A mirror of `generation` that spinning workers read without the mutex. A decode step hands out ~70 small
    // jobs; waking a sleeping thread costs ~15 µs each, so both sides spin briefly (bounded) before they fall back
    // to the condition variables, which remain the only way to sleep and to wake.
    private let publishedGeneration = Atomic<Int>(0)
    /// The job's next unclaimed part, tagged with its generation: `generation << partBits | part`. Claims are
    /// compare-and-swaps that also check the tag, so a worker that wakes after its job has ended (and the next one
    /// has begun) claims nothing of either by mistake.
    private let nextPart = Atomic<Int>(0)
    /// Parts of the current job that have finished.
    private let completedParts = Atomic<Int>(0)
    private static let partBits = 16  // parts < 2^16: ThreadPool.maximumThreads keeps the count far below
    private static let generationMask = (1 << 46) - 1
    /// How long a thread spins before it sleeps: longer than the single-threaded stretches of a decode step, so the
    /// worker is still spinning when the next job comes (measured with a bound in iterations, flan-t5-base int8
    /// decode, 2 threads: no spin 104 tok/s, 20k iterations 123–135, 80k iterations — about 100 µs — 239–248).
    /// Bounded in time, not iterations: the spin-wait hint each iteration issues lasts from a few cycles to ~140,
    /// depending on the core.
    private static let spinNanoseconds: UInt64 = 100_000

    /// Spins until `done()` is true (returns true) or the spin time has passed (returns false), issuing the CPU's
    /// spin-wait hint each time round (`flint_spin_pause`): the polled line is not re-read at full rate while its
    /// owner writes it, and the other hardware thread of an SMT core keeps its issue slots.
    @inline(__always)
    private static func spin(until done: () -> Bool) -> Bool {
        var deadline: UInt64 = 0
        var rounds = 0
        while !done() {
            flint_spin_pause()
            rounds &+= 1
            if rounds & 31 == 0 {  // the clock costs ~20 ns, more than most hints: read it now and then
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                let nanoseconds = UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
                if deadline == 0 {
                    deadline = nanoseconds &+ spinNanoseconds
                } else if nanoseconds >= deadline {
                    return false
                }
            }
        }
        return true
    }

    init(workers: Int) {
        pthread_mutex_init(mutex, nil)
        pthread_mutex_init(submitMutex, nil)
        pthread_cond_init(workReady, nil)
        pthread_cond_init(workDone, nil)
        for index in 0..<workers {
            running += 1
            let thread = Thread { [self] in self.workerLoop() }
            thread.name = "flint-worker-\(index + 1)"
            thread.start()
        }
    }

    func tryBeginJob() -> Bool { pthread_mutex_trylock(submitMutex) == 0 }
    func endJob() { pthread_mutex_unlock(submitMutex) }

    /// Publishes a job of `parts` parts and wakes the workers; returns its generation (for `claim`).
    func dispatch(_ body: @escaping (Int) -> Void, parts: Int) -> Int {
        pthread_mutex_lock(mutex)
        job = body
        jobParts = parts
        generation &+= 1
        let tag = generation & PoolState.generationMask
        completedParts.store(0, ordering: .relaxed)
        nextPart.store(tag << PoolState.partBits, ordering: .releasing)
        publishedGeneration.store(generation, ordering: .releasing)
        pthread_cond_broadcast(workReady)
        pthread_mutex_unlock(mutex)
        return generation
    }

    /// The next unclaimed part of job `generation`, or nil when it has none left (or is no longer the current job).
    func claim(generation: Int, parts: Int) -> Int? {
        let tag = generation & PoolState.generationMask
        var current = nextPart.load(ordering: .acquiring)
        while true {
            let part = current & ((1 << PoolState.partBits) - 1)
            guard current >> PoolState.partBits == tag, part < parts else { return nil }
            let (exchanged, original) = nextPart.compareExchange(expected: current, desired: current + 1,
                                                                 ordering: .acquiringAndReleasing)
            if exchanged { return part }
            current = original
        }
    }

    /// Counts a finished part of a job of `parts` parts; the last one wakes the submitter if it went to sleep.
    func completePart(of parts: Int) {
        if completedParts.add(1, ordering: .acquiringAndReleasing).newValue == parts {
            pthread_mutex_lock(mutex)
            pthread_cond_signal(workDone)
            pthread_mutex_unlock(mutex)
        }
    }

    /// Returns when all `parts` parts of the current job have finished (parts claimed by workers still running).
    func waitForParts(_ parts: Int) {
        _ = PoolState.spin { completedParts.load(ordering: .acquiring) >= parts }
        pthread_mutex_lock(mutex)
        while completedParts.load(ordering: .acquiring) < parts { pthread_cond_wait(workDone, mutex) }
        job = nil
        pthread_mutex_unlock(mutex)
    }

    func shutDown() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(workReady)
        pthread_mutex_unlock(mutex)
        // The workers hold `self` strongly and release it as they exit; the memory is freed in deinit.
    }

    private func workerLoop() {
        var seen = 0
        pthread_mutex_lock(mutex)
        while true {
            if generation == seen && !stopping {
                // Spin a little outside the lock: the next job usually follows within microseconds.
                pthread_mutex_unlock(mutex)
                _ = PoolState.spin { publishedGeneration.load(ordering: .acquiring) != seen }
                pthread_mutex_lock(mutex)
            }
            while generation == seen && !stopping { pthread_cond_wait(workReady, mutex) }
            if stopping { break }
            seen = generation
            let parts = jobParts
            pthread_mutex_unlock(mutex)
            while let part = claim(generation: seen, parts: parts) {
                runClaimed(part)
                completePart(of: parts)
            }
            pthread_mutex_lock(mutex)
        }
        running -= 1
        pthread_mutex_unlock(mutex)
    }

    /// Runs a claimed part of the current job. The job is read only after the claim, which keeps it alive (the
    /// submitter waits for every claimed part), and the reference is dropped when this returns, before the part
    /// is counted: a worker never holds a job past its end, as `withoutActuallyEscaping` requires.
    @inline(never)
    private func runClaimed(_ part: Int) {
        pthread_mutex_lock(mutex)
        let body = job
        pthread_mutex_unlock(mutex)
        body?(part)
    }

    deinit {
        pthread_mutex_destroy(mutex); mutex.deallocate()
        pthread_mutex_destroy(submitMutex); submitMutex.deallocate()
        pthread_cond_destroy(workReady); workReady.deallocate()
        pthread_cond_destroy(workDone); workDone.deallocate()
    }
}
