-------------------------- MODULE HttpPutPostDelete --------------------------
(***************************************************************************)
(* Exactly-once across HTTP between two services that both use exactly    *)
(* (DESIGN.md, "HTTP at the edges", the workshop's protocol):             *)
(*                                                                         *)
(*   PUT    /requests/r   store the request body under a fresh id r        *)
(*                        (the stored request IS the token),               *)
(*   POST   /requests/r   execute: process once, store the response;       *)
(*                        a repeated POST gets the stored response;        *)
(*                        404 if r is not stored (the caller PUTs again),  *)
(*   DELETE /requests/r   once the caller handled the response.            *)
(*                                                                         *)
(* Caller: the call is a side effect in the caller's OutboxEntry; its      *)
(* phase (put/post/delete/done) lives in the caller's record.  Dispatcher  *)
(* instances read the phase, send the request, and on the answer advance   *)
(* the phase with a conditional write (handling the POST response is a     *)
(* state change of the caller: counted in `handled`).  A dispatcher may    *)
(* crash or time out while its request is still being processed.          *)
(*                                                                         *)
(* Server: each request is handled by a server instance step by step      *)
(* (read the request record, then write it conditionally), so a request   *)
(* whose caller timed out may still be processed late ("stale server      *)
(* work").  Execution + storing the response is one conditional write on  *)
(* the request record (the server's own exactly-once machinery).          *)
(*                                                                         *)
(* Findings this model records:                                            *)
(*  - As usually described (POST /requests/r alone), the protocol executes *)
(*    twice (variant "PostByIdOnly"): a caller that timed out has a late   *)
(*    PUT and a late POST still in flight; the PUT re-creates r after the  *)
(*    DELETE and the POST executes it again ("absent" cannot tell "not     *)
(*    stored yet" from "already deleted" -- the token problem again).      *)
(*    Fix, modelled as "Good": the PUT's answer carries the generation of  *)
(*    the stored request (an ETag unique to that creation), the caller     *)
(*    records it with its phase, and every POST carries it (If-Match); a   *)
(*    POST for another generation gets 404.                                *)
(*  - that needs generations that never repeat: variant "ReusedVersion"    *)
(*    (a counter restarting at 1, or an ETag that is a hash of identical   *)
(*    content) executes twice again;                                       *)
(*  - "nothing left stored" does NOT hold by itself: a late PUT arriving   *)
(*    after the DELETE re-creates r and nobody will ever POST or DELETE    *)
(*    it.  A collector that deletes never-executed requests after a grace  *)
(*    period is needed (safe at any time: a caller whose request vanished  *)
(*    before execution gets 404 and PUTs again).                           *)
(***************************************************************************)
EXTENDS Naturals, FiniteSets

CONSTANTS Dispatchers, Servers, MaxCrashes, MaxCollect, Variant

ASSUME Variant \in {"Good", "PostByIdOnly", "ReusedVersion"}

Ops == {"PUT", "POST", "DELETE"}

VARIABLES
    phase, cgen, cver, \* the caller's record: phase of call r, generation of r, Version
    dpc, dop, dver, dseq, dres,  \* dispatchers: step, op, caller Version read, request seq, result
    http,             \* requests on their way to / inside the server: [d, seq, op]
    spc, sreq, sver,  \* server instances: step, request, request-record Version read
    srv,              \* the server's request record r: [exists, resp, gen, ver]
    gen,              \* source of fresh Versions
    crashes, collected,
    executions,       \* (history) times the server executed r
    handled           \* (history) times the caller handled r's response

vars == <<phase, cgen, cver, dpc, dop, dver, dseq, dres, http, spc, sreq, sver, srv,
          gen, crashes, collected, executions, handled>>

UseCollector == MaxCollect > 0

NoReq == [d |-> "none", seq |-> 0, op |-> "none", gen |-> 0]
NoRes == [r |-> "none", gen |-> 0]

Init ==
    /\ phase = "put" /\ cgen = 0 /\ cver = 0
    /\ dpc = [d \in Dispatchers |-> "idle"]
    /\ dop = [d \in Dispatchers |-> "none"]
    /\ dver = [d \in Dispatchers |-> 0]
    /\ dseq = [d \in Dispatchers |-> 0]
    /\ dres = [d \in Dispatchers |-> NoRes]
    /\ http = {}
    /\ spc = [s \in Servers |-> "idle"]
    /\ sreq = [s \in Servers |-> NoReq]
    /\ sver = [s \in Servers |-> 0]
    /\ srv = [exists |-> FALSE, resp |-> FALSE, gen |-> 0, ver |-> 0]
    /\ gen = 0 /\ crashes = 0 /\ collected = 0 /\ executions = 0 /\ handled = 0

OpOf(p) == CASE p = "put" -> "PUT" [] p = "post" -> "POST" [] p = "delete" -> "DELETE"

(* A dispatcher reads the caller's phase and sends the matching request.  The *)
(* sequence number tells a late answer from the current one.                  *)
DSend(d) ==
    /\ dpc[d] = "idle"
    /\ phase # "done"
    /\ dop' = [dop EXCEPT ![d] = OpOf(phase)]
    /\ dver' = [dver EXCEPT ![d] = cver]
    /\ dseq' = [dseq EXCEPT ![d] = @ + 1]
    /\ http' = http \cup {[d |-> d, seq |-> dseq[d] + 1, op |-> OpOf(phase), gen |-> cgen]}
    /\ dpc' = [dpc EXCEPT ![d] = "wait"]
    /\ UNCHANGED <<phase, cgen, cver, dres, spc, sreq, sver, srv, gen, crashes, collected, executions, handled>>

(* The answer arrived: advance the caller's phase with a conditional write. *)
DApply(d) ==
    /\ dpc[d] = "got"
    /\ IF cver = dver[d]
       THEN /\ phase' = CASE dop[d] = "PUT"                          -> "post"
                          [] dop[d] = "POST" /\ dres[d].r = "notfound" -> "put"
                          [] dop[d] = "POST"                         -> "delete"
                          [] dop[d] = "DELETE"                       -> "done"
            /\ cgen' = IF dop[d] = "PUT" THEN dres[d].gen ELSE cgen
            /\ cver' = cver + 1
            /\ handled' = IF dop[d] = "POST" /\ dres[d].r = "resp" THEN handled + 1 ELSE handled
       ELSE UNCHANGED <<phase, cgen, cver, handled>>     \* Conflict: start again
    /\ dpc' = [dpc EXCEPT ![d] = "idle"]
    /\ dres' = [dres EXCEPT ![d] = NoRes]
    /\ UNCHANGED <<dop, dver, dseq, http, spc, sreq, sver, srv, gen, crashes, collected, executions>>

(* A dispatcher crashes or times out; its request may still be processed. *)
DCrash(d) ==
    /\ crashes < MaxCrashes
    /\ dpc[d] # "idle"
    /\ crashes' = crashes + 1
    /\ dpc' = [dpc EXCEPT ![d] = "idle"]
    /\ dres' = [dres EXCEPT ![d] = NoRes]
    /\ UNCHANGED <<phase, cgen, cver, dop, dver, dseq, http, spc, sreq, sver, srv, gen, collected,
                   executions, handled>>

-----------------------------------------------------------------------------
(* Server instances *)
STake(s) ==
    /\ spc[s] = "idle"
    /\ \E q \in http : /\ http' = http \ {q}
                       /\ sreq' = [sreq EXCEPT ![s] = q]
    /\ spc' = [spc EXCEPT ![s] = "read"]
    /\ UNCHANGED <<phase, cgen, cver, dpc, dop, dver, dseq, dres, sver, srv, gen, crashes, collected,
                   executions, handled>>

Reply(s, r, g) ==
    /\ spc' = [spc EXCEPT ![s] = "idle"]
    /\ sreq' = [sreq EXCEPT ![s] = NoReq]
    /\ sver' = [sver EXCEPT ![s] = 0]
    /\ LET q == sreq[s] IN
       IF dpc[q.d] = "wait" /\ dseq[q.d] = q.seq      \* the caller still waits
       THEN /\ dres' = [dres EXCEPT ![q.d] = [r |-> r, gen |-> g]]
            /\ dpc' = [dpc EXCEPT ![q.d] = "got"]
       ELSE UNCHANGED <<dres, dpc>>                   \* nobody listens any more

(* Step 1 of every request: read the request record. *)
SRead(s) ==
    /\ spc[s] = "read"
    /\ LET op == sreq[s].op IN
       CASE op = "PUT" ->
              IF srv.exists THEN Reply(s, "ok", srv.gen) /\ UNCHANGED <<srv, gen, executions>>
              ELSE /\ spc' = [spc EXCEPT ![s] = "write"]
                   /\ UNCHANGED <<sreq, sver, dres, dpc, srv, gen, executions>>
         [] op = "POST" ->
              \* Good: If-Match on the generation the caller got from its PUT
              IF ~srv.exists \/ (Variant # "PostByIdOnly" /\ srv.gen # sreq[s].gen)
              THEN Reply(s, "notfound", 0) /\ UNCHANGED <<srv, gen, executions>>
              ELSE IF srv.resp THEN Reply(s, "resp", 0) /\ UNCHANGED <<srv, gen, executions>>
              ELSE /\ spc' = [spc EXCEPT ![s] = "write"]
                   /\ sver' = [sver EXCEPT ![s] = srv.ver]
                   /\ UNCHANGED <<sreq, dres, dpc, srv, gen, executions>>
         [] op = "DELETE" ->      \* delete request and response (one key)
              /\ srv' = [srv EXCEPT !.exists = FALSE, !.resp = FALSE]
              /\ Reply(s, "ok", 0)
              /\ UNCHANGED <<gen, executions>>
    /\ UNCHANGED <<phase, cgen, cver, dop, dver, dseq, http, crashes, collected, handled>>

(* Step 2: the conditional write. *)
SWrite(s) ==
    /\ spc[s] = "write"
    /\ LET op == sreq[s].op
           fresh == IF Variant = "ReusedVersion" THEN 1 ELSE gen + 1
       IN CASE op = "PUT" ->                 \* create-if-absent
                 /\ IF ~srv.exists
                    THEN /\ srv' = [exists |-> TRUE, resp |-> FALSE, gen |-> fresh, ver |-> fresh]
                         /\ gen' = gen + 1
                         /\ Reply(s, "ok", fresh)
                    ELSE /\ UNCHANGED <<srv, gen>>
                         /\ Reply(s, "ok", srv.gen)
                 /\ UNCHANGED executions
            [] op = "POST" ->                \* execute + store response, if unchanged
                 IF srv.exists /\ srv.ver = sver[s]
                 THEN /\ srv' = [srv EXCEPT !.resp = TRUE,
                                 !.ver = IF Variant = "ReusedVersion" THEN @ + 1 ELSE gen + 1]
                      /\ gen' = gen + 1
                      /\ executions' = executions + 1
                      /\ Reply(s, "resp", 0)
                 ELSE /\ spc' = [spc EXCEPT ![s] = "read"]  \* Conflict: read again
                      /\ UNCHANGED <<sreq, sver, dres, dpc, srv, gen, executions>>
    /\ UNCHANGED <<phase, cgen, cver, dop, dver, dseq, http, crashes, collected, handled>>

(* The collector: a request never executed is deleted after a grace period.  *)
(* Time is not modelled: while the caller still works on r the collector may  *)
(* strike at any moment (safe: the caller gets 404 and PUTs again), at most   *)
(* MaxCollect times -- the grace period outlasts a live caller's pauses, so   *)
(* it cannot starve it forever.  Once the caller is done, what is left is     *)
(* garbage and the collector removes it (no bound).  MaxCollect = 0 means no  *)
(* collector at all.                                                         *)
Collect ==
    /\ UseCollector
    /\ phase = "done" \/ collected < MaxCollect
    /\ srv.exists /\ ~srv.resp
    /\ srv' = [srv EXCEPT !.exists = FALSE]
    /\ collected' = IF phase = "done" THEN collected ELSE collected + 1
    /\ UNCHANGED <<phase, cgen, cver, dpc, dop, dver, dseq, dres, http, spc, sreq, sver,
                   gen, crashes, executions, handled>>

Next ==
    \/ \E d \in Dispatchers : DSend(d) \/ DApply(d) \/ DCrash(d)
    \/ \E s \in Servers : STake(s) \/ SRead(s) \/ SWrite(s)
    \/ Collect

Fair == /\ \A d \in Dispatchers : WF_vars(DSend(d) \/ DApply(d))
        /\ \A s \in Servers : WF_vars(STake(s) \/ SRead(s) \/ SWrite(s))
        /\ WF_vars(Collect /\ phase = "done")

Spec == Init /\ [][Next]_vars /\ Fair

-----------------------------------------------------------------------------
ExecutedOnce == executions <= 1
HandledOnce  == handled <= 1

Quiescent == /\ phase = "done"
             /\ \A d \in Dispatchers : dpc[d] = "idle"
             /\ \A s \in Servers : spc[s] = "idle"
             /\ http = {}
             /\ ~(UseCollector /\ srv.exists /\ ~srv.resp)

(* Nothing left stored once the exchange is over. *)
NothingLeftStored == Quiescent => ~srv.exists

(* The call completes: executed once, handled once, nothing left. *)
Completes == <>(Quiescent /\ executions = 1 /\ handled = 1)
=============================================================================
