----------------------------- MODULE ClaimCheck -----------------------------
(***************************************************************************)
(* Blob side effects and claim-check bodies (DESIGN.md, "Large payloads   *)
(* and blob side effects").  Attempts of one message run concurrently and *)
(* produce different bytes, so each attempt writes its blob under its OWN *)
(* key (here: the attempt's name), and REGISTERS that key in the entity   *)
(* record (a conditional write) BEFORE writing the blob.  The attempt     *)
(* that commits (state + OutboxEntry referencing its blob, one            *)
(* conditional write) publishes its blob: the outgoing message carries    *)
(* the reference.  Cleanup (the finisher of the entry) deletes the blobs  *)
(* of the losing attempts and unregisters them.  A stale loser may still  *)
(* write its blob AFTER cleanup ran: the collector deletes, after a grace *)
(* period, every blob that no committed state, registration or in-flight  *)
(* message references.                                                    *)
(*                                                                         *)
(* Variants (mutants): "NoRefCheck" -- the collector deletes blobs without *)
(* checking references; "WriteBeforeRegister" -- an attempt writes its    *)
(* blob before registering it, so the collector may delete it in between; *)
(* "NoCollector" -- cleanup alone: a stale loser's late blob stays forever.*)
(***************************************************************************)
EXTENDS Naturals, FiniteSets

CONSTANTS Attempts, MaxCrashes, Variant

ASSUME Variant \in {"Good", "NoRefCheck", "WriteBeforeRegister", "NoCollector"}

None == "none"

VARIABLES
    rec,      \* entity record: [ver, regs (registered blob keys), ref (committed blob), pending]
    store,    \* blob keys present in the blob store
    apc, aver,\* attempts: step, Version read
    fpc, fdel,\* finisher (cleanup of the committed entry): step, blob being deleted
    cpc, cb,  \* collector: step, candidate blob
    inflight, \* blob references carried by messages not yet consumed
    sent,     \* (history) blob references ever published in a message
    crashes

vars == <<rec, store, apc, aver, fpc, fdel, cpc, cb, inflight, sent, crashes>>

Init ==
    /\ rec = [ver |-> 0, regs |-> {}, ref |-> None, pending |-> FALSE]
    /\ store = {}
    /\ apc = [a \in Attempts |-> "load"]
    /\ aver = [a \in Attempts |-> 0]
    /\ fpc = "idle" /\ fdel = None
    /\ cpc = "idle" /\ cb = None
    /\ inflight = {} /\ sent = {}
    /\ crashes = 0

Referenced == rec.regs \cup (IF rec.ref = None THEN {} ELSE {rec.ref}) \cup inflight

-----------------------------------------------------------------------------
(* An attempt: load, register its key, write its blob, commit. *)
ALoad(a) ==
    /\ apc[a] = "load"
    /\ aver' = [aver EXCEPT ![a] = rec.ver]
    /\ apc' = [apc EXCEPT ![a] =
              CASE rec.ref # None -> "done"                 \* m already committed
                [] a \in rec.regs  -> IF a \in store THEN "commit" ELSE "write"
                [] Variant = "WriteBeforeRegister" /\ a \notin store -> "write"
                [] OTHER           -> "register"]
    /\ UNCHANGED <<rec, store, fpc, fdel, cpc, cb, inflight, sent, crashes>>

ARegister(a) ==
    /\ apc[a] = "register"
    /\ IF rec.ver = aver[a]
       THEN /\ rec' = [rec EXCEPT !.regs = @ \cup {a}, !.ver = @ + 1]
            /\ aver' = [aver EXCEPT ![a] = rec.ver + 1]
            /\ apc' = [apc EXCEPT ![a] = IF a \in store THEN "commit" ELSE "write"]
       ELSE /\ apc' = [apc EXCEPT ![a] = "load"]               \* Conflict
            /\ UNCHANGED <<rec, aver>>
    /\ UNCHANGED <<store, fpc, fdel, cpc, cb, inflight, sent, crashes>>

AWrite(a) ==
    /\ apc[a] = "write"
    /\ store' = store \cup {a}
    /\ apc' = [apc EXCEPT ![a] = IF Variant = "WriteBeforeRegister" /\ a \notin rec.regs
                                 THEN "load" ELSE "commit"]
    /\ UNCHANGED <<rec, aver, fpc, fdel, cpc, cb, inflight, sent, crashes>>

ACommit(a) ==
    /\ apc[a] = "commit"
    /\ IF rec.ver = aver[a] /\ rec.ref = None
       THEN /\ rec' = [rec EXCEPT !.ref = a, !.pending = TRUE, !.ver = @ + 1]
            /\ apc' = [apc EXCEPT ![a] = "done"]
            /\ fpc' = "publish"                     \* the winner finishes its entry
       ELSE /\ apc' = [apc EXCEPT ![a] = "load"]     \* Conflict: retry from the load
            /\ UNCHANGED <<rec, fpc>>
    /\ UNCHANGED <<store, aver, fdel, cpc, cb, inflight, sent, crashes>>

(* An attempt crashes before committing (at most MaxCrashes, so one survives); *)
(* its registration stays until cleanup.                                       *)
ACrash(a) ==
    /\ crashes < MaxCrashes
    /\ apc[a] \in {"register", "write", "commit"}
    /\ crashes' = crashes + 1
    /\ apc' = [apc EXCEPT ![a] = "done"]
    /\ UNCHANGED <<rec, store, aver, fpc, fdel, cpc, cb, inflight, sent>>

-----------------------------------------------------------------------------
(* The finisher: publish (dispatch the message carrying the reference), then  *)
(* clean up the losers' blobs: delete each, then unregister it.               *)
FPublish ==
    /\ fpc = "publish"
    /\ inflight' = inflight \cup {rec.ref}
    /\ sent' = sent \cup {rec.ref}
    /\ fpc' = "cleanup"
    /\ UNCHANGED <<rec, store, apc, aver, fdel, cpc, cb, crashes>>

FCleanup ==
    /\ fpc = "cleanup"
    /\ IF \E b \in rec.regs : b # rec.ref
       THEN \E b \in rec.regs : /\ b # rec.ref
                                /\ store' = store \ {b}        \* delete (no-op if absent)
                                /\ fdel' = b
                                /\ fpc' = "unregister"
                                /\ UNCHANGED rec
       ELSE /\ rec' = [rec EXCEPT !.regs = @ \ {rec.ref}, !.pending = FALSE, !.ver = @ + 1]
            /\ fpc' = "done"
            /\ UNCHANGED <<store, fdel>>
    /\ UNCHANGED <<apc, aver, cpc, cb, inflight, sent, crashes>>

(* Read-modify-write with retry on Conflict: equivalent to one atomic step. *)
FUnregister ==
    /\ fpc = "unregister"
    /\ rec' = [rec EXCEPT !.regs = @ \ {fdel}, !.ver = @ + 1]
    /\ fpc' = "cleanup"
    /\ fdel' = None
    /\ UNCHANGED <<store, apc, aver, cpc, cb, inflight, sent, crashes>>

(* The receiver consumes the message (it has streamed the body). *)
Consume ==
    /\ inflight # {}
    /\ inflight' = {}
    /\ UNCHANGED <<rec, store, apc, aver, fpc, fdel, cpc, cb, sent, crashes>>

-----------------------------------------------------------------------------
(* The collector: list a blob, read the record, delete if unreferenced. *)
CScan ==
    /\ Variant # "NoCollector"
    /\ cpc = "idle"
    /\ \E b \in store :
         /\ Variant = "NoRefCheck" \/ b \notin Referenced
         /\ cb' = b
         /\ cpc' = "delete"
    /\ UNCHANGED <<rec, store, apc, aver, fpc, fdel, inflight, sent, crashes>>

CDelete ==
    /\ cpc = "delete"
    /\ store' = store \ {cb}
    /\ cpc' = "idle"
    /\ cb' = None
    /\ UNCHANGED <<rec, apc, aver, fpc, fdel, inflight, sent, crashes>>

AStep(a) == ALoad(a) \/ ARegister(a) \/ AWrite(a) \/ ACommit(a)
FStep == FPublish \/ FCleanup \/ FUnregister
CStep == CScan \/ CDelete

Next == \/ \E a \in Attempts : AStep(a) \/ ACrash(a)
        \/ FStep \/ Consume \/ CStep

Spec == Init /\ [][Next]_vars
             /\ \A a \in Attempts : WF_vars(AStep(a))
             /\ WF_vars(FStep) /\ WF_vars(Consume) /\ WF_vars(CStep)

-----------------------------------------------------------------------------
(* No referenced blob is ever missing: the committed state's blob and every   *)
(* in-flight message's blob exist.                                            *)
NoDanglingReference ==
    /\ rec.ref # None => rec.ref \in store
    /\ inflight \subseteq store

(* Only the committed attempt's blob is ever published. *)
PublishedFromCommittedAttempt == \A b \in sent : b = rec.ref

(* Garbage is eventually collected: in the end only the committed blob is left. *)
OrphansEventuallyCollected == <>[](store \subseteq {rec.ref})
=============================================================================
