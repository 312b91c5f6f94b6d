(** Technical indicators with TA-Lib's conventions.

    An independent reference implementation, used to cross-check tradesim's
    Cython indicators.

    {1 Conventions}

    - Every function is a {e batch} function: it takes [float array] inputs
      (oldest bar first, index 0) and returns arrays of the {b same length}.
    - Warm-up: an output that is not defined yet is [None]; every defined
      output is [Some v].  Warm-up is always a prefix: once an output is
      [Some _] it stays [Some _] for the rest of the series.  Inputs shorter
      than the warm-up give all-[None] outputs (never an exception).
    - Warm-up lengths are TA-Lib's: the first defined index is given for each
      function below.
    - Floating-point evaluation follows TA-Lib's order of operations where it
      matters: SMA is a running sum (add the newest value, drop the oldest),
      EMA / Wilder averages are seeded with a sequential sum divided by the
      period.  The results therefore agree with TA-Lib to the last bit in most
      cases — in particular where the exact value is 0 and a differently
      rounded computation would leave a residue of 1e-15 (Stochastic K, D).
      Bollinger's standard deviation is the exception: it is computed
      two-pass (window mean, then mean of squared deviations), which is more
      accurate than TA-Lib's running sum of squares.
    - NaN inputs are not skipped.  They make NaN every output whose window
      holds them, and, as in TA-Lib, every later output of the running sums
      and recursive averages (SMA, EMA, RSI, MACD, ATR, Stochastic K/D,
      Bollinger's middle band).

    {1 Errors}

    Every function raises [Invalid_argument] when a period is [< 1] or when
    its input arrays differ in length. *)

type series = float option array
(** An indicator output: [None] during warm-up, [Some v] afterwards. *)

(** {1 Moving averages} *)

val sma : period:int -> float array -> series
(** Simple moving average.
    [out.(i) = mean x.(i-period+1 .. i)], first defined at [period-1]. *)

val ema : period:int -> float array -> series
(** Exponential moving average, [k = 2 / (period + 1)].
    Seeded at [period-1] with the SMA of the first [period] values, then
    [out.(i) = out.(i-1) + k * (x.(i) - out.(i-1))]. *)

(** {1 Oscillators} *)

val rsi : period:int -> float array -> series
(** Relative strength index, Wilder (1978).

    With [d.(i) = x.(i) - x.(i-1)], the average gain / loss are seeded at
    [i = period] with the mean of the positive parts / negated negative parts
    of [d.(1 .. period)], then smoothed as
    [avg = (avg * (period-1) + current) / period].
    [out.(i) = 100 * gain / (gain + loss)], and [0.0] when [gain + loss] is
    exactly zero (no movement at all), as TA-Lib >= 0.6 does.
    First defined at [period]. *)

type macd = { macd : series; signal : series; histogram : series }

val macd : fast:int -> slow:int -> signal:int -> float array -> macd
(** MACD with TA-Lib's alignment.

    If [fast > slow] the two are swapped.  Both EMAs are seeded at index
    [slow-1]: the slow one with the mean of [x.(0 .. slow-1)], the fast one
    with the mean of the last [fast] of those values, [x.(slow-fast .. slow-1)].
    [macd = fastEMA - slowEMA]; [signal] is the EMA([signal]) of the macd line
    (seeded with the mean of its first [signal] values);
    [histogram = macd - signal].  As in TA-Lib, {b all three} outputs are
    [None] up to and including index [slow + signal - 3]: the first defined
    index is [slow + signal - 2]. *)

type stochastic = { k : series; d : series }

val stochastic :
  k_period:int ->
  k_slowing:int ->
  d_period:int ->
  high:float array ->
  low:float array ->
  close:float array ->
  stochastic
(** Slow stochastic (TA-Lib STOCH with SMA smoothing for both lines).

    [fastK.(i) = 100 * (close.(i) - LL) / (HH - LL)], where [HH] / [LL] are
    the highest high / lowest low of bars [i-k_period+1 .. i], and [0.0]
    when [HH = LL].  [k = SMA(k_slowing) fastK], [d = SMA(d_period) k].
    Both outputs are first defined at
    [(k_period-1) + (k_slowing-1) + (d_period-1)]. *)

(** {1 Volatility} *)

type bands = { upper : series; middle : series; lower : series }

val bollinger : period:int -> k:float -> float array -> bands
(** Bollinger bands: [middle = SMA(period)], [std] = population standard
    deviation (divide by [period]) of the same window, computed two-pass;
    [upper = middle + k * std], [lower = middle - k * std].  A variance
    [<= 0] gives [std = 0].  First defined at [period-1]. *)

val atr : period:int -> high:float array -> low:float array -> close:float array -> series
(** Average true range, Wilder.

    [TR.(i) = max (high.(i) - low.(i)) |high.(i) - close.(i-1)| |low.(i) - close.(i-1)|]
    for [i >= 1] (bar 0 has no true range).  [out.(period)] is the mean of
    [TR.(1 .. period)], then [out.(i) = (out.(i-1) * (period-1) + TR.(i)) / period].
    First defined at [period]. *)

(** {1 Volume} *)

val vwap :
  period:int ->
  high:float array ->
  low:float array ->
  close:float array ->
  volume:float array ->
  series
(** Rolling volume-weighted average price over the last [period] bars, with
    the typical price [tp = (high + low + close) / 3]:
    [out.(i) = sum (tp * volume) / sum volume].  [None] where the window's
    volume sums to 0, and during warm-up; first defined at [period-1]. *)
