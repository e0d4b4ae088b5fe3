---------------------------- MODULE ThirdPartyCall ----------------------------
(***************************************************************************)
(* Third-party calls out (DESIGN.md, "HTTP at the edges").  A handler does *)
(* not call the payment API itself: it records the call in its committed   *)
(* OutboxEntry, together with a deterministic idempotency key K (derived   *)
(* from the message id and the effect's index, stored in the entry, so     *)
(* every retry sends the same key).  Dispatchers (workers finishing the    *)
(* entry, the Sweeper) perform the call; they may crash or time out at any *)
(* point, leaving their request to arrive late.  The third party charges   *)
(* once per key and answers repeats with the stored answer -- but only for *)
(* a limited time.  The answer comes back to the entity as a message whose *)
(* id derives from K, handled once (by the protocol of ExactlyOnce.tla,    *)
(* abstracted here as dedup by message id).                                *)
(*                                                                         *)
(* Variants:                                                               *)
(*   "Good"         the key lives longer than any retry (the dispatcher    *)
(*                  stops retrying before the third party's key lifetime   *)
(*                  ends; later it must use the check-before-retry hook);  *)
(*   "KeyPerAttempt" (mutant) a fresh key per attempt, not stored in the   *)
(*                  entry: a retry after a lost answer charges again;      *)
(*   "ShortKeyLifetime" (mutant) the third party forgets K while a late    *)
(*                  retry is still possible: charged twice.                *)
(***************************************************************************)
EXTENDS Naturals, FiniteSets

CONSTANTS Dispatchers, MaxCrashes, Variant

ASSUME Variant \in {"Good", "KeyPerAttempt", "ShortKeyLifetime"}

Keys == {"K"} \cup Dispatchers \X {1, 2}     \* K, or per-attempt keys <<d, n>>

VARIABLES
    entry,     \* the OutboxEntry holding the call is still in the entity record
    pc, try,   \* dispatcher step; per-dispatcher attempt counter (KeyPerAttempt)
    key,       \* key[d]: the key d sends
    inflight,  \* requests on their way to the third party: [d, key]
    answer,    \* answer[d]: the key of the answer d received, or "none"
    remembered,\* keys the third party remembers (with their stored answer)
    charges,   \* (history) charges made by the third party for this logical call
    respQ,     \* ids of answer messages sent to the entity (the queue, as a set)
    handled,   \* ids of answer messages the entity handled (once each)
    crashes

vars == <<entry, pc, try, key, inflight, answer, remembered, charges, respQ,
          handled, crashes>>

Init ==
    /\ entry = TRUE
    /\ pc = [d \in Dispatchers |-> "idle"]
    /\ try = [d \in Dispatchers |-> 0]
    /\ key = [d \in Dispatchers |-> "none"]
    /\ inflight = {}
    /\ answer = [d \in Dispatchers |-> "none"]
    /\ remembered = {}
    /\ charges = 0
    /\ respQ = {}
    /\ handled = {}
    /\ crashes = 0

(* Read the entity record: an unfinished entry with a call -> perform it.     *)
(* The key comes from the entry (Good) or is made up now (KeyPerAttempt).     *)
Load(d) ==
    /\ pc[d] = "idle"
    /\ entry
    /\ try[d] < 2
    /\ try' = [try EXCEPT ![d] = @ + 1]
    /\ key' = [key EXCEPT ![d] = IF Variant = "KeyPerAttempt" THEN <<d, try[d] + 1>> ELSE "K"]
    /\ pc' = [pc EXCEPT ![d] = "call"]
    /\ UNCHANGED <<entry, inflight, answer, remembered, charges, respQ, handled, crashes>>

Call(d) ==
    /\ pc[d] = "call"
    /\ inflight' = inflight \cup {[d |-> d, key |-> key[d]]}
    /\ pc' = [pc EXCEPT ![d] = "wait"]
    /\ UNCHANGED <<entry, try, key, answer, remembered, charges, respQ, handled, crashes>>

(* The third party: charge once per remembered key, answer the stored answer  *)
(* for a repeat.  The answer reaches d only if d still waits for it.         *)
ThirdParty ==
    \E q \in inflight :
       /\ inflight' = inflight \ {q}
       /\ IF q.key \in remembered
          THEN UNCHANGED <<remembered, charges>>
          ELSE /\ remembered' = remembered \cup {q.key}
               /\ charges' = charges + 1
       /\ IF pc[q.d] = "wait" /\ key[q.d] = q.key
          THEN /\ answer' = [answer EXCEPT ![q.d] = q.key]
               /\ pc' = [pc EXCEPT ![q.d] = "send"]
          ELSE UNCHANGED <<answer, pc>>
       /\ UNCHANGED <<entry, try, key, respQ, handled, crashes>>

(* The answer goes back to the entity as a message with a stable id. *)
SendAnswer(d) ==
    /\ pc[d] = "send"
    /\ respQ' = respQ \cup {answer[d]}
    /\ pc' = [pc EXCEPT ![d] = "remove"]
    /\ UNCHANGED <<entry, try, key, inflight, answer, remembered, charges, handled, crashes>>

Remove(d) ==
    /\ pc[d] = "remove"
    /\ entry' = FALSE
    /\ pc' = [pc EXCEPT ![d] = "idle"]
    /\ key' = [key EXCEPT ![d] = "none"]
    /\ answer' = [answer EXCEPT ![d] = "none"]
    /\ UNCHANGED <<try, inflight, remembered, charges, respQ, handled, crashes>>

(* The entity handles an answer message once (protocol of ExactlyOnce.tla). *)
Handle ==
    \E r \in respQ \ handled :
       /\ handled' = handled \cup {r}
       /\ UNCHANGED <<entry, pc, try, key, inflight, answer, remembered, charges, respQ, crashes>>

(* A dispatcher crashes or gives up waiting: its request may still arrive. *)
Crash(d) ==
    /\ crashes < MaxCrashes
    /\ pc[d] # "idle"
    /\ crashes' = crashes + 1
    /\ pc' = [pc EXCEPT ![d] = "idle"]
    /\ key' = [key EXCEPT ![d] = "none"]
    /\ answer' = [answer EXCEPT ![d] = "none"]
    /\ UNCHANGED <<entry, try, inflight, remembered, charges, respQ, handled>>

(* The third party forgets a key.  Good: only once no retry can come any more *)
(* (the key lifetime outlasts the dispatcher's retry deadline).               *)
Forget ==
    /\ \E k \in remembered :
         /\ Variant = "ShortKeyLifetime"
            \/ (~entry /\ inflight = {} /\ \A d \in Dispatchers : pc[d] = "idle")
         /\ remembered' = remembered \ {k}
    /\ UNCHANGED <<entry, pc, try, key, inflight, answer, charges, respQ, handled, crashes>>

DStep(d) == Load(d) \/ Call(d) \/ SendAnswer(d) \/ Remove(d)

Next == \/ \E d \in Dispatchers : DStep(d) \/ Crash(d)
        \/ ThirdParty \/ Handle \/ Forget

Spec == Init /\ [][Next]_vars
             /\ \A d \in Dispatchers : WF_vars(DStep(d))
             /\ WF_vars(ThirdParty) /\ WF_vars(Handle)

-----------------------------------------------------------------------------
AtMostOneCharge == charges <= 1
AnswerHandledOnce == Cardinality(handled) <= 1

(* Eventually the call is made once and its answer handled by the entity. *)
EventuallyOneCharge == <>(charges = 1 /\ handled # {} /\ ~entry)
=============================================================================
