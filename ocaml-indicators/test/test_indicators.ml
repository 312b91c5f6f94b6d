(* Hand-computed test cases for Indicators.

   Every expected value below is worked out by hand in the comment next to
   it, from the definitions in indicators.mli, not from the code under test.
   Run with `dune test`. *)

let passed = ref 0
let failed = ref 0

let close_enough expected actual =
  Float.abs (expected -. actual) <= 1e-12 *. Float.max 1.0 (Float.abs expected)

let show = function None -> "null" | Some v -> Printf.sprintf "%.17g" v

let check_series name (expected : float option list) (actual : float option array) =
  let actual = Array.to_list actual in
  let ok =
    List.length expected = List.length actual
    && List.for_all2
         (fun e a ->
           match e, a with
           | None, None -> true
           | Some e, Some a -> close_enough e a
           | _ -> false)
         expected actual
  in
  if ok then incr passed
  else (
    incr failed;
    Printf.printf "FAIL %s\n  expected [%s]\n  actual   [%s]\n" name
      (String.concat "; " (List.map show expected))
      (String.concat "; " (List.map show actual)))

let check_raises name f =
  match f () with
  | _ ->
      incr failed;
      Printf.printf "FAIL %s: expected Invalid_argument\n" name
  | exception Invalid_argument _ -> incr passed

let n = None
let s x = Some x

(* ---------------------------------------------------------------------- *)
(* SMA                                                                     *)

let () =
  (* SMA(3) of 1..5: (1+2+3)/3 = 2, (2+3+4)/3 = 3, (3+4+5)/3 = 4 *)
  check_series "sma(3) 1..5" [ n; n; s 2.; s 3.; s 4. ] (Indicators.sma ~period:3 [| 1.; 2.; 3.; 4.; 5. |]);
  (* SMA(2) of [4; 8; 6; 0; 1]: 6, 7, 3, 0.5 *)
  check_series "sma(2)" [ n; s 6.; s 7.; s 3.; s 0.5 ] (Indicators.sma ~period:2 [| 4.; 8.; 6.; 0.; 1. |]);
  (* SMA(1) is the identity, defined from index 0 *)
  check_series "sma(1)" [ s 1.5; s (-2.); s 7. ] (Indicators.sma ~period:1 [| 1.5; -2.; 7. |]);
  (* shorter than the period: all warm-up *)
  check_series "sma(5) short" [ n; n; n ] (Indicators.sma ~period:5 [| 1.; 2.; 3. |]);
  check_series "sma empty" [] (Indicators.sma ~period:3 [||])

(* ---------------------------------------------------------------------- *)
(* EMA                                                                     *)

let () =
  (* EMA(3), k = 2/(3+1) = 0.5, on [2; 4; 6; 8; 4; 2]
     seed at i=2: (2+4+6)/3 = 4
     i=3: 4 + 0.5*(8-4) = 6
     i=4: 6 + 0.5*(4-6) = 5
     i=5: 5 + 0.5*(2-5) = 3.5 *)
  check_series "ema(3)" [ n; n; s 4.; s 6.; s 5.; s 3.5 ] (Indicators.ema ~period:3 [| 2.; 4.; 6.; 8.; 4.; 2. |]);
  (* EMA(4), k = 2/5 = 0.4, on [1; 2; 3; 4; 9; 4]
     seed at i=3: (1+2+3+4)/4 = 2.5
     i=4: 2.5 + 0.4*(9-2.5) = 2.5 + 2.6 = 5.1
     i=5: 5.1 + 0.4*(4-5.1) = 5.1 - 0.44 = 4.66 *)
  check_series "ema(4)" [ n; n; n; s 2.5; s 5.1; s 4.66 ]
    (Indicators.ema ~period:4 [| 1.; 2.; 3.; 4.; 9.; 4. |]);
  (* EMA(1): k = 1, so the output is the input *)
  check_series "ema(1)" [ s 3.; s 1.; s 4. ] (Indicators.ema ~period:1 [| 3.; 1.; 4. |])

(* ---------------------------------------------------------------------- *)
(* RSI                                                                     *)

let () =
  (* RSI(2) on [1; 2; 4; 3; 5; 4]; changes d1..d5 = +1, +2, -1, +2, -1
     i=2 seed: gain = (1+2)/2 = 1.5, loss = 0 -> 100*1.5/1.5 = 100
     i=3 (d=-1): gain = (1.5*1 + 0)/2 = 0.75, loss = (0*1 + 1)/2 = 0.5
                 -> 100*0.75/1.25 = 60
     i=4 (d=+2): gain = (0.75 + 2)/2 = 1.375, loss = (0.5 + 0)/2 = 0.25
                 -> 100*1.375/1.625 = 1100/13
     i=5 (d=-1): gain = 1.375/2 = 0.6875, loss = (0.25 + 1)/2 = 0.625
                 -> 100*0.6875/1.3125 = 1100/21 *)
  check_series "rsi(2)"
    [ n; n; s 100.; s 60.; s (1100. /. 13.); s (1100. /. 21.) ]
    (Indicators.rsi ~period:2 [| 1.; 2.; 4.; 3.; 5.; 4. |]);
  (* RSI(3) on [10; 9; 8; 9; 9]; changes -1, -1, +1, 0
     i=3 seed: gain = 1/3, loss = 2/3 -> 100*(1/3)/1 = 100/3
     i=4 (d=0): gain = (1/3*2 + 0)/3 = 2/9, loss = (2/3*2)/3 = 4/9
                -> 100*(2/9)/(6/9) = 100/3 *)
  check_series "rsi(3)" [ n; n; n; s (100. /. 3.); s (100. /. 3.) ]
    (Indicators.rsi ~period:3 [| 10.; 9.; 8.; 9.; 9. |]);
  (* flat series: gain + loss = 0 -> TA-Lib outputs 0, not NaN *)
  check_series "rsi(2) flat" [ n; n; s 0.; s 0. ] (Indicators.rsi ~period:2 [| 5.; 5.; 5.; 5. |]);
  (* falling only: gain = 0 -> 0 *)
  check_series "rsi(2) falling" [ n; n; s 0.; s 0. ] (Indicators.rsi ~period:2 [| 4.; 3.; 2.; 1. |])

(* ---------------------------------------------------------------------- *)
(* MACD                                                                    *)

let () =
  (* MACD(fast=2, slow=3, signal=2) on x = [2; 4; 8; 6; 10; 12]
     slow EMA(3), k = 1/2, seeded at i=2 with (2+4+8)/3 = 14/3
       i=3: 14/3 + (6 - 14/3)/2  = 16/3
       i=4: 16/3 + (10 - 16/3)/2 = 23/3
       i=5: 23/3 + (12 - 23/3)/2 = 59/6
     fast EMA(2), k = 2/3, ALSO seeded at i=2, with mean(x1, x2) = (4+8)/2 = 6
     (TA-Lib alignment; NOT mean(x0, x1) = 3)
       i=3: 6 + 2/3*(6 - 6)     = 6
       i=4: 6 + 2/3*(10 - 6)    = 26/3
       i=5: 26/3 + 2/3*(12 - 26/3) = 26/3 + 20/9 = 98/9
     macd = fast - slow: i=2: 4/3, i=3: 2/3, i=4: 1, i=5: 98/9 - 59/6 = 19/18
     signal EMA(2), k = 2/3, seeded at i = 3 + 2 - 2 = 3 with (4/3 + 2/3)/2 = 1
       i=4: 1 + 2/3*(1 - 1) = 1
       i=5: 1 + 2/3*(19/18 - 1) = 28/27
     histogram = macd - signal: i=3: -1/3, i=4: 0, i=5: 19/18 - 28/27 = 1/54
     All three are null before index slow + signal - 2 = 3, although macd is
     known at i=2. *)
  let x = [| 2.; 4.; 8.; 6.; 10.; 12. |] in
  let expect_macd = [ n; n; n; s (2. /. 3.); s 1.; s (19. /. 18.) ]
  and expect_signal = [ n; n; n; s 1.; s 1.; s (28. /. 27.) ]
  and expect_hist = [ n; n; n; s (-1. /. 3.); s 0.; s (1. /. 54.) ] in
  let m = Indicators.macd ~fast:2 ~slow:3 ~signal:2 x in
  check_series "macd(2,3,2) macd" expect_macd m.macd;
  check_series "macd(2,3,2) signal" expect_signal m.signal;
  check_series "macd(2,3,2) histogram" expect_hist m.histogram;
  (* fast > slow: swapped, same result *)
  let m' = Indicators.macd ~fast:3 ~slow:2 ~signal:2 x in
  check_series "macd(3,2,2) swapped" expect_macd m'.macd;
  check_series "macd(3,2,2) swapped signal" expect_signal m'.signal;
  (* MACD(1,2,1) on [1; 3; 2]: slow EMA(2), k=2/3, seed at 1: 2; i=2: 2 + 2/3*(2-2) = 2
     fast EMA(1) = x: 3, 2.  macd: i=1: 1, i=2: 0.  signal EMA(1) = macd.
     Output from index 2 + 1 - 2 = 1. *)
  let m1 = Indicators.macd ~fast:1 ~slow:2 ~signal:1 [| 1.; 3.; 2. |] in
  check_series "macd(1,2,1) macd" [ n; s 1.; s 0. ] m1.macd;
  check_series "macd(1,2,1) histogram" [ n; s 0.; s 0. ] m1.histogram;
  (* too short for the signal: everything null *)
  let short = Indicators.macd ~fast:2 ~slow:3 ~signal:2 [| 2.; 4.; 8. |] in
  check_series "macd short" [ n; n; n ] short.macd

(* ---------------------------------------------------------------------- *)
(* Bollinger                                                               *)

let () =
  (* Bollinger(3, 2) on [1; 2; 3; 4; 6]
     i=2: window 1,2,3: mean 2, squared deviations 1,0,1 -> var 2/3
          upper = 2 + 2*sqrt(2/3), lower = 2 - 2*sqrt(2/3)
     i=3: window 2,3,4: mean 3, same var 2/3
     i=4: window 3,4,6: mean 13/3, deviations -4/3, -1/3, 5/3,
          squares 16/9 + 1/9 + 25/9 = 42/9 -> var 14/9 -> std sqrt(14)/3 *)
  let r23 = Float.sqrt (2. /. 3.) and r14 = Float.sqrt 14. /. 3. in
  let b = Indicators.bollinger ~period:3 ~k:2.0 [| 1.; 2.; 3.; 4.; 6. |] in
  check_series "bollinger middle" [ n; n; s 2.; s 3.; s (13. /. 3.) ] b.middle;
  check_series "bollinger upper" [ n; n; s (2. +. (2. *. r23)); s (3. +. (2. *. r23)); s ((13. /. 3.) +. (2. *. r14)) ] b.upper;
  check_series "bollinger lower" [ n; n; s (2. -. (2. *. r23)); s (3. -. (2. *. r23)); s ((13. /. 3.) -. (2. *. r14)) ] b.lower;
  (* constant window: std = 0 so all bands coincide *)
  let c = Indicators.bollinger ~period:2 ~k:2.0 [| 7.; 7.; 7. |] in
  check_series "bollinger flat upper" [ n; s 7.; s 7. ] c.upper;
  check_series "bollinger flat lower" [ n; s 7.; s 7. ] c.lower;
  (* large prices, tiny spread: window 100000.1, 100000.3 -> std 0.1 (two-pass keeps it) *)
  let big = Indicators.bollinger ~period:2 ~k:1.0 [| 100000.1; 100000.3 |] in
  check_series "bollinger large prices" [ n; s 100000.3 ] big.upper

(* ---------------------------------------------------------------------- *)
(* ATR / Stochastic / VWAP share these bars                                *)

let high = [| 10.; 12.; 11.; 10.; 9. |]
let low = [| 8.; 11.; 10.; 7.; 8.5 |]
let close = [| 9.; 11.5; 10.5; 8.; 9. |]

let () =
  (* True ranges (bar 0 has none):
       i=1: max(12-11=1, |12-9|=3,    |11-9|=2)    = 3
       i=2: max(11-10=1, |11-11.5|=.5, |10-11.5|=1.5) = 1.5
       i=3: max(10-7=3,  |10-10.5|=.5, |7-10.5|=3.5)  = 3.5
       i=4: max(9-8.5=.5, |9-8|=1,    |8.5-8|=.5)    = 1
     ATR(2): i=2: (3 + 1.5)/2 = 2.25
             i=3: (2.25*1 + 3.5)/2 = 2.875
             i=4: (2.875*1 + 1)/2 = 1.9375 *)
  check_series "atr(2)" [ n; n; s 2.25; s 2.875; s 1.9375 ] (Indicators.atr ~period:2 ~high ~low ~close);
  (* ATR(1) is the true range itself, from index 1 *)
  check_series "atr(1)" [ n; s 3.; s 1.5; s 3.5; s 1. ] (Indicators.atr ~period:1 ~high ~low ~close);
  (* ATR(3): i=3: (3 + 1.5 + 3.5)/3 = 8/3; i=4: (8/3*2 + 1)/3 = 19/9 *)
  check_series "atr(3)" [ n; n; n; s (8. /. 3.); s (19. /. 9.) ] (Indicators.atr ~period:3 ~high ~low ~close)

let () =
  (* fastK(3): highest high / lowest low of the last 3 bars
       i=2: HH = max(10,12,11) = 12, LL = min(8,11,10) = 8 -> 100*(10.5-8)/4 = 62.5
       i=3: HH = max(12,11,10) = 12, LL = min(11,10,7) = 7 -> 100*(8-7)/5   = 20
       i=4: HH = max(11,10,9)  = 11, LL = min(10,7,8.5) = 7 -> 100*(9-7)/4  = 50
     Stochastic(3,1,1): K = fastK, D = K *)
  let st = Indicators.stochastic ~k_period:3 ~k_slowing:1 ~d_period:1 ~high ~low ~close in
  check_series "stochastic(3,1,1) k" [ n; n; s 62.5; s 20.; s 50. ] st.k;
  check_series "stochastic(3,1,1) d" [ n; n; s 62.5; s 20.; s 50. ] st.d;
  (* Stochastic(3,2,2): slowK = SMA(2) fastK: i=3: (62.5+20)/2 = 41.25, i=4: (20+50)/2 = 35
     D = SMA(2) slowK: i=4: (41.25 + 35)/2 = 38.125
     both null before (3-1)+(2-1)+(2-1) = 4 *)
  let st2 = Indicators.stochastic ~k_period:3 ~k_slowing:2 ~d_period:2 ~high ~low ~close in
  check_series "stochastic(3,2,2) k" [ n; n; n; n; s 35. ] st2.k;
  check_series "stochastic(3,2,2) d" [ n; n; n; n; s 38.125 ] st2.d;
  (* HH = LL (flat bars) -> fastK = 0 *)
  let flat = [| 5.; 5.; 5. |] in
  let st3 = Indicators.stochastic ~k_period:2 ~k_slowing:1 ~d_period:1 ~high:flat ~low:flat ~close:flat in
  check_series "stochastic flat" [ n; s 0.; s 0. ] st3.k

let () =
  (* typical prices tp = (h+l+c)/3: 27/3 = 9, 34.5/3 = 11.5, 31.5/3 = 10.5, 25/3, 26.5/3
     volumes [1; 3; 2; 0; 0]
     VWAP(2): i=1: (9*1 + 11.5*3)/4    = 43.5/4 = 10.875
              i=2: (11.5*3 + 10.5*2)/5 = 55.5/5 = 11.1
              i=3: (10.5*2 + 25/3*0)/2 = 10.5
              i=4: volume sums to 0   -> null *)
  let volume = [| 1.; 3.; 2.; 0.; 0. |] in
  check_series "vwap(2)" [ n; s 10.875; s 11.1; s 10.5; n ] (Indicators.vwap ~period:2 ~high ~low ~close ~volume);
  (* VWAP(1) = typical price where volume > 0 *)
  check_series "vwap(1)" [ s 9.; s 11.5; s 10.5; n; n ] (Indicators.vwap ~period:1 ~high ~low ~close ~volume);
  (* VWAP(3) at i=2: (9*1 + 11.5*3 + 10.5*2)/6 = 64.5/6 = 10.75 *)
  check_series "vwap(3)" [ n; n; s 10.75; s 11.1; s 10.5 ] (Indicators.vwap ~period:3 ~high ~low ~close ~volume)

(* ---------------------------------------------------------------------- *)
(* Errors                                                                  *)

let () =
  check_raises "sma period 0" (fun () -> Indicators.sma ~period:0 [| 1. |]);
  check_raises "ema period -1" (fun () -> Indicators.ema ~period:(-1) [| 1. |]);
  check_raises "rsi period 0" (fun () -> Indicators.rsi ~period:0 [| 1. |]);
  check_raises "macd signal 0" (fun () -> Indicators.macd ~fast:2 ~slow:3 ~signal:0 [| 1. |]);
  check_raises "bollinger period 0" (fun () -> Indicators.bollinger ~period:0 ~k:2. [| 1. |]);
  check_raises "atr lengths" (fun () -> Indicators.atr ~period:2 ~high ~low ~close:[| 1. |]);
  check_raises "stochastic d_period 0" (fun () ->
      Indicators.stochastic ~k_period:3 ~k_slowing:1 ~d_period:0 ~high ~low ~close);
  check_raises "vwap lengths" (fun () -> Indicators.vwap ~period:2 ~high ~low ~close ~volume:[| 1. |])

let () =
  Printf.printf "%d passed, %d failed\n" !passed !failed;
  if !failed > 0 then exit 1
