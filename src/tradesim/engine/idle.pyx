"""Idle strategies for the live engine's threads: park at once, or spin first (busy polling).

Why spin: on a virtual machine, waking a parked thread costs 5-20 µs, and the
woken CPU comes back with cold caches (the same kline frame takes 18 µs to
parse after a 2 ms sleep, 4.6 µs on a CPU that stayed busy). A thread that
spins for a while before parking (Aeron's "backoff" idle strategy, the
kernel's busy_poll) answers in well under a microsecond, at the price of a
busy core. The default everywhere is to park at once.

* `Doorbell`: a sequence number that worker threads wait on; `ring` bumps it.
  `wait` spins up to ``spin_s`` with the GIL released, then parks on a
  condition variable.
* `Doorbell.wait_quiet`: the loop's hand-off after queueing work: release the
  GIL and spin until the workers have finished it (bounded), so the work runs
  before the loop's own bookkeeping rather than after it.
* `spin_until_readable`: the event loop's half: spin (GIL released) until a
  file descriptor (the loop's epoll descriptor) is readable.
* While a busy-polling loop spins it does not hold the GIL; a worker woken by
  a doorbell waits (briefly, spinning) for the loops to be back in their spin
  before it takes the GIL, instead of parking on the GIL and paying a second
  wake-up.
"""

cdef extern from *:
    """
    #include <errno.h>
    #include <poll.h>
    #include <pthread.h>
    #include <sched.h>
    #include <time.h>

    static long tsi_busy_loops = 0;   /* busy-polling loops alive */
    static long tsi_idle_loops = 0;   /* of which spinning now, GIL released */

    static inline long tsi_load(long *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
    static inline long tsi_add(long *p, long v) { return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
    static inline void tsi_pause(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #elif defined(__aarch64__)
        __asm__ __volatile__("yield");
    #endif
    }
    static inline long long tsi_now(void) {
        struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
        return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
    }

    /* One step of a spin that ends at `end` (ns): a pause, and every 64th step a look at
       the clock and a sched_yield, so anything else runnable on this CPU goes first.
       Returns 1 once `end` has passed. */
    static inline int tsi_spin_tick(unsigned *n, long long end) {
        if ((++*n & 63) == 0) {
            if (tsi_now() >= end) return 1;
            sched_yield();
        } else {
            tsi_pause();
        }
        return 0;
    }

    typedef struct {
        long seq;
        long waiters;
        long outstanding;   /* work items handed out and not finished (see wait_quiet) */
        pthread_mutex_t mu;
        pthread_cond_t cv;
    } tsi_bell;

    static int tsi_bell_init(tsi_bell *b) {
        pthread_condattr_t attr;
        b->seq = 0; b->waiters = 0; b->outstanding = 0;
        if (pthread_mutex_init(&b->mu, NULL)) return -1;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        int r = pthread_cond_init(&b->cv, &attr);
        pthread_condattr_destroy(&attr);
        return r ? -1 : 0;
    }
    static void tsi_bell_destroy(tsi_bell *b) {
        pthread_cond_destroy(&b->cv); pthread_mutex_destroy(&b->mu);
    }
    /* seq first, then waiters (both seq_cst); a waiter registers, then re-reads seq under
       the mutex: one of the two always sees the other, so no wake-up is lost. */
    static void tsi_bell_ring(tsi_bell *b) {
        tsi_add(&b->seq, 1);
        if (tsi_load(&b->waiters)) {
            pthread_mutex_lock(&b->mu);
            pthread_cond_broadcast(&b->cv);
            pthread_mutex_unlock(&b->mu);
        }
    }
    /* Wait until loops that busy-poll are back in their spin (GIL free), at most max_ns. */
    static void tsi_wait_loops_idle(long long max_ns) {
        if (!tsi_load(&tsi_busy_loops)) return;
        long long end = tsi_now() + max_ns;
        while (tsi_load(&tsi_idle_loops) < tsi_load(&tsi_busy_loops) && tsi_now() < end) tsi_pause();
    }
    /* Returns the new sequence number, or `last` on timeout (timeout_ns < 0: none). */
    static long tsi_bell_wait(tsi_bell *b, long last, long long spin_ns, long long timeout_ns) {
        long s;
        long long start = tsi_now();
        if (spin_ns > 0) {
            long long end = start + spin_ns;
            unsigned n = 0;
            while ((s = tsi_load(&b->seq)) == last)
                if (tsi_spin_tick(&n, end)) break;
            if (s != last) { tsi_wait_loops_idle(50000); return s; }
        }
        struct timespec dl;
        if (timeout_ns >= 0) {
            long long at = start + timeout_ns;
            dl.tv_sec = at / 1000000000LL; dl.tv_nsec = at % 1000000000LL;
        }
        pthread_mutex_lock(&b->mu);
        tsi_add(&b->waiters, 1);
        while ((s = tsi_load(&b->seq)) == last) {
            if (timeout_ns < 0) pthread_cond_wait(&b->cv, &b->mu);
            else if (pthread_cond_timedwait(&b->cv, &b->mu, &dl) == ETIMEDOUT) { s = tsi_load(&b->seq); break; }
        }
        tsi_add(&b->waiters, -1);
        pthread_mutex_unlock(&b->mu);
        if (spin_ns > 0 && s != last) tsi_wait_loops_idle(50000);
        return s;
    }
    /* Spin until no work is outstanding or max_ns pass; counted as an idle busy loop meanwhile
       (a woken worker takes the GIL at once). Returns 1 if quiet. */
    static int tsi_bell_wait_quiet(tsi_bell *b, long long max_ns) {
        long long end = tsi_now() + max_ns;
        unsigned n = 0;
        int quiet;
        tsi_add(&tsi_idle_loops, 1);
        while (!(quiet = tsi_load(&b->outstanding) <= 0))
            if (tsi_spin_tick(&n, end)) break;   /* (its yield lets a worker on this CPU run) */
        tsi_add(&tsi_idle_loops, -1);
        return quiet;
    }
    /* Spin until fd is readable or spin_ns pass; counted as an idle busy loop meanwhile. */
    static int tsi_spin_readable(int fd, long long spin_ns) {
        struct pollfd p = {fd, POLLIN, 0};
        long long end = tsi_now() + spin_ns;
        int ready = 0;
        tsi_add(&tsi_idle_loops, 1);
        do {
            if (poll(&p, 1, 0) > 0) { ready = 1; break; }
            sched_yield();
        } while (tsi_now() < end);
        tsi_add(&tsi_idle_loops, -1);
        return ready;
    }
    """
    ctypedef struct tsi_bell:
        long seq
        long outstanding
    long tsi_busy_loops
    long tsi_load(long *p) nogil
    long tsi_add(long *p, long v) nogil
    int tsi_bell_init(tsi_bell *b) nogil
    void tsi_bell_destroy(tsi_bell *b) nogil
    void tsi_bell_ring(tsi_bell *b) nogil
    long tsi_bell_wait(tsi_bell *b, long last, long long spin_ns, long long timeout_ns) nogil
    int tsi_spin_readable(int fd, long long spin_ns) nogil
    int tsi_bell_wait_quiet(tsi_bell *b, long long max_ns) nogil


cdef long long _ns(double seconds):
    # Clamped to an hour: math.inf ("spin for ever") must not overflow the cast.
    if not seconds > 0:
        return 0
    return <long long>(min(seconds, 3600.0) * 1e9)


cdef class Doorbell:
    """A wake-up counter for worker threads (see the module docstring).

    Producers call `ring` after queueing work; a worker reads `seq`, looks for
    work, and if there is none calls ``wait(seq, ...)``, which returns once
    the counter has moved past that value (no wake-up can be lost between the
    look and the wait).
    """

    cdef tsi_bell bell

    def __cinit__(self):
        if tsi_bell_init(&self.bell) != 0:
            raise MemoryError("Doorbell: pthread mutex/condition initialisation failed")

    def __dealloc__(self):
        tsi_bell_destroy(&self.bell)

    @property
    def seq(self) -> int:
        """The counter now (read it before looking for work)."""
        return tsi_load(&self.bell.seq)

    def ring(self) -> None:
        """Bump the counter and wake parked waiters (cheap when nobody is parked)."""
        tsi_bell_ring(&self.bell)

    def add_work(self) -> None:
        """Count one work item handed out and ring (the worker calls `work_done` after it)."""
        tsi_add(&self.bell.outstanding, 1)
        tsi_bell_ring(&self.bell)

    def work_done(self) -> None:
        """Count one work item finished (see `add_work`)."""
        tsi_add(&self.bell.outstanding, -1)

    @property
    def outstanding(self) -> int:
        """Work items handed out by `add_work` and not yet `work_done`."""
        return tsi_load(&self.bell.outstanding)

    def wait_quiet(self, double max_s) -> bool:
        """Release the GIL and spin until no work is outstanding, at most `max_s` seconds.

        The busy-polling loop's hand-off: called right after queueing work, it
        lets a spinning worker take the GIL at once and run the work before the
        loop's own bookkeeping, instead of after it. Returns True if every
        item finished within `max_s`.
        """
        cdef long long max_ns = _ns(max_s)
        cdef int quiet
        with nogil:
            quiet = tsi_bell_wait_quiet(&self.bell, max_ns)
        return bool(quiet)

    def wait(self, long last, double spin_s=0.0, timeout_s=None) -> int:
        """Wait until the counter differs from `last`; return it (``== last`` on timeout).

        Parameters
        ----------
        last : int
            The value read before looking for work.
        spin_s : float
            Seconds to spin (GIL released, yielding the CPU to other runnable
            threads) before parking; 0 parks at once.
        timeout_s : float or None
            Give up after this many seconds (None: wait for ever).
        """
        cdef long long spin_ns = _ns(spin_s)
        cdef long long timeout_ns = -1 if timeout_s is None else _ns(timeout_s)
        cdef long s
        with nogil:
            s = tsi_bell_wait(&self.bell, last, spin_ns, timeout_ns)
        return s


def spin_until_readable(int fd, double spin_s) -> bool:
    """Spin (GIL released) until `fd` is readable or `spin_s` seconds pass; True if readable."""
    cdef long long spin_ns = _ns(spin_s)
    cdef int ready
    with nogil:
        ready = tsi_spin_readable(fd, spin_ns)
    return bool(ready)


def busy_loop_started() -> None:
    """Count a busy-polling event loop (workers wait for it to be idle before taking the GIL)."""
    tsi_add(&tsi_busy_loops, 1)


def busy_loop_stopped() -> None:
    """Undo `busy_loop_started`."""
    tsi_add(&tsi_busy_loops, -1)
