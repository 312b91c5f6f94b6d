(* Technical indicators with TA-Lib's conventions; see indicators.mli. *)

type series = float option array

(* ---------------------------------------------------------------------- *)
(* Argument checks                                                         *)

let check_period fn name p =
  if p < 1 then
    invalid_arg (Printf.sprintf "Indicators.%s: %s must be >= 1, got %d" fn name p)

let check_lengths fn = function
  | [] -> ()
  | first :: rest ->
      let n = Array.length first in
      if List.exists (fun a -> Array.length a <> n) rest then
        invalid_arg (Printf.sprintf "Indicators.%s: input arrays differ in length" fn)

(* ---------------------------------------------------------------------- *)
(* Generic combinators                                                     *)

(* [scani step init xs] threads a state through [xs] from left to right,
   collecting one output per element: a [fold_left] that keeps its trail.
   [step state i x] returns the next state and the output at index [i]. *)
let scani step init xs =
  let _, _, rev_out =
    Array.fold_left
      (fun (state, i, acc) x ->
        let state', y = step state i x in
        (state', i + 1, y :: acc))
      (init, 0, []) xs
  in
  Array.of_list (List.rev rev_out)

(* Fold [f] over [xs.(lo .. hi)] (inclusive), left to right. *)
let fold_range f init xs lo hi =
  let rec go j acc = if j > hi then acc else go (j + 1) (f acc xs.(j)) in
  go lo init

let sum_range xs lo hi = fold_range ( +. ) 0.0 xs lo hi

(* [rolling ~len n f] is defined at every [i >= n-1] as [f (i-n+1) i], the
   function of the window ending at [i]; [None] before that. *)
let rolling ~len n f =
  Array.init len (fun i -> if i >= n - 1 then f (i - n + 1) i else None)

(* The elements of [xs] from index [k] on (empty when [k >= length]). *)
let drop k xs =
  let n = Array.length xs in
  if k >= n then [||] else Array.sub xs k (n - k)

(* Left-pad a series with warm-up [None]s to length [len]. *)
let pad_left len (s : series) : series =
  Array.append (Array.make (len - Array.length s) None) s

(* Apply a batch function on plain values to the defined part of a series
   whose warm-up is a prefix of [None]s, keeping the series' alignment. *)
let lift f (s : series) : series =
  let len = Array.length s in
  let rec first_defined i = if i < len && s.(i) = None then first_defined (i + 1) else i in
  let values = Array.map (function Some v -> v | None -> Float.nan) (drop (first_defined 0) s) in
  pad_left len (f values)

let map2_defined f (a : series) (b : series) : series =
  Array.map2 (fun x y -> match x, y with Some x, Some y -> Some (f x y) | _ -> None) a b

(* Hide outputs before index [start] (TA-Lib aligns multi-output functions
   on the longest warm-up). *)
let defined_from start (s : series) : series =
  Array.mapi (fun i v -> if i < start then None else v) s

(* ---------------------------------------------------------------------- *)
(* Moving-average kernels on plain arrays                                  *)

(* Running-sum SMA, in TA-Lib's order of operations: the sum emitted at [i]
   is [(sum at i-1 - x.(i-n)) + x.(i)], and the first one is the sequential
   sum [((0 + x0) + x1) + ...].  This matters when the exact mean is 0 and
   TA-Lib's running sum leaves a tiny residue (stochastic on real data). *)
let sma_values n xs : series =
  let fn = float_of_int n in
  scani
    (fun sum i x ->
      let sum = if i < n then sum +. x else sum -. xs.(i - n) +. x in
      (sum, if i >= n - 1 then Some (sum /. fn) else None))
    0.0 xs

(* State of a recursive average seeded with a simple mean. *)
type seeded =
  | Seeding of float  (* partial sum of the first inputs *)
  | Running of float  (* last output *)

(* Seeded recursion: at index [n-1] the output is the mean of the first [n]
   inputs; afterwards [next previous_output x]. EMA and Wilder's smoothing are
   both of this shape. *)
let sma_seeded n next xs : series =
  let fn = float_of_int n in
  scani
    (fun state i x ->
      match state with
      | Seeding sum when i < n - 1 -> (Seeding (sum +. x), None)
      | Seeding sum ->
          let v = (sum +. x) /. fn in
          (Running v, Some v)
      | Running prev ->
          let v = next prev x in
          (Running v, Some v))
    (Seeding 0.0) xs

let ema_values n xs =
  let k = 2.0 /. float_of_int (n + 1) in
  sma_seeded n (fun prev x -> prev +. (k *. (x -. prev))) xs

let wilder_values n xs =
  let fn = float_of_int n and fn1 = float_of_int (n - 1) in
  sma_seeded n (fun prev x -> ((prev *. fn1) +. x) /. fn) xs

(* ---------------------------------------------------------------------- *)
(* Indicators                                                              *)

let sma ~period x =
  check_period "sma" "period" period;
  sma_values period x

let ema ~period x =
  check_period "ema" "period" period;
  ema_values period x

(* Price changes d.(i) = x.(i) - x.(i-1) for i >= 1 (length n-1). *)
let changes x = Array.init (max 0 (Array.length x - 1)) (fun i -> x.(i + 1) -. x.(i))

let rsi ~period x =
  check_period "rsi" "period" period;
  let d = changes x in
  let gains = Array.map (fun c -> if c < 0.0 then 0.0 else c) d
  and losses = Array.map (fun c -> if c < 0.0 then -.c else 0.0) d in
  let strength gain loss =
    let total = gain +. loss in
    (* No movement at all: 0, like TA-Lib (>= 0.6) and the Cython core. *)
    if total = 0.0 then 0.0 else 100.0 *. (gain /. total)
  in
  let out = map2_defined strength (wilder_values period gains) (wilder_values period losses) in
  pad_left (Array.length x) out

type macd = { macd : series; signal : series; histogram : series }

let macd ~fast ~slow ~signal x =
  check_period "macd" "fast" fast;
  check_period "macd" "slow" slow;
  check_period "macd" "signal" signal;
  let fast, slow = if fast > slow then (slow, fast) else (fast, slow) in
  let len = Array.length x in
  let slow_ema = ema_values slow x in
  (* the fast EMA is seeded at slow-1 too: start it [slow - fast] bars late *)
  let fast_ema = pad_left len (ema_values fast (drop (slow - fast) x)) in
  let line = map2_defined ( -. ) fast_ema slow_ema in
  let signal_line = lift (ema_values signal) line in
  let histogram = map2_defined ( -. ) line signal_line in
  let start = slow + signal - 2 in
  {
    macd = defined_from start line;
    signal = defined_from start signal_line;
    histogram = defined_from start histogram;
  }

type stochastic = { k : series; d : series }

let stochastic ~k_period ~k_slowing ~d_period ~high ~low ~close =
  check_period "stochastic" "k_period" k_period;
  check_period "stochastic" "k_slowing" k_slowing;
  check_period "stochastic" "d_period" d_period;
  check_lengths "stochastic" [ high; low; close ];
  let fast_k =
    rolling ~len:(Array.length close) k_period (fun lo hi ->
        let hh = fold_range Float.max Float.neg_infinity high lo hi
        and ll = fold_range Float.min Float.infinity low lo hi in
        let range = hh -. ll in
        Some (if range = 0.0 then 0.0 else 100.0 *. ((close.(hi) -. ll) /. range)))
  in
  let slow_k = lift (sma_values k_slowing) fast_k in
  let d = lift (sma_values d_period) slow_k in
  let start = k_period - 1 + (k_slowing - 1) + (d_period - 1) in
  { k = defined_from start slow_k; d = defined_from start d }

type bands = { upper : series; middle : series; lower : series }

let bollinger ~period ~k x =
  check_period "bollinger" "period" period;
  let fn = float_of_int period in
  let middle = sma_values period x in
  let std =
    rolling ~len:(Array.length x) period (fun lo hi ->
        let mean = sum_range x lo hi /. fn in
        let var = fold_range (fun acc v -> acc +. ((v -. mean) *. (v -. mean))) 0.0 x lo hi /. fn in
        Some (if var > 0.0 then Float.sqrt var else 0.0))
  in
  {
    upper = map2_defined (fun m s -> m +. (k *. s)) middle std;
    middle;
    lower = map2_defined (fun m s -> m -. (k *. s)) middle std;
  }

let atr ~period ~high ~low ~close =
  check_period "atr" "period" period;
  check_lengths "atr" [ high; low; close ];
  (* true range of bars 1 .. n-1 *)
  let true_range =
    Array.init (max 0 (Array.length close - 1)) (fun j ->
        let i = j + 1 and prev_close = close.(j) in
        Float.max
          (high.(i) -. low.(i))
          (Float.max (Float.abs (high.(i) -. prev_close)) (Float.abs (low.(i) -. prev_close))))
  in
  pad_left (Array.length close) (wilder_values period true_range)

let vwap ~period ~high ~low ~close ~volume =
  check_period "vwap" "period" period;
  check_lengths "vwap" [ high; low; close; volume ];
  let typical = Array.init (Array.length close) (fun i -> (high.(i) +. low.(i) +. close.(i)) /. 3.0) in
  let pv = Array.map2 ( *. ) typical volume in
  rolling ~len:(Array.length close) period (fun lo hi ->
      let vol = sum_range volume lo hi in
      if vol = 0.0 then None else Some (sum_range pv lo hi /. vol))
