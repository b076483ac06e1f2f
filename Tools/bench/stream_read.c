// Streaming-read bandwidth of this machine, the ceiling a batch-1 decoder (which reads every weight byte once per
// token) is measured against. run_peers.py compiles and runs it; by hand:
//   cc -O2 -pthread Tools/bench/stream_read.c -o /tmp/stream_read && /tmp/stream_read 2 512 7
// Arguments: threads, buffer MB (≫ the last-level cache), rounds. Each round every thread sums its own contiguous
// slice of the buffer (eight independent 64-bit accumulators, so the loop is load-bound, not add-bound); one line
// of JSON: {"threads", "buffer_mb", "rounds", "gb_per_s": {"median", "min", "max", "runs"}}. GB = 1e9 bytes.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const uint64_t *data;
    size_t count;
    pthread_barrier_t *barrier;
    uint64_t sum;
    int rounds;
    double *seconds;  // per round, written by thread 0
} job;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *reader(void *arg) {
    job *j = arg;
    uint64_t total = 0;
    for (int r = 0; r < j->rounds; r++) {
        pthread_barrier_wait(j->barrier);
        const double t0 = now();
        uint64_t a[8] = {0};
        for (size_t i = 0; i + 8 <= j->count; i += 8)
            for (int u = 0; u < 8; u++) a[u] += j->data[i + u];
        for (int u = 0; u < 8; u++) total += a[u];
        pthread_barrier_wait(j->barrier);
        if (j->seconds) j->seconds[r] = now() - t0;
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
    double *seconds = calloc((size_t)rounds + 1, sizeof(double));
    const size_t slice = count / (size_t)threads / 8 * 8;
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job){data + (size_t)t * slice, slice, &barrier, 0, rounds + 1, t == 0 ? seconds : NULL};
        pthread_create(&ids[t], NULL, reader, &jobs[t]);
    }
    uint64_t check = 0;
    for (int t = 0; t < threads; t++) { pthread_join(ids[t], NULL); check ^= jobs[t].sum; }
    // Round 0 is the warm-up.
    double *rates = calloc((size_t)rounds, sizeof(double));
    for (int r = 0; r < rounds; r++) rates[r] = (double)(slice * (size_t)threads * sizeof(uint64_t)) / seconds[r + 1] / 1e9;
    double sorted[1024];
    const int n = rounds < 1024 ? rounds : 1024;
    memcpy(sorted, rates, sizeof(double) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(double), compare);
    printf("{\"threads\": %d, \"buffer_mb\": %zu, \"rounds\": %d, \"checksum\": %llu, \"gb_per_s\": {\"median\": %.3f, "
           "\"min\": %.3f, \"max\": %.3f, \"runs\": [", threads, mb, rounds, (unsigned long long)(check & 0xFFFF),
           sorted[n / 2], sorted[0], sorted[n - 1]);
    for (int r = 0; r < n; r++) printf("%s%.3f", r ? ", " : "", rates[r]);
    printf("]}}\n");
    return 0;
}
