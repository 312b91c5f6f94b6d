(* tradesim OCaml indicators CLI.

   Reads ONE JSON value on stdin:
     - a request  {"indicator": "rsi", "params": {"period": 14},
                   "inputs": {"close": [...]}}
       answered by {"outputs": {"rsi": [null, ..., 53.2, ...]}}
     - or a JSON array of requests, answered by a JSON array of responses
       (one per request, in order).
   Warm-up values are null; floats are printed with %.17g (exact round trip).
   A request that cannot be answered yields {"error": "..."} in its place and
   the exit status is 1. *)

exception Bad_request of string

let fail fmt = Printf.ksprintf (fun msg -> raise (Bad_request msg)) fmt

let usage =
  "usage: main.exe < request.json\n\n\
   Reads one JSON request (or a JSON array of requests) on stdin and writes the\n\
   response(s) to stdout.  Request:\n\
  \  {\"indicator\": NAME, \"params\": {...}, \"inputs\": {\"close\": [...], ...}}\n\n\
   indicator   params                         inputs                      outputs\n\
   sma         period                         close                       sma\n\
   ema         period                         close                       ema\n\
   rsi         period                         close                       rsi\n\
   macd        fast, slow, signal             close                       macd, signal, histogram\n\
   bollinger   period, k                      close                       upper, middle, lower\n\
   atr         period                         high, low, close            atr\n\
   stochastic  k_period, k_slowing, d_period  high, low, close            k, d\n\
   vwap        period                         high, low, close, volume    vwap\n"

(* ---------------------------------------------------------------------- *)
(* Request decoding                                                        *)

type request = { name : string; params : (string * Yojson.Safe.t) list; inputs : (string * Yojson.Safe.t) list }

let fields what = function
  | `Assoc kv -> kv
  | _ -> fail "%s must be a JSON object" what

let decode_request json =
  let kv = fields "a request" json in
  let name =
    match List.assoc_opt "indicator" kv with
    | Some (`String s) -> s
    | Some _ -> fail "\"indicator\" must be a string"
    | None -> fail "missing \"indicator\""
  in
  let params = match List.assoc_opt "params" kv with None -> [] | Some p -> fields "\"params\"" p in
  let inputs = match List.assoc_opt "inputs" kv with None -> [] | Some i -> fields "\"inputs\"" i in
  { name; params; inputs }

let int_param req key =
  let value =
    match List.assoc_opt key req.params with
    | Some (`Int n) -> n
    | Some (`Float f) when Float.is_integer f && Float.abs f < 1e9 -> int_of_float f
    | Some _ -> fail "%s: param %S must be an integer" req.name key
    | None -> fail "%s: missing param %S" req.name key
  in
  if value < 1 then fail "%s: param %S must be >= 1, got %d" req.name key value;
  value

let float_param req key =
  match List.assoc_opt key req.params with
  | Some (`Int n) -> float_of_int n
  | Some (`Float f) -> f
  | Some _ -> fail "%s: param %S must be a number" req.name key
  | None -> fail "%s: missing param %S" req.name key

let number_of req key = function
  | `Float f -> f
  | `Int n -> float_of_int n
  | `Intlit s -> float_of_string s
  | `Null -> Float.nan
  | _ -> fail "%s: input %S must be an array of numbers" req.name key

let input req key =
  match List.assoc_opt key req.inputs with
  | Some (`List xs) -> Array.of_list (List.map (number_of req key) xs)
  | Some _ -> fail "%s: input %S must be an array of numbers" req.name key
  | None -> fail "%s: missing input %S" req.name key

(* All inputs of one request must have the same length. *)
let inputs req keys =
  let arrays = List.map (input req) keys in
  (match arrays with
  | first :: rest when List.exists (fun a -> Array.length a <> Array.length first) rest ->
      fail "%s: inputs %s differ in length" req.name (String.concat ", " keys)
  | _ -> ());
  arrays

(* Reject misspelt params rather than silently using a default. *)
let expect_params req known =
  List.iter
    (fun (key, _) ->
      if not (List.mem key known) then
        fail "%s: unknown param %S (expected %s)" req.name key (String.concat ", " known))
    req.params

(* ---------------------------------------------------------------------- *)
(* Dispatch                                                                *)

let compute req : (string * Indicators.series) list =
  let close () = match inputs req [ "close" ] with [ c ] -> c | _ -> assert false in
  let hlc () = match inputs req [ "high"; "low"; "close" ] with [ h; l; c ] -> (h, l, c) | _ -> assert false in
  match req.name with
  | "sma" ->
      expect_params req [ "period" ];
      [ ("sma", Indicators.sma ~period:(int_param req "period") (close ())) ]
  | "ema" ->
      expect_params req [ "period" ];
      [ ("ema", Indicators.ema ~period:(int_param req "period") (close ())) ]
  | "rsi" ->
      expect_params req [ "period" ];
      [ ("rsi", Indicators.rsi ~period:(int_param req "period") (close ())) ]
  | "macd" ->
      expect_params req [ "fast"; "slow"; "signal" ];
      let fast = int_param req "fast" and slow = int_param req "slow" and signal = int_param req "signal" in
      let m = Indicators.macd ~fast ~slow ~signal (close ()) in
      [ ("macd", m.macd); ("signal", m.signal); ("histogram", m.histogram) ]
  | "bollinger" ->
      expect_params req [ "period"; "k" ];
      let period = int_param req "period" and k = float_param req "k" in
      let b = Indicators.bollinger ~period ~k (close ()) in
      [ ("upper", b.upper); ("middle", b.middle); ("lower", b.lower) ]
  | "atr" ->
      expect_params req [ "period" ];
      let period = int_param req "period" in
      let high, low, close = hlc () in
      [ ("atr", Indicators.atr ~period ~high ~low ~close) ]
  | "stochastic" ->
      expect_params req [ "k_period"; "k_slowing"; "d_period" ];
      let k_period = int_param req "k_period"
      and k_slowing = int_param req "k_slowing"
      and d_period = int_param req "d_period" in
      let high, low, close = hlc () in
      let s = Indicators.stochastic ~k_period ~k_slowing ~d_period ~high ~low ~close in
      [ ("k", s.k); ("d", s.d) ]
  | "vwap" ->
      expect_params req [ "period" ];
      let period = int_param req "period" in
      let high, low, close, volume =
        match inputs req [ "high"; "low"; "close"; "volume" ] with
        | [ h; l; c; v ] -> (h, l, c, v)
        | _ -> assert false
      in
      [ ("vwap", Indicators.vwap ~period ~high ~low ~close ~volume) ]
  | other ->
      fail "unknown indicator %S (expected one of sma, ema, rsi, macd, bollinger, atr, stochastic, vwap)"
        other

(* ---------------------------------------------------------------------- *)
(* Response encoding                                                       *)

(* The C primitive behind [Printf.sprintf "%.17g"], called directly: the
   Printf machinery dominated the run time on 130k-bar requests. *)
external format_float : string -> float -> string = "caml_format_float"

let add_value buf = function
  | Some v when Float.is_finite v -> Buffer.add_string buf (format_float "%.17g" v)
  | Some _ | None -> Buffer.add_string buf "null"

let add_series buf (s : Indicators.series) =
  Buffer.add_char buf '[';
  Array.iteri
    (fun i v ->
      if i > 0 then Buffer.add_char buf ',';
      add_value buf v)
    s;
  Buffer.add_char buf ']'

let add_outputs buf outputs =
  Buffer.add_string buf "{\"outputs\":{";
  List.iteri
    (fun i (name, s) ->
      if i > 0 then Buffer.add_char buf ',';
      Buffer.add_string buf (Yojson.Safe.to_string (`String name));
      Buffer.add_char buf ':';
      add_series buf s)
    outputs;
  Buffer.add_string buf "}}"

let add_error buf msg = Buffer.add_string buf (Yojson.Safe.to_string (`Assoc [ ("error", `String msg) ]))

(* Answer one request into [buf]; [true] on success. *)
let answer buf json =
  match compute (decode_request json) with
  | outputs ->
      add_outputs buf outputs;
      true
  | exception Bad_request msg ->
      add_error buf msg;
      false
  | exception Invalid_argument msg ->
      add_error buf msg;
      false

let () =
  if Array.exists (fun a -> a = "-h" || a = "--help") Sys.argv then (
    print_string usage;
    exit 0);
  let buf = Buffer.create (1 lsl 16) in
  let ok =
    match Yojson.Safe.from_channel stdin with
    | exception Yojson.Json_error msg ->
        add_error buf ("invalid JSON on stdin: " ^ msg);
        false
    | `List requests ->
        Buffer.add_char buf '[';
        let ok =
          List.fold_left
            (fun (ok, first) json ->
              if not first then Buffer.add_char buf ',';
              (answer buf json && ok, false))
            (true, true) requests
          |> fst
        in
        Buffer.add_char buf ']';
        ok
    | json -> answer buf json
  in
  Buffer.add_char buf '\n';
  print_string (Buffer.contents buf);
  exit (if ok then 0 else 1)
