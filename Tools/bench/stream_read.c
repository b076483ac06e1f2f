// Streaming-read bandwidth of this machine, the ceiling a batch-1 decoder (which reads every weight byte once per
// token) is measured against. run_peers.py compiles and runs it; by hand:
//   cc -O2 -pthread Tools/bench/stream_read.c -o /tmp/stream_read && /tmp/stream_read 2 512 7
// Arguments: threads, buffer MB, rounds. Each round every thread sums its own contiguous slice of the buffer (eight
// independent 64-bit accumulators, so the loop is load-bound, not add-bound), once per software-prefetch distance
// (none, 1, 2, 4 and 8 KB ahead; the distances alternate within each round). The hardware prefetcher alone can
// leave much of a core's bandwidth unused: on a KVM Intel Xeon (Emerald Rapids), one thread read a 40 MB buffer at
// 6.8 GB/s without prefetch and 16 GB/s 8 KB ahead, while a decoder that prefetches its weights read 19 GB/s; a
// ceiling the measured program beats is no ceiling. The best distance (highest median) is the result. One line of
// JSON: {"threads", "buffer_mb", "rounds", "prefetch_bytes", "gb_per_s": {"median", "min", "max", "runs"} of that
// distance, "by_prefetch": {distance: median}}. GB = 1e9 bytes. A buffer far larger than the last-level cache
// measures memory; one the size of a model's per-token reads measures what that model's decode can reach.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { DISTANCES = 5 };
static const size_t prefetch_bytes[DISTANCES] = {0, 1024, 2048, 4096, 8192};

typedef struct {
    const uint64_t *data;
    size_t count;
    pthread_barrier_t *barrier;
    uint64_t sum;
    int rounds;
    double *seconds;  // per round and distance ([round][distance]), written by thread 0
} job;

/// Σ of `count` words (a multiple of 8), one 64-byte line per iteration, prefetching `AHEAD` bytes ahead (0: none).
/// The prefetch may point past the buffer: prefetches do not fault.
#define SUM_LOOP(AHEAD)                                                                                            \
    for (size_t i = 0; i + 8 <= count; i += 8) {                                                                   \
        if (AHEAD) __builtin_prefetch((const char *)(data + i) + (AHEAD), 0, 3);                                   \
        for (int u = 0; u < 8; u++) a[u] += data[i + u];                                                           \
    }

static uint64_t sum_slice(const uint64_t *data, size_t count, int distance) {
    uint64_t a[8] = {0};
    switch (distance) {
    case 0: SUM_LOOP(0) break;
    case 1: SUM_LOOP(1024) break;
    case 2: SUM_LOOP(2048) break;
    case 3: SUM_LOOP(4096) break;
    default: SUM_LOOP(8192) break;
    }
    uint64_t total = 0;
    for (int u = 0; u < 8; u++) total += a[u];
    return total;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *reader(void *arg) {
    job *j = arg;
    uint64_t total = 0;
    for (int r = 0; r < j->rounds; r++)
        for (int d = 0; d < DISTANCES; d++) {
            // Rotated each round, so that no distance always runs first (after the previous one's cache state).
            const int distance = (d + r) % DISTANCES;
            pthread_barrier_wait(j->barrier);
            const double t0 = now();
            total += sum_slice(j->data, j->count, distance);
            pthread_barrier_wait(j->barrier);
            if (j->seconds) j->seconds[r * DISTANCES + distance] = now() - t0;
        }
    j->sum = total;
    return NULL;
}

static int compare(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 1;
    const size_t mb = argc > 2 ? (size_t)atol(argv[2]) : 512;
    const int rounds = argc > 3 ? atoi(argv[3]) : 7;
    if (threads < 1 || threads > 256 || mb < 1 || rounds < 1) {
        fprintf(stderr, "usage: stream_read THREADS BUFFER_MB ROUNDS\n");
        return 2;
    }
    const size_t bytes = mb << 20, count = bytes / sizeof(uint64_t);
    uint64_t *data = aligned_alloc(64, bytes);
    if (!data) { fprintf(stderr, "stream_read: cannot allocate %zu MB\n", mb); return 1; }
    for (size_t i = 0; i < count; i++) data[i] = i * 0x9E3779B97F4A7C15ull;  // touch every page
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    job *jobs = calloc((size_t)threads, sizeof(job));
    pthread_t *ids = calloc((size_t)threads, sizeof(pthread_t));
    double *seconds = calloc(((size_t)rounds + 1) * DISTANCES, sizeof(double));
    const size_t slice = count / (size_t)threads / 8 * 8;
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job){data + (size_t)t * slice, slice, &barrier, 0, rounds + 1, t == 0 ? seconds : NULL};
        pthread_create(&ids[t], NULL, reader, &jobs[t]);
    }
    uint64_t check = 0;
    for (int t = 0; t < threads; t++) { pthread_join(ids[t], NULL); check ^= jobs[t].sum; }
    // Round 0 is the warm-up. Per distance: the rounds' rates, sorted, and their median.
    const int n = rounds < 1024 ? rounds : 1024;
    static double rates[DISTANCES][1024], sorted[DISTANCES][1024];
    int best = 0;
    for (int d = 0; d < DISTANCES; d++) {
        for (int r = 0; r < n; r++)
            rates[d][r] = (double)(slice * (size_t)threads * sizeof(uint64_t)) / seconds[(r + 1) * DISTANCES + d] / 1e9;
        memcpy(sorted[d], rates[d], sizeof(double) * (size_t)n);
        qsort(sorted[d], (size_t)n, sizeof(double), compare);
        if (sorted[d][n / 2] > sorted[best][n / 2]) best = d;
    }
    printf("{\"threads\": %d, \"buffer_mb\": %zu, \"rounds\": %d, \"checksum\": %llu, \"prefetch_bytes\": %zu, "
           "\"gb_per_s\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f, \"runs\": [",
           threads, mb, rounds, (unsigned long long)(check & 0xFFFF), prefetch_bytes[best], sorted[best][n / 2],
           sorted[best][0], sorted[best][n - 1]);
    for (int r = 0; r < n; r++) printf("%s%.3f", r ? ", " : "", rates[best][r]);
    printf("]}, \"by_prefetch\": {");
    for (int d = 0; d < DISTANCES; d++) printf("%s\"%zu\": %.3f", d ? ", " : "", prefetch_bytes[d], sorted[d][n / 2]);
    printf("}}\n");
    return 0;
}
