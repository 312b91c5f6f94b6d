# The indicator math, written once as C structs and inline `nogil` update
# functions. The incremental classes, the batch functions and the fused
# IndicatorSet all drive these kernels, so the three paths cannot drift apart.
#
# Conventions follow TA-Lib (seeding, warm-up length, operation order) so that
# results agree to ~1e-12 relative; where TA-Lib is numerically weak (running
# sums, E[x^2] - E[x]^2 variance) we are more careful and say so.
#
# Memory: every ring buffer is allocated once in *_init (NULL -> MemoryError)
# and freed in *_free; no update allocates.

from libc.math cimport NAN, sqrt, fabs
from libc.stdlib cimport malloc, free


# --------------------------------------------------------------------------
# Long-run stability of window sums.
# A running sum (add the new value, subtract the one leaving) accumulates
# rounding error without bound over millions of bars. We recompute every window
# sum exactly from its ring every RECOMPUTE_EVERY updates, which caps the drift
# at ~RECOMPUTE_EVERY * eps relative (about 1e-13) for any run length. We chose
# this over Kahan compensation because Kahan's dependent chain of four adds per
# update cost 3x the time of the SMA itself; the recompute costs ~0.02 adds per
# update amortized.
# --------------------------------------------------------------------------
cdef enum:
    RECOMPUTE_EVERY = 1024

cdef inline double ring_sum(double* ring, int n) noexcept nogil:
    cdef int i
    cdef double acc = 0.0
    for i in range(n):
        acc += ring[i]
    return acc


cdef inline double* alloc_doubles(Py_ssize_t n) except NULL:
    cdef double* p = <double*> malloc((n if n > 0 else 1) * sizeof(double))
    if p == NULL:
        raise MemoryError()
    return p


# --------------------------------------------------------------------------
# SMA: ring of the last `period` values plus a compensated sum.
# --------------------------------------------------------------------------
cdef struct Sma:
    int period
    int count
    int pos
    int since_recompute
    double* ring
    double sum
    double inv_period
    double value

cdef inline int sma_init(Sma* s, int period) except -1:
    s.period = period
    s.inv_period = 1.0 / period
    s.ring = alloc_doubles(period)
    sma_reset(s)
    return 0

cdef inline void sma_free(Sma* s) noexcept nogil:
    free(s.ring)
    s.ring = NULL

cdef inline void sma_reset(Sma* s) noexcept nogil:
    s.count = 0
    s.pos = 0
    s.since_recompute = 0
    s.sum = 0.0
    s.value = NAN

cdef inline double sma_update(Sma* s, double x) noexcept nogil:
    cdef double old = 0.0
    if s.count < s.period:
        s.count += 1
    else:
        old = s.ring[s.pos]
    s.ring[s.pos] = x
    s.pos += 1
    if s.pos == s.period:
        s.pos = 0
    s.sum += x - old
    s.since_recompute += 1
    if s.since_recompute == RECOMPUTE_EVERY:
        s.since_recompute = 0
        s.sum = ring_sum(s.ring, s.count)
    if s.count == s.period:
        s.value = s.sum * s.inv_period
    return s.value


# --------------------------------------------------------------------------
# EMA, seeded like TA-Lib: the first value is the SMA of the first `period`
# inputs, then ema += k * (x - ema) with k = 2 / (period + 1).
# --------------------------------------------------------------------------
cdef struct Ema:
    int period
    int count
    double k
    double one_minus_k
    double seed_sum
    double value

cdef inline void ema_init(Ema* s, int period) noexcept nogil:
    s.period = period
    s.k = 2.0 / (period + 1.0)
    s.one_minus_k = 1.0 - s.k
    ema_reset(s)

cdef inline void ema_reset(Ema* s) noexcept nogil:
    s.count = 0
    s.seed_sum = 0.0
    s.value = NAN

cdef inline double ema_update(Ema* s, double x) noexcept nogil:
    if s.count < s.period:
        s.seed_sum += x
        s.count += 1
        if s.count == s.period:
            s.value = s.seed_sum / s.period
    else:
        # TA-Lib's exact operation order: results are bit-identical to its
        # EMA, and MACD (a small difference of two large EMAs) would amplify
        # any reordering's 1e-16 into 1e-7 relative near its zero crossings.
        s.value = (x - s.value) * s.k + s.value
    return s.value


# --------------------------------------------------------------------------
# RSI with Wilder smoothing (Wilder 1978), seeded like TA-Lib: the first value
# uses the simple means of the first `period` gains and losses; afterwards
# avg = (avg * (period - 1) + x) / period. First value after period + 1 inputs.
# --------------------------------------------------------------------------
cdef struct Rsi:
    int period
    int count
    double prev
    double gain
    double loss
    double keep        # (period - 1) / period
    double inv_period  # 1 / period
    double value

cdef inline void rsi_init(Rsi* s, int period) noexcept nogil:
    s.period = period
    s.keep = (period - 1.0) / period
    s.inv_period = 1.0 / period
    rsi_reset(s)

cdef inline void rsi_reset(Rsi* s) noexcept nogil:
    s.count = 0
    s.prev = 0.0
    s.gain = 0.0
    s.loss = 0.0
    s.value = NAN

cdef inline double _rsi_value(double gain, double loss) noexcept nogil:
    cdef double total = gain + loss
    # TA-Lib outputs 0 when there was no movement at all (avoids 0/0).
    if total == 0.0:
        return 0.0
    return 100.0 * (gain / total)

cdef inline double rsi_update(Rsi* s, double x) noexcept nogil:
    cdef double d, up, down
    if s.count == 0:
        s.prev = x
        s.count = 1
        return s.value
    d = x - s.prev
    s.prev = x
    # Branch-free split: rises and falls alternate unpredictably.
    up = d if d > 0.0 else 0.0
    down = -d if d < 0.0 else 0.0
    if s.count <= s.period:
        s.gain += up
        s.loss += down
        s.count += 1
        if s.count == s.period + 1:
            s.loss /= s.period
            s.gain /= s.period
            s.value = _rsi_value(s.gain, s.loss)
        return s.value
    # Wilder: (avg * (period - 1) + x) / period, with the division folded
    # into constants to keep it off the dependent chain.
    s.gain = s.gain * s.keep + up * s.inv_period
    s.loss = s.loss * s.keep + down * s.inv_period
    s.value = _rsi_value(s.gain, s.loss)
    return s.value


# --------------------------------------------------------------------------
# MACD with TA-Lib's alignment: both EMAs are seeded at input index slow-1;
# the fast EMA with the SMA of the `fast` inputs ending there, which is what
# feeding it only from input index slow-fast onwards gives. The signal EMA is
# seeded with the SMA of the first `signal` MACD values. Like TA-Lib, all three
# outputs stay NaN until the signal line exists (slow + signal - 1 inputs).
# --------------------------------------------------------------------------
cdef struct Macd:
    int fast
    int slow
    int count
    Ema fast_ema
    Ema slow_ema
    Ema signal_ema
    double macd
    double signal
    double histogram

cdef inline void macd_init(Macd* s, int fast, int slow, int signal) noexcept nogil:
    if fast > slow:  # TA-Lib swaps them too
        fast, slow = slow, fast
    s.fast = fast
    s.slow = slow
    ema_init(&s.fast_ema, fast)
    ema_init(&s.slow_ema, slow)
    ema_init(&s.signal_ema, signal)
    macd_reset(s)

cdef inline void macd_reset(Macd* s) noexcept nogil:
    s.count = 0
    ema_reset(&s.fast_ema)
    ema_reset(&s.slow_ema)
    ema_reset(&s.signal_ema)
    s.macd = NAN
    s.signal = NAN
    s.histogram = NAN

cdef inline void macd_update(Macd* s, double x) noexcept nogil:
    cdef double line
    s.count += 1
    ema_update(&s.slow_ema, x)
    if s.count > s.slow - s.fast:
        ema_update(&s.fast_ema, x)
    if s.count >= s.slow:
        line = s.fast_ema.value - s.slow_ema.value
        ema_update(&s.signal_ema, line)
        if s.signal_ema.count >= s.signal_ema.period:
            s.macd = line
            s.signal = s.signal_ema.value
            s.histogram = line - s.signal


# --------------------------------------------------------------------------
# Bollinger Bands: middle = SMA(period); population standard deviation (like
# TA-Lib) from a rolling Welford update of the sum of squared deviations.
# Why not TA-Lib's E[x^2] - E[x]^2: at BTC prices (1e5) the squares are 1e10
# and the subtraction cancels most digits; the running sum of squares also
# drifts. The Welford form works on deviations, and the SMA's exact
# recompute (every RECOMPUTE_EVERY updates) also recomputes M2 two-pass.
# Each Welford step can leave an absolute error of ~eps * |mean| * |x - old|
# in M2; we accumulate that bound in `m2_err` and recompute M2 two-pass as
# soon as M2 is not at least 1e8 times larger (a window gone flat, where the
# residue would otherwise show as a std of ~1e-6 instead of 0). On real data
# that happens only in near-constant windows.
# --------------------------------------------------------------------------
cdef struct Bollinger:
    Sma mean
    double k
    double m2
    double m2_err
    double upper
    double middle
    double lower

cdef inline int bb_init(Bollinger* s, int period, double k) except -1:
    sma_init(&s.mean, period)
    s.k = k
    bb_reset(s)
    return 0

cdef inline void bb_free(Bollinger* s) noexcept nogil:
    sma_free(&s.mean)

cdef inline void bb_reset(Bollinger* s) noexcept nogil:
    sma_reset(&s.mean)
    s.m2 = 0.0
    s.m2_err = 0.0
    s.upper = NAN
    s.middle = NAN
    s.lower = NAN

cdef inline double _ring_m2(Sma* m, double mean) noexcept nogil:
    cdef int i
    cdef double d, acc = 0.0
    for i in range(m.period):
        d = m.ring[i] - mean
        acc += d * d
    return acc

cdef inline void bb_update(Bollinger* s, double x) noexcept nogil:
    cdef Sma* m = &s.mean
    cdef bint was_full = m.count == m.period
    cdef double old = m.ring[m.pos] if was_full else 0.0
    cdef double old_mean = m.value
    cdef double new_mean, sd
    sma_update(m, x)
    if m.count < m.period:
        return
    new_mean = m.value
    if not was_full or m.since_recompute == 0:
        s.m2 = _ring_m2(m, new_mean)
        s.m2_err = 0.0
    else:
        s.m2 += (x - old) * ((x - new_mean) + (old - old_mean))
        s.m2_err += 4.5e-16 * fabs(x - old) * fabs(new_mean)
        if s.m2 < 1e8 * s.m2_err:
            s.m2 = _ring_m2(m, new_mean)
            s.m2_err = 0.0
    sd = sqrt(s.m2 * m.inv_period)
    s.middle = new_mean
    s.upper = new_mean + s.k * sd
    s.lower = new_mean - s.k * sd


# --------------------------------------------------------------------------
# ATR with Wilder smoothing, seeded like TA-Lib: true range needs the previous
# close, so TR starts at the second bar; the first ATR is the mean of the first
# `period` TRs, then atr = (atr * (period - 1) + tr) / period.
# --------------------------------------------------------------------------
cdef struct Atr:
    int period
    int count
    double prev_close
    double tr_sum
    double value

cdef inline void atr_init(Atr* s, int period) noexcept nogil:
    s.period = period
    atr_reset(s)

cdef inline void atr_reset(Atr* s) noexcept nogil:
    s.count = 0
    s.prev_close = 0.0
    s.tr_sum = 0.0
    s.value = NAN

cdef inline double atr_update(Atr* s, double high, double low, double close) noexcept nogil:
    cdef double tr, v
    if s.count == 0:
        s.prev_close = close
        s.count = 1
        return s.value
    tr = high - low
    v = fabs(s.prev_close - high)
    if v > tr:
        tr = v
    v = fabs(s.prev_close - low)
    if v > tr:
        tr = v
    s.prev_close = close
    if s.count <= s.period:
        s.tr_sum += tr
        s.count += 1
        if s.count == s.period + 1:
            s.value = s.tr_sum / s.period
        return s.value
    s.value = (s.value * (s.period - 1) + tr) / s.period
    return s.value


# --------------------------------------------------------------------------
# Sliding-window max/min in amortized O(1): a monotonic deque of
# (index, value) in a ring of `period` slots.
# --------------------------------------------------------------------------
cdef struct MonoDeque:
    int cap
    int head
    int size
    long long* idx
    double* val

cdef inline int mono_init(MonoDeque* q, int cap) except -1:
    q.cap = cap
    q.idx = <long long*> malloc(cap * sizeof(long long))
    q.val = <double*> malloc(cap * sizeof(double))
    if q.idx == NULL or q.val == NULL:
        free(q.idx)
        free(q.val)
        q.idx = NULL
        q.val = NULL
        raise MemoryError()
    q.head = 0
    q.size = 0
    return 0

cdef inline void mono_free(MonoDeque* q) noexcept nogil:
    free(q.idx)
    free(q.val)
    q.idx = NULL
    q.val = NULL

cdef inline double mono_push(MonoDeque* q, long long i, double x, bint is_max) noexcept nogil:
    """Push x at index i, evict entries older than cap, return the window extreme."""
    cdef int back
    # Drop dominated entries from the back.
    while q.size > 0:
        back = (q.head + q.size - 1) % q.cap
        if (is_max and q.val[back] <= x) or (not is_max and q.val[back] >= x):
            q.size -= 1
        else:
            break
    # Drop the front if it fell out of the window.
    if q.size > 0 and q.idx[q.head] <= i - q.cap:
        q.head = (q.head + 1) % q.cap
        q.size -= 1
    back = (q.head + q.size) % q.cap
    q.idx[back] = i
    q.val[back] = x
    q.size += 1
    return q.val[q.head]


# --------------------------------------------------------------------------
# Stochastic oscillator (Lane), TA-Lib STOCH with SMA smoothing:
# fast %K = 100 * (close - LL) / (HH - LL) over k_period bars (0 when HH == LL),
# slow %K = SMA(k_slowing) of fast %K, %D = SMA(d_period) of slow %K. Like
# TA-Lib both outputs stay NaN until %D exists.
# --------------------------------------------------------------------------
cdef struct Stoch:
    int k_period
    long long count
    MonoDeque highs
    MonoDeque lows
    Sma slow_k
    Sma slow_d
    double k
    double d

cdef inline int stoch_init(Stoch* s, int k_period, int k_slowing, int d_period) except -1:
    s.k_period = k_period
    s.highs.idx = NULL
    s.highs.val = NULL
    s.lows.idx = NULL
    s.lows.val = NULL
    s.slow_k.ring = NULL
    s.slow_d.ring = NULL
    mono_init(&s.highs, k_period)
    mono_init(&s.lows, k_period)
    sma_init(&s.slow_k, k_slowing)
    sma_init(&s.slow_d, d_period)
    stoch_reset(s)
    return 0

cdef inline void stoch_free(Stoch* s) noexcept nogil:
    mono_free(&s.highs)
    mono_free(&s.lows)
    sma_free(&s.slow_k)
    sma_free(&s.slow_d)

cdef inline void stoch_reset(Stoch* s) noexcept nogil:
    s.count = 0
    s.highs.head = 0
    s.highs.size = 0
    s.lows.head = 0
    s.lows.size = 0
    sma_reset(&s.slow_k)
    sma_reset(&s.slow_d)
    s.k = NAN
    s.d = NAN

cdef inline void stoch_update(Stoch* s, double high, double low, double close) noexcept nogil:
    cdef double hh = mono_push(&s.highs, s.count, high, True)
    cdef double ll = mono_push(&s.lows, s.count, low, False)
    cdef double diff, fast_k, slow_k
    s.count += 1
    if s.count < s.k_period:
        return
    # Same arithmetic as TA-Lib: divide by the range scaled to percent.
    diff = (hh - ll) / 100.0
    fast_k = (close - ll) / diff if diff != 0.0 else 0.0
    slow_k = sma_update(&s.slow_k, fast_k)
    if s.slow_k.count < s.slow_k.period:
        return
    sma_update(&s.slow_d, slow_k)
    if s.slow_d.count == s.slow_d.period:
        s.k = slow_k
        s.d = s.slow_d.value


# --------------------------------------------------------------------------
# Rolling VWAP over `period` bars of typical price (h + l + c) / 3 weighted by
# volume. NaN while the window's volume is zero (no trades: no price).
# --------------------------------------------------------------------------
cdef struct Vwap:
    int period
    int count
    int pos
    int nonzero
    int since_recompute
    double* pv_ring
    double* v_ring
    double pv
    double v
    double value

cdef inline int vwap_init(Vwap* s, int period) except -1:
    s.period = period
    s.pv_ring = NULL
    s.v_ring = alloc_doubles(period)
    s.pv_ring = alloc_doubles(period)
    vwap_reset(s)
    return 0

cdef inline void vwap_free(Vwap* s) noexcept nogil:
    free(s.pv_ring)
    free(s.v_ring)
    s.pv_ring = NULL
    s.v_ring = NULL

cdef inline void vwap_reset(Vwap* s) noexcept nogil:
    s.count = 0
    s.pos = 0
    s.nonzero = 0
    s.since_recompute = 0
    s.pv = 0.0
    s.v = 0.0
    s.value = NAN

cdef inline double vwap_update(Vwap* s, double high, double low, double close, double volume) noexcept nogil:
    cdef double pv = (high + low + close) / 3.0 * volume
    cdef double old_pv = 0.0, old_v = 0.0
    if s.count < s.period:
        s.count += 1
    else:
        old_pv = s.pv_ring[s.pos]
        old_v = s.v_ring[s.pos]
        if old_v != 0.0:
            s.nonzero -= 1
    s.pv_ring[s.pos] = pv
    s.v_ring[s.pos] = volume
    if volume != 0.0:
        s.nonzero += 1
    s.pos += 1
    if s.pos == s.period:
        s.pos = 0
    s.since_recompute += 1
    if s.nonzero == 0:
        # Restart the sums exactly so a quiet stretch leaves no residue.
        s.pv = 0.0
        s.v = 0.0
    elif s.since_recompute >= RECOMPUTE_EVERY:
        s.since_recompute = 0
        s.pv = ring_sum(s.pv_ring, s.count)
        s.v = ring_sum(s.v_ring, s.count)
    else:
        s.pv += pv - old_pv
        s.v += volume - old_v
    if s.count == s.period:
        s.value = s.pv / s.v if s.nonzero > 0 else NAN
    return s.value
