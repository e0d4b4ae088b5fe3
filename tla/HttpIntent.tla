----------------------------- MODULE HttpIntent -----------------------------
(***************************************************************************)
(* Intents in (DESIGN.md, "HTTP at the edges").  One HTTP client retries   *)
(* one request -- one Idempotency-Key K -- against front-end instances     *)
(* that may crash between any two steps, in particular between the commit  *)
(* and the send.  Each request is handled step by step:                    *)
(*                                                                         *)
(*   read     read the intent record of K (value + Version)                *)
(*            - exists: answer the stored answer (same body) or 422        *)
(*              (same key, different body);                                *)
(*   commit   absent: create the record -- body, answer (202 + status URL  *)
(*            naming this attempt) and an OutboxEntry holding the message  *)
(*            whose id derives from K -- with ONE conditional create       *)
(*            (If-None-Match: any).  Conflict -> read again (stored answer). *)
(*   answer   reply 202 to the client,                                     *)
(*   dispatch send the message,                                            *)
(*   remove   remove the OutboxEntry (the record and answer stay).         *)
(*                                                                         *)
(* A crash after the commit strands the entry: no retry revisits it (the   *)
(* client may have its answer, or be gone).  The Sweeper sends it.         *)
(*                                                                         *)
(* Variant "BlindCreate" (mutant): check-then-write with an unconditional  *)
(* put: two concurrent first requests both create, two messages go out.    *)
(***************************************************************************)
EXTENDS Naturals, FiniteSets

CONSTANTS FrontEnds, MaxAttempts, MaxCrashes, UseSweeper, Variant

ASSUME Variant \in {"Good", "BlindCreate"}

Bodies  == {"b1", "b2"}          \* b2: the same key reused with another body
Answers == {<<"202", a>> : a \in 1..MaxAttempts} \cup {<<"422", 0>>}
NoAns   == <<"none", 0>>
Procs   == FrontEnds \cup {"sw"}

VARIABLES
    rec,       \* the intent record of K: [ver, exists, body, answer, att, pending]
    inflight,  \* requests sent by the client, not yet picked up: [att, body]
    attempts,  \* requests the client sent so far
    pc, req, rver, ans, \* per front end: step, request, Version read, answer
    crashes,
    answers,   \* (history) every answer the client received: [att, body, ans]
    sent,      \* (history) every message sent: the attempt whose content it carries
    copies,    \* number of copies sent
    commits    \* (history) number of successful creates

vars == <<rec, inflight, attempts, pc, req, rver, ans, crashes, answers, sent,
          copies, commits>>

NoReq == [att |-> 0, body |-> "none"]

Init ==
    /\ rec = [ver |-> 0, exists |-> FALSE, body |-> "none", answer |-> NoAns,
              att |-> 0, pending |-> FALSE]
    /\ inflight = {}
    /\ attempts = 0
    /\ pc = [p \in Procs |-> "idle"]
    /\ req = [p \in Procs |-> NoReq]
    /\ rver = [p \in Procs |-> 0]
    /\ ans = [p \in Procs |-> NoAns]
    /\ crashes = 0
    /\ answers = {}
    /\ sent = {}
    /\ copies = 0
    /\ commits = 0

(* The client sends a request (first try or retry after a timeout / lost      *)
(* answer).  The first try carries b1; a retry may reuse the key with b2.     *)
ClientSend ==
    /\ attempts < MaxAttempts
    /\ \E b \in (IF attempts = 0 THEN {"b1"} ELSE Bodies) :
         inflight' = inflight \cup {[att |-> attempts + 1, body |-> b]}
    /\ attempts' = attempts + 1
    /\ UNCHANGED <<rec, pc, req, rver, ans, crashes, answers, sent, copies, commits>>

Receive(f) ==
    /\ pc[f] = "idle"
    /\ \E r \in inflight : /\ inflight' = inflight \ {r}
                           /\ req' = [req EXCEPT ![f] = r]
    /\ pc' = [pc EXCEPT ![f] = "read"]
    /\ UNCHANGED <<rec, attempts, rver, ans, crashes, answers, sent, copies, commits>>

Read(f) ==
    /\ pc[f] = "read"
    /\ IF rec.exists
       THEN /\ ans' = [ans EXCEPT ![f] = IF req[f].body = rec.body THEN rec.answer
                                         ELSE <<"422", 0>>]
            /\ pc' = [pc EXCEPT ![f] = "answer"]
            /\ UNCHANGED rver
       ELSE /\ rver' = [rver EXCEPT ![f] = rec.ver]
            /\ pc' = [pc EXCEPT ![f] = "commit"]
            /\ UNCHANGED ans
    /\ UNCHANGED <<rec, inflight, attempts, req, crashes, answers, sent, copies, commits>>

(* The conditional create: record, answer and OutboxEntry in one write. *)
Commit(f) ==
    /\ pc[f] = "commit"
    /\ IF rec.ver = rver[f] \/ Variant = "BlindCreate"
       THEN /\ rec' = [ver |-> rec.ver + 1, exists |-> TRUE, body |-> req[f].body,
                       answer |-> <<"202", req[f].att>>, att |-> req[f].att,
                       pending |-> TRUE]
            /\ ans' = [ans EXCEPT ![f] = <<"202", req[f].att>>]
            /\ commits' = commits + 1
            /\ pc' = [pc EXCEPT ![f] = "answer"]
       ELSE /\ pc' = [pc EXCEPT ![f] = "read"]       \* Conflict: read the stored answer
            /\ UNCHANGED <<rec, ans, commits>>
    /\ UNCHANGED <<inflight, attempts, req, rver, crashes, answers, sent, copies>>

Answer(f) ==
    /\ pc[f] = "answer"
    /\ answers' = answers \cup {[att |-> req[f].att, body |-> req[f].body, ans |-> ans[f]]}
    \* the instance that committed goes on to send; the others are done
    /\ pc' = [pc EXCEPT ![f] = IF ans[f] = <<"202", req[f].att>> /\ rec.att = req[f].att
                               THEN "dispatch" ELSE "idle"]
    /\ UNCHANGED <<rec, inflight, attempts, req, rver, ans, crashes, sent, copies, commits>>

(* Send the message; its id derives from K, its content from the committed   *)
(* attempt (the front end sends what it committed; the Sweeper what it read). *)
Dispatch(p) ==
    /\ pc[p] = "dispatch"
    /\ sent' = sent \cup {IF p = "sw" THEN rver[p] ELSE req[p].att}
    /\ copies' = copies + 1
    /\ pc' = [pc EXCEPT ![p] = "remove"]
    /\ UNCHANGED <<rec, inflight, attempts, req, rver, ans, crashes, answers, commits>>

Remove(p) ==
    /\ pc[p] = "remove"
    /\ rec' = IF rec.pending THEN [rec EXCEPT !.pending = FALSE, !.ver = @ + 1] ELSE rec
    /\ pc' = [pc EXCEPT ![p] = "idle"]
    /\ req' = [req EXCEPT ![p] = NoReq]
    /\ ans' = [ans EXCEPT ![p] = NoAns]
    /\ rver' = [rver EXCEPT ![p] = 0]
    /\ UNCHANGED <<inflight, attempts, crashes, answers, sent, copies, commits>>

(* The Sweeper finds the pending entry (reads which attempt it holds). *)
SweepLoad ==
    /\ UseSweeper
    /\ pc["sw"] = "idle"
    /\ rec.pending
    /\ rver' = [rver EXCEPT !["sw"] = rec.att]
    /\ pc' = [pc EXCEPT !["sw"] = "dispatch"]
    /\ UNCHANGED <<rec, inflight, attempts, req, ans, crashes, answers, sent, copies, commits>>

Crash(p) ==
    /\ crashes < MaxCrashes
    /\ pc[p] # "idle"
    /\ crashes' = crashes + 1
    /\ pc' = [pc EXCEPT ![p] = "idle"]
    /\ req' = [req EXCEPT ![p] = NoReq]
    /\ ans' = [ans EXCEPT ![p] = NoAns]
    /\ rver' = [rver EXCEPT ![p] = 0]
    /\ UNCHANGED <<rec, inflight, attempts, answers, sent, copies, commits>>

Step(p) == IF p = "sw" THEN SweepLoad \/ Dispatch(p) \/ Remove(p)
           ELSE Receive(p) \/ Read(p) \/ Commit(p) \/ Answer(p) \/ Dispatch(p) \/ Remove(p)

Next == ClientSend \/ \E p \in Procs : Step(p) \/ Crash(p)

Spec == Init /\ [][Next]_vars /\ \A p \in Procs : WF_vars(Step(p))

-----------------------------------------------------------------------------
TypeOK ==
    /\ rec.body \in Bodies \cup {"none"} /\ rec.answer \in Answers \cup {NoAns}
    /\ inflight \subseteq [att : 1..MaxAttempts, body : Bodies]
    /\ pc \in [Procs -> {"idle", "read", "commit", "answer", "dispatch", "remove"}]
    /\ sent \subseteq 1..MaxAttempts

(* Exactly one logical message per key: one create, and every copy sent       *)
(* carries the committed content.                                             *)
OneMessagePerKey == commits <= 1 /\ \A s \in sent : s = rec.att

(* A retry gets the first answer; the same key with another body gets 422.    *)
SameAnswer ==
    \A a \in answers : a.ans = IF a.body = rec.body THEN rec.answer ELSE <<"422", 0>>

(* At rest: no front end or Sweeper busy, no request waiting, and no pending  *)
(* entry for a running Sweeper to pick up.  (The client may still retry later: *)
(* its retries are the environment, not a process that must make progress.)    *)
Quiescent == /\ \A p \in Procs : pc[p] = "idle"
             /\ inflight = {}
             /\ ~(UseSweeper /\ rec.pending)

(* No intent stranded: once nothing moves, a committed intent was sent. *)
NoLostIntent == Quiescent => (rec.exists => sent # {} /\ ~rec.pending)

Termination == <>Quiescent
=============================================================================
