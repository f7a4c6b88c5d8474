/*
 * skewclock: LD_PRELOAD shim that moves one process's wall clock, and only the wall clock.
 *
 * A till whose PC clock is wrong sees CLOCK_REALTIME off by minutes while its monotonic
 * clock still ticks normally. libfaketime 0.9.10 (Debian bookworm) cannot do exactly that
 * for Python 3.11: with FAKETIME_DONT_FAKE_MONOTONIC=1 every time.sleep() fails with
 * EINVAL (clock_nanosleep TIMER_ABSTIME), and with the monotonic clock faked too, every
 * threading wait (sem_clockwait, not intercepted) hangs for the size of the offset.
 * The harness probes libfaketime first and falls back to this file (built with cc).
 *
 * The offset (signed milliseconds) is read from the file named by LANPOS_SKEW_FILE,
 * re-read at most every 100 ms, so the harness can step the clock of a running node
 * (like an NTP step or a person changing the clock) and step it back at heal.
 *
 * Intercepted: clock_gettime (REALTIME, REALTIME_COARSE, TAI), gettimeofday, time.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
static clock_gettime_fn real_clock_gettime;
static volatile long long offset_ms;
static volatile long long next_read_ns;

static void init_real(void) {
    if (!real_clock_gettime)
        real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
}

static long long skew_ms(void) {
    struct timespec mono;
    init_real();
    real_clock_gettime(CLOCK_MONOTONIC, &mono);
    long long now = (long long)mono.tv_sec * 1000000000LL + mono.tv_nsec;
    if (now >= next_read_ns) {
        next_read_ns = now + 100000000LL;
        const char *path = getenv("LANPOS_SKEW_FILE");
        if (path) {
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                char buf[32];
                ssize_t n = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                if (n > 0) {
                    buf[n] = 0;
                    offset_ms = strtoll(buf, NULL, 10);
                }
            }
        }
    }
    return offset_ms;
}

static void shift(struct timespec *ts) {
    long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + skew_ms() * 1000000LL;
    ts->tv_sec = (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
    if (ts->tv_nsec < 0) {
        ts->tv_nsec += 1000000000L;
        ts->tv_sec -= 1;
    }
}

int clock_gettime(clockid_t clk, struct timespec *ts) {
    init_real();
    int rc = real_clock_gettime(clk, ts);
    if (rc == 0 && (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE || clk == CLOCK_TAI))
        shift(ts);
    return rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    (void)tz;
    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0 && tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
