// A small persistent thread pool: the matrix kernels split their output rows over it. Threads are created once
// and sleep on a condition variable between jobs, so a decode step pays a wake-up, not a thread start.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

public final class ThreadPool: @unchecked Sendable {
    /// Number of threads that work on a job, the calling thread included.
    public let threadCount: Int
    private let state: PoolState

    /// A process-wide pool sized to the active processor count, for callers that do not manage their own.
    public static let shared = ThreadPool()

    /// - Parameter threads: the number of threads working on each job, the caller included (at least 1);
    ///   by default the number of active processors.
    public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        threadCount = max(1, threads)
        state = PoolState(workers: threadCount - 1)
    }

    deinit { state.shutDown() }

    /// Runs `body(t)` for every `t` in `0..<threadCount` concurrently (`t == 0` on the calling thread) and returns
    /// when all have finished. If the pool is already busy (a nested call from inside a job, or a second thread
    /// submitting at the same time) the parts run one after another on the calling thread instead of deadlocking.
    public func run(_ body: (Int) -> Void) {
        if threadCount == 1 || !state.tryBeginJob() {
            for t in 0..<threadCount { body(t) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            state.dispatch(escapable)
            escapable(0)
            state.waitForWorkers()
        }
        state.endJob()
    }

    /// Splits `0..<count` into at most `threadCount` contiguous chunks whose sizes are multiples of `granularity`
    /// (except the last) and runs `body` on each chunk concurrently. Jobs with fewer than `minimumPerThread` items
    /// per thread use fewer threads, so tiny jobs do not pay for wake-ups.
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
        run { t in
            guard t < maxParts else { return }
            let start = t * unitsPerPart * step
            let end = min(count, (t + 1) * unitsPerPart * step)
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
    private var pending = 0
    private var job: ((Int) -> Void)?
    private var stopping = false
    private var running = 0
    // Mirrors of `generation` and `pending` that spinning threads read without the mutex. A decode step hands
    // out ~70 small jobs; waking a sleeping thread costs ~15 µs each, so both sides spin briefly (bounded) before
    // they fall back to the condition variables, which remain the only way to sleep and to wake.
    private let publishedGeneration = Atomic<Int>(0)
    private let publishedPending = Atomic<Int>(0)
    /// Spin iterations before sleeping (about 100 µs: longer than the single-threaded stretches of a decode step,
    /// so the worker is still spinning when the next job comes; measured on flan-t5-base int8 decode, 2 threads:
    /// no spin 104 tok/s, 20k iterations 123–135, 80k iterations 239–248).
    private static let spinLimit = 80000

    init(workers: Int) {
        pthread_mutex_init(mutex, nil)
        pthread_mutex_init(submitMutex, nil)
        pthread_cond_init(workReady, nil)
        pthread_cond_init(workDone, nil)
        for index in 0..<workers {
            running += 1
            let thread = Thread { [self] in self.workerLoop(index: index + 1) }
            thread.name = "flint-worker-\(index + 1)"
            thread.start()
        }
    }

    func tryBeginJob() -> Bool { pthread_mutex_trylock(submitMutex) == 0 }
    func endJob() { pthread_mutex_unlock(submitMutex) }

    func dispatch(_ body: @escaping (Int) -> Void) {
        pthread_mutex_lock(mutex)
        job = body
        pending = running
        publishedPending.store(running, ordering: .releasing)
        generation &+= 1
        publishedGeneration.store(generation, ordering: .releasing)
        pthread_cond_broadcast(workReady)
        pthread_mutex_unlock(mutex)
    }

    func waitForWorkers() {
        var spins = 0
        while publishedPending.load(ordering: .acquiring) > 0 && spins < PoolState.spinLimit { spins += 1 }
        pthread_mutex_lock(mutex)
        while pending > 0 { pthread_cond_wait(workDone, mutex) }
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

    private func workerLoop(index: Int) {
        var seen = 0
        pthread_mutex_lock(mutex)
        while true {
            if generation == seen && !stopping {
                // Spin a little outside the lock: the next job usually follows within microseconds.
                pthread_mutex_unlock(mutex)
                var spins = 0
                while publishedGeneration.load(ordering: .acquiring) == seen && spins < PoolState.spinLimit { spins += 1 }
                pthread_mutex_lock(mutex)
            }
            while generation == seen && !stopping { pthread_cond_wait(workReady, mutex) }
            if stopping { break }
            seen = generation
            let body = job
            pthread_mutex_unlock(mutex)
            body?(index)
            pthread_mutex_lock(mutex)
            pending -= 1
            publishedPending.store(pending, ordering: .releasing)
            if pending == 0 { pthread_cond_signal(workDone) }
        }
        running -= 1
        pthread_mutex_unlock(mutex)
    }

    deinit {
        pthread_mutex_destroy(mutex); mutex.deallocate()
        pthread_mutex_destroy(submitMutex); submitMutex.deallocate()
        pthread_cond_destroy(workReady); workReady.deallocate()
        pthread_cond_destroy(workDone); workDone.deallocate()
    }
}
