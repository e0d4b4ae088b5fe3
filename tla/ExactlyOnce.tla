----------------------------- MODULE ExactlyOnce -----------------------------
(***************************************************************************)
(* The exactly-once protocol of `exactly` (DESIGN.md, "The protocol"),     *)
(* modelled step by step on a hostile substrate:                           *)
(*                                                                         *)
(*  - Store: one record per key, single-key reads returning (value,        *)
(*    Version) and conditional writes that fail with Precondition/Conflict *)
(*    if the Version changed.  Nothing else is atomic.                     *)
(*  - Transport: at least once.  A copy stays in the queue until acked;    *)
(*    copies are duplicated, delivered in any order, redelivered when a    *)
(*    worker crashes, and redelivered while the first worker still runs    *)
(*    (lease / visibility timeout expired: a "stale worker").              *)
(*  - Processes crash between any two steps (bounded number of crashes)    *)
(*    and may pause for any time between steps (stale reads).             *)
(*                                                                         *)
(* Topology (a chain, so both roles are exercised):                        *)
(*    client record "C" --m1--> entity "A" --m2--> entity "B"              *)
(* The client (an HTTP intent) commits an OutboxEntry holding m1 and m1's  *)
(* DedupToken into its own record, then dispatches it (it may crash in     *)
(* between and never come back: the Sweeper finishes it).  A's handler on  *)
(* m1 emits m2; B's handler emits nothing.  With SameEntity, A sends m2 to  *)
(* itself instead: a second message to one entity, whose load finds m1's    *)
(* entry (pending, or left done) and whose commit may drop it.              *)
(*                                                                         *)
(* Each entity record holds:                                               *)
(*   ver    - the Version, bumped by every successful write,               *)
(*   outbox - the OutboxEntries (incoming message id -> outgoing messages  *)
(*            with ids fixed by the handler),                              *)
(*   tokens - the DedupTokens of the messages this record sent that were   *)
(*            not consumed yet (the receiver consumes them here),          *)
(*   inbox  - processed message ids (only the identity-inbox fallback).   *)
(*                                                                         *)
(* CONSTANT Variant selects the design: "Good" is the protocol; "OneWrite" *)
(* is the protocol on a store that writes two keys atomically (put_all):   *)
(* the commit also consumes the incoming token, and leaves no OutboxEntry  *)
(* when there is nothing to send.  The others are the broken designs TLC   *)
(* must reject (docs/verification.md).                                     *)
(***************************************************************************)
EXTENDS Naturals, FiniteSets, Bags, TLC

CONSTANTS
    Workers,        \* worker processes handling deliveries
    MaxCrashes,     \* bound on crashes (workers, Sweeper, client)
    MaxDups,        \* bound on extra copies (transport duplicates + lease expiries)
    UseSweeper,     \* is the recovery Sweeper running?
    ClientMayCrash, \* may the intent client crash after its commit?
    SameEntity,     \* is m2 addressed to A, the entity that sent it?
    Variant

Variants == {"Good",
             "CheckBeforeLoad",     \* (a) dedup check before the load
             "PutIfAbsentAtDispatch",\* (b) tokens created put-if-absent at dispatch
             "MintAfterCommit",     \* (c) fresh token ids minted after the commit
             "NoReread",            \* (d) token gone -> drop without re-reading k
             "RemoveBeforeConsume", \* (e) remove the OutboxEntry, then consume
             "SendBeforeCommit",    \* (f) send outgoing messages before commit
             "OneWrite",            \* commit + consume in one atomic write of two keys
             "OneWriteNoEntry",     \* (g) as OneWrite, but never an OutboxEntry: send after it
             "ForgetWholeEntry",    \* (h) a consume drops every entry listing its message
             "LeaveUnsent",         \* (i) as OneWrite, but an unsent entry may count as remembered
             "LeaveUnconsumed",     \* (j) as Good, but an unconsumed entry may count as remembered
             "Inbox"}               \* identity-inbox fallback with a retention window

ASSUME Variant \in Variants
ASSUME UseSweeper \in BOOLEAN /\ ClientMayCrash \in BOOLEAN /\ SameEntity \in BOOLEAN
ASSUME MaxCrashes \in Nat /\ MaxDups \in Nat

-----------------------------------------------------------------------------
(* Topology *)
MsgIds   == {"m1", "m2"}
Keys     == {"C", "A", "B"}
Target(m)   == IF m = "m1" \/ SameEntity THEN "A" ELSE "B"  \* entity it is addressed to
Producer(m) == IF m = "m1" THEN "C" ELSE "A"     \* record that holds m's DedupToken
Emits(m)    == IF m = "m1" THEN {"m2"} ELSE {}   \* what the handler of m sends

Sweeper == "sw"
Client  == "cl"
Procs   == Workers \cup {Sweeper, Client}

(* A DedupToken id.  In the good design the token of message o is <<o,"c">>:  *)
(* created once, by the commit that fixed o.  Variant (c) mints <<o, p>> ids   *)
(* by process p after the commit.                                              *)
Minters == {"c"} \cup Procs
Tok     == MsgIds \X Minters
NoTok   == <<"none", "none">>

(* Payload of an outgoing message: which attempt (process) produced it.  Two   *)
(* attempts of one message may produce different bytes; ConsistentOutput asks  *)
(* that every copy carries the committed attempt's bytes.                      *)
Pays   == {"seed"} \cup Workers
Msg    == [id : MsgIds, pay : Pays, tok : Tok \cup {NoTok}]
NoMsg  == [id |-> "none", pay |-> "none", tok |-> NoTok]
InIds  == MsgIds \cup {"intent"}
Entry  == [in : InIds, intok : Tok \cup {NoTok}, out : SUBSET Msg]
NoFin  == [in |-> "none", intok |-> NoTok, out |-> {}]

(* Where tokens live: inside the sender's record (good design), in a separate  *)
(* token table of single keys (broken variants b and c), or nowhere (inbox).   *)
TokTableVariants == {"PutIfAbsentAtDispatch", "MintAfterCommit"}
InRecord == Variant \notin TokTableVariants \cup {"Inbox"}

(* Does the commit consume the incoming token (Store::put_all)? *)
OneWrite == Variant \in {"OneWrite", "OneWriteNoEntry", "LeaveUnsent"}

(* With tokens in records, the intent client leaves its dispatched entry for   *)
(* the receiver's consume to drop (it remembers what it sent, pc "sent").      *)
ClientLeavesEntry == InRecord

(* A worker leaves the entry it committed, once it is done (its messages     *)
(* sent, its incoming token consumed: by the commit itself with OneWrite, by  *)
(* the worker's consume otherwise), instead of removing it with a write of    *)
(* its own, and remembers it (the endpoint's memory, shared by its workers   *)
(* and its sweeper): a later load of the record skips it, a redelivery of its *)
(* message is done, the next commit to the record may drop it, and the       *)
(* sweeper may remove it without sending again.  The receivers' consumes      *)
(* drop it once nothing is left in it.  Memory implies done, so the model     *)
(* lets any process treat an entry as remembered once it is done; each may    *)
(* also not know it, and finish the entry as before.                          *)
WorkerLeavesEntry == OneWrite \/ Variant \in {"Good", "LeaveUnconsumed"}


-----------------------------------------------------------------------------
VARIABLES
    rec,       \* rec[k]: the stored record of key k
    tokTable,  \* separate token keys (variants b, c only)
    net,       \* bag of message copies visible in the queue
    pc,        \* pc[p]: next step of process p
    msg,       \* msg[w]: the copy worker w holds
    leased,    \* leased[w]: w's lease is still valid (crash => redelivery)
    key,       \* key[p]: the record p works on
    ver,       \* ver[p]: the Version p last read (or wrote) of key[p]
    fin,       \* fin[p]: the OutboxEntry p is finishing
    crashes, dups,
    \* history (ghost) variables, used only by the properties:
    commits,   \* commits[m]: number of successful state changes for m
    cpay,      \* cpay[o]: payload of the committed attempt that fixed o
    sent,      \* every message copy ever sent
    consumed   \* every token ever consumed

vars == <<rec, tokTable, net, pc, msg, leased, key, ver, fin, crashes, dups,
          commits, cpay, sent, consumed>>

EmptyRec == [ver |-> 0, outbox |-> {}, tokens |-> {}, inbox |-> {}]

Init ==
    /\ rec = [k \in Keys |-> EmptyRec]
    /\ tokTable = {}
    /\ net = EmptyBag
    /\ pc = [p \in Procs |-> IF p = Client THEN "intent" ELSE "idle"]
    /\ msg = [w \in Workers |-> NoMsg]
    /\ leased = [w \in Workers |-> FALSE]
    /\ key = [p \in Procs |-> IF p = Client THEN "C" ELSE "none"]
    /\ ver = [p \in Procs |-> 0]
    /\ fin = [p \in Procs |-> NoFin]
    /\ crashes = 0
    /\ dups = 0
    /\ commits = [m \in MsgIds |-> 0]
    /\ cpay = [m \in MsgIds |-> "none"]
    /\ sent = {}
    /\ consumed = {}

-----------------------------------------------------------------------------
(* Where a worker starts (and restarts after a Conflict): the load of its      *)
(* entity -- except in mutant (a), which checks the token first.               *)
StartPc == IF Variant = "CheckBeforeLoad" THEN "check" ELSE "load"

(* First step of finishing an OutboxEntry (steps 4-5).  Mutant (b) creates the *)
(* outgoing tokens (put-if-absent) before sending.                             *)
FinishStart == IF Variant = "PutIfAbsentAtDispatch" THEN "mktok" ELSE "dispatch"

(* What a process does once an entry is finished. *)
AfterFinish(p) ==
    CASE p = Sweeper          -> "idle"
      [] p = Client           -> "done"
      [] fin[p].in = msg[p].id -> "ack"      \* it was m's own entry: ack m
      [] OTHER                -> StartPc     \* an earlier message's: now handle m

(* After dispatch: consume the incoming token, then remove the entry.  The     *)
(* client's intent entry has no incoming token.  Mutant (e) swaps the order.   *)
AfterDispatchOf(e) ==
    IF e.intok = NoTok THEN "remove"
    ELSE IF Variant = "RemoveBeforeConsume" THEN "remove" ELSE "consume"
AfterDispatch(p) ==
    IF p = Client /\ ClientLeavesEntry THEN "sent" ELSE AfterDispatchOf(fin[p])

(* Consuming token t means its message is processed: every entry of the       *)
(* holder forgets that message, and an entry left with nothing to do (nothing  *)
(* to send, no token to consume) goes in the same write                        *)
(* (EntityRecord::consume_token).  Mutant (h) drops every entry that lists the *)
(* message, whatever else it still has to do.                                  *)
Forgotten(outbox, t) ==
    IF Variant = "ForgetWholeEntry"
    THEN {e \in outbox : \A o \in e.out : o.tok # t}
    ELSE {e \in {[f EXCEPT !.out = {o \in f.out : o.tok # t}] : f \in outbox} :
            e.out # {} \/ e.intok # NoTok}

(* An entry with nothing left to do: its messages sent, its token consumed. *)
Done(e) == /\ e.out \subseteq sent
           /\ e.intok \in {NoTok} \cup consumed

(* An entry a process may treat as remembered (see WorkerLeavesEntry).       *)
(* Mutant (i) forgets that the memory is only ever of entries already sent,   *)
(* mutant (j) that it is only of entries whose token was consumed.            *)
Left(e) == /\ WorkerLeavesEntry
           /\ e.out # {} \/ e.intok # NoTok
           /\ e.out \subseteq sent \/ Variant = "LeaveUnsent"
           /\ e.intok \in {NoTok} \cup consumed \/ Variant = "LeaveUnconsumed"

ConflictPc(p) == CASE p \in Workers -> StartPc
                   [] p = Sweeper   -> "idle"
                   [] p = Client    -> "done"

TokenPresent(t, k) == IF InRecord THEN t \in rec[k].tokens ELSE t \in tokTable

SetPc(p, s) == pc' = [pc EXCEPT ![p] = s]

(* Only variant (c) needs a finisher to remember the Version it read: keep the *)
(* remembered Version at 0 otherwise, so that TLC does not tell apart states   *)
(* that differ only in a number nobody will look at.                           *)
FinVer(v) == IF Variant = "MintAfterCommit" THEN v ELSE 0

(* A process going back to rest forgets everything it read. *)
Rest == {"idle", "done"}
GotoAndForget(p, s) ==
    /\ SetPc(p, s)
    /\ fin' = IF s \in Rest THEN [fin EXCEPT ![p] = NoFin] ELSE fin
    /\ ver' = IF s \in Rest THEN [ver EXCEPT ![p] = 0] ELSE ver
    /\ key' = IF s \in Rest /\ p = Sweeper THEN [key EXCEPT ![p] = "none"] ELSE key

-----------------------------------------------------------------------------
(* The transport *)

(* A worker receives a copy; the copy stays owed until acked (lease). *)
Take(w) ==
    /\ pc[w] = "idle"
    /\ \E m \in BagToSet(net) :
         /\ net' = net (-) SetToBag({m})
         /\ msg' = [msg EXCEPT ![w] = m]
         /\ leased' = [leased EXCEPT ![w] = TRUE]
         /\ key' = [key EXCEPT ![w] = Target(m.id)]
         /\ SetPc(w, StartPc)
    /\ UNCHANGED <<rec, tokTable, ver, fin, crashes, dups, commits, cpay, sent, consumed>>

(* The transport duplicates a queued copy. *)
Duplicate ==
    /\ dups < MaxDups
    /\ \E m \in BagToSet(net) : net' = net (+) SetToBag({m})
    /\ dups' = dups + 1
    /\ UNCHANGED <<rec, tokTable, pc, msg, leased, key, ver, fin, crashes,
                   commits, cpay, sent, consumed>>

(* w's lease expires while w still works: the copy is redelivered and w goes   *)
(* on as a stale worker.  Its later crash redelivers nothing more.             *)
LeaseExpires(w) ==
    /\ leased[w]
    /\ dups < MaxDups
    /\ net' = net (+) SetToBag({msg[w]})
    /\ leased' = [leased EXCEPT ![w] = FALSE]
    /\ dups' = dups + 1
    /\ UNCHANGED <<rec, tokTable, pc, msg, key, ver, fin, crashes,
                   commits, cpay, sent, consumed>>

-----------------------------------------------------------------------------
(* The worker: handle_delivery, steps 1-6 *)

(* Step 1, load_entity: read k with its Version.  An unfinished OutboxEntry    *)
(* (of m or of an earlier message) is finished first.                          *)
Load(w) ==
    /\ pc[w] = "load"
    /\ LET r == rec[key[w]]
           own == {e \in r.outbox : e.in = msg[w].id}
       IN \/ \E e \in r.outbox : /\ fin' = [fin EXCEPT ![w] = e]
                                   /\ ver' = [ver EXCEPT ![w] = FinVer(r.ver)]
                                   /\ SetPc(w, FinishStart)
          \/ /\ \A e \in r.outbox : Left(e)      \* all remembered: skipped
             /\ own # {}                          \* m's own: m is done
             /\ SetPc(w, "ack")
             /\ UNCHANGED <<fin, ver>>
          \/ /\ \A e \in r.outbox : Left(e)      \* nothing pending (or all skipped)
             /\ own = {}
             /\ fin' = [fin EXCEPT ![w] = NoFin]
             /\ ver' = [ver EXCEPT ![w] = r.ver]
             /\ SetPc(w,
                  CASE Variant = "CheckBeforeLoad" -> "commit" \* checked already
                    [] Variant = "Inbox" ->                     \* own record
                         IF msg[w].id \in r.inbox THEN "ack" ELSE "commit"
                    [] OTHER -> "check")
    /\ UNCHANGED <<rec, tokTable, net, msg, leased, key, crashes, dups,
                   commits, cpay, sent, consumed>>

(* Step 2, check_token: read the sender's record; is m's DedupToken there?     *)
(* It is read AFTER the load: any worker that finished m since then changed    *)
(* k's Version, so our commit (conditioned on the load) fails and the retry    *)
(* sees the token gone.  Token gone -> re-read k before dropping.              *)
CheckToken(w) ==
    /\ pc[w] = "check"
    /\ IF TokenPresent(msg[w].tok, Producer(msg[w].id))
       THEN SetPc(w, CASE Variant = "CheckBeforeLoad"  -> "load"
                       [] Variant = "SendBeforeCommit" -> "handle"
                       [] OTHER                        -> "commit")
       ELSE SetPc(w, IF Variant = "NoReread" THEN "ack" ELSE "reread")
    /\ UNCHANGED <<rec, tokTable, net, msg, leased, key, ver, fin, crashes, dups,
                   commits, cpay, sent, consumed>>

(* Step 2', reread_entity: the token is gone.  If k holds an OutboxEntry for m, *)
(* another attempt committed m and died before cleaning up: finish it, then    *)
(* ack.  Only if there is none, drop m (ack).                                  *)
Reread(w) ==
    /\ pc[w] = "reread"
    /\ LET r == rec[key[w]] IN
       /\ ver' = [ver EXCEPT ![w] = FinVer(r.ver)]
       /\ IF \E e \in r.outbox : e.in = msg[w].id
          THEN \E e \in r.outbox : /\ e.in = msg[w].id
                                   /\ \/ /\ fin' = [fin EXCEPT ![w] = e]
                                         /\ SetPc(w, FinishStart)
                                      \/ /\ Left(e)     \* remembered: m is done
                                         /\ SetPc(w, "ack")
                                         /\ UNCHANGED fin
          ELSE /\ SetPc(w, "ack")
               /\ UNCHANGED fin
    /\ UNCHANGED <<rec, tokTable, net, msg, leased, key, crashes, dups,
                   commits, cpay, sent, consumed>>

(* The messages attempt w fixes for incoming m: stable ids, payload = attempt. *)
Outs(w, m) ==
    {[id |-> o, pay |-> w,
      tok |-> IF Variant = "MintAfterCommit" \/ Variant = "Inbox" THEN NoTok
              ELSE <<o, "c">>] : o \in Emits(m.id)}

(* Mutant (f) only: the handler's messages go out before the commit. *)
HandleSendEarly(w) ==
    /\ pc[w] = "handle"
    /\ net' = net (+) SetToBag(Outs(w, msg[w]))
    /\ sent' = sent \cup Outs(w, msg[w])
    /\ SetPc(w, "commit")
    /\ UNCHANGED <<rec, tokTable, msg, leased, key, ver, fin, crashes, dups,
                   commits, cpay, consumed>>

(* Step 3, commit_attempt (Handle + Commit): run the handler and write the new *)
(* state, the OutboxEntry for m and the DedupTokens of the new messages in ONE *)
(* conditional write of k, conditioned on the Version read at step 1.          *)
(* Conflict -> start again from step 1.                                        *)
(*                                                                             *)
(* OneWrite: the same write also removes m's token from the sender's record s *)
(* (put_all of k and s, all or nothing).  The code conditions s on the Version *)
(* read at step 2 and, when only s changed, reads s again and retries while   *)
(* the token is there; since that write to s only removes the token, the loop *)
(* is this one step: it succeeds iff k is unchanged and the token is still in *)
(* s.  The entry then has no token left to consume, and is not written at all *)
(* when it has nothing to send either.  Mutant (g) never writes it: it sends  *)
(* straight after the commit.  The write may drop entries the worker          *)
(* remembers as done (WorkerLeavesEntry): their removal rides on the commit.  *)
Commit(w) ==
    /\ pc[w] = "commit"
    /\ \E dropped \in SUBSET {x \in rec[key[w]].outbox : Left(x)} :
       LET k == key[w]
           r == rec[k]
           m == msg[w]
           s == Producer(m.id)
           outs == Outs(w, m)
           e == [in |-> m.id, intok |-> IF OneWrite THEN NoTok ELSE m.tok, out |-> outs]
           keep == ~OneWrite \/ (outs # {} /\ Variant # "OneWriteNoEntry")
           new == [ver    |-> r.ver + 1,
                   outbox |-> IF keep THEN (r.outbox \ dropped) \cup {e}
                              ELSE r.outbox \ dropped,
                   tokens |-> IF InRecord THEN r.tokens \cup {o.tok : o \in outs}
                              ELSE r.tokens,
                   inbox  |-> IF Variant = "Inbox" THEN r.inbox \cup {m.id}
                              ELSE r.inbox]
       IN IF r.ver = ver[w] /\ (OneWrite => m.tok \in rec[s].tokens)
          THEN /\ rec' = IF OneWrite
                         THEN [rec EXCEPT ![k] = new,
                                          ![s].tokens = @ \ {m.tok},
                                          ![s].outbox = Forgotten(@, m.tok),
                                          ![s].ver = @ + 1]
                         ELSE [rec EXCEPT ![k] = new]
               /\ consumed' = IF OneWrite THEN consumed \cup {m.tok} ELSE consumed
               /\ commits' = [commits EXCEPT ![m.id] = @ + 1]
               /\ cpay' = [o \in MsgIds |-> IF o \in Emits(m.id) THEN w ELSE cpay[o]]
               /\ ver' = [ver EXCEPT ![w] = FinVer(r.ver + 1)]
               /\ fin' = [fin EXCEPT ![w] = IF outs = {} /\ ~keep THEN NoFin ELSE e]
               /\ SetPc(w, CASE outs # {}  -> FinishStart
                              [] keep       -> AfterDispatchOf(e)
                              [] OTHER      -> "ack")
          ELSE /\ SetPc(w, ConflictPc(w))        \* Precondition/Conflict
               /\ UNCHANGED <<rec, commits, cpay, ver, fin, consumed>>
    /\ UNCHANGED <<tokTable, net, msg, leased, key, crashes, dups, sent>>

(* Step 6: ack m.  The copy is gone for good. *)
Ack(w) ==
    /\ pc[w] = "ack"
    /\ SetPc(w, "idle")
    /\ msg' = [msg EXCEPT ![w] = NoMsg]
    /\ leased' = [leased EXCEPT ![w] = FALSE]
    /\ fin' = [fin EXCEPT ![w] = NoFin]
    /\ key' = [key EXCEPT ![w] = "none"]
    /\ ver' = [ver EXCEPT ![w] = 0]
    /\ UNCHANGED <<rec, tokTable, net, crashes, dups, commits, cpay, sent, consumed>>

-----------------------------------------------------------------------------
(* Finishing an OutboxEntry (steps 4-5), shared by workers, Sweeper, client.  *)

(* Step 4, dispatch: send the entry's messages with their stable ids and       *)
(* tokens.  Finishers only send: the tokens were created by the commit.        *)
Dispatch(p) ==
    /\ pc[p] = "dispatch"
    /\ \A o \in fin[p].out : Variant = "Inbox" \/ o.tok # NoTok
    /\ net' = net (+) SetToBag(fin[p].out)
    /\ sent' = sent \cup fin[p].out
    /\ \/ SetPc(p, AfterDispatch(p))
       \/ /\ p \in Workers /\ WorkerLeavesEntry /\ fin[p].in = msg[p].id
          /\ fin[p].intok = NoTok
          /\ SetPc(p, AfterFinish(p))                \* its own entry, done: left
    /\ UNCHANGED <<rec, tokTable, msg, leased, key, ver, fin, crashes, dups,
                   commits, cpay, consumed>>

(* Mutant (b): token id = message id, created put-if-absent before sending.    *)
(* "Absent" cannot tell "not created yet" from "already consumed".            *)
MakeTokens(p) ==
    /\ pc[p] = "mktok"
    /\ tokTable' = tokTable \cup {o.tok : o \in fin[p].out}
    /\ SetPc(p, "dispatch")
    /\ UNCHANGED <<rec, net, msg, leased, key, ver, fin, crashes, dups,
                   commits, cpay, sent, consumed>>

(* Mutant (c): mint a fresh token id after the commit (a new key: always       *)
(* succeeds), then record it in the entry with a conditional write.            *)
Mint(p) ==
    /\ pc[p] = "dispatch"
    /\ Variant = "MintAfterCommit"
    /\ \E o \in fin[p].out :
         /\ o.tok = NoTok
         /\ tokTable' = tokTable \cup {<<o.id, p>>}
    /\ SetPc(p, "record")
    /\ UNCHANGED <<rec, net, msg, leased, key, ver, fin, crashes, dups,
                   commits, cpay, sent, consumed>>

RecordToken(p) ==
    /\ pc[p] = "record"
    /\ LET k == key[p]
           r == rec[k]
           e2 == [fin[p] EXCEPT !.out = {IF o.tok = NoTok THEN [o EXCEPT !.tok = <<o.id, p>>]
                                         ELSE o : o \in fin[p].out}]
       IN IF r.ver = ver[p] /\ \E e \in r.outbox : e.in = fin[p].in
          THEN /\ rec' = [rec EXCEPT ![k].ver = r.ver + 1,
                                     ![k].outbox = {IF e.in = fin[p].in THEN e2 ELSE e
                                                    : e \in r.outbox}]
               /\ ver' = [ver EXCEPT ![p] = r.ver + 1]
               /\ fin' = [fin EXCEPT ![p] = e2]
               /\ SetPc(p, "dispatch")
               /\ UNCHANGED key
          ELSE /\ GotoAndForget(p, ConflictPc(p))  \* the minted token is garbage now
               /\ UNCHANGED rec
    /\ UNCHANGED <<tokTable, net, msg, leased, crashes, dups,
                   commits, cpay, sent, consumed>>

(* Step 5a, consume_token: remove the incoming message's token from the        *)
(* sender's record.  The real code reads the record and writes it back         *)
(* conditionally, retrying on Conflict, and does nothing if the token is gone; *)
(* since the write only removes, that loop is equivalent to this single atomic *)
(* step (a failed try has no effect).                                          *)
ConsumeToken(p) ==
    /\ pc[p] = "consume"
    /\ LET t == fin[p].intok
           s == Producer(fin[p].in)
       IN /\ IF InRecord
             THEN rec' = IF t \in rec[s].tokens
                         THEN [rec EXCEPT ![s].tokens = @ \ {t},
                                          ![s].outbox = Forgotten(@, t),
                                          ![s].ver = @ + 1]
                         ELSE rec
             ELSE rec' = rec
          /\ tokTable' = tokTable \ {t}
          /\ consumed' = consumed \cup {t}
    /\ \/ GotoAndForget(p, IF Variant = "RemoveBeforeConsume" THEN AfterFinish(p) ELSE "remove")
       \/ /\ p \in Workers /\ WorkerLeavesEntry /\ fin[p].in = msg[p].id
          /\ GotoAndForget(p, AfterFinish(p))         \* its own entry, done: left
    /\ UNCHANGED <<net, msg, leased, crashes, dups, commits, cpay, sent>>

(* Step 5b, remove_entry: remove the OutboxEntry from k -- AFTER the token is  *)
(* consumed: while the entry exists, any redelivery finishes it instead of     *)
(* running the handler again; once it is gone, only the missing token stops a  *)
(* redelivery.  (Same read/conditional-write/retry loop as above.)             *)
RemoveEntry(p) ==
    /\ pc[p] = "remove"
    /\ LET k == key[p]
           r == rec[k]
       IN rec' = IF \E e \in r.outbox : e.in = fin[p].in
                 THEN [rec EXCEPT ![k].outbox = {e \in r.outbox : e.in # fin[p].in},
                                  ![k].ver = @ + 1]
                 ELSE rec
    /\ GotoAndForget(p, IF Variant = "RemoveBeforeConsume" /\ fin[p].intok # NoTok
                        THEN "consume" ELSE AfterFinish(p))
    /\ UNCHANGED <<tokTable, net, msg, leased, crashes, dups,
                   commits, cpay, sent, consumed>>

-----------------------------------------------------------------------------
(* The recovery Sweeper (Sweeper::sweep_once): scan records, finish any entry. *)
(* An intent entry the client remembers dispatching (the Sender's sweeper      *)
(* shares its memory) may be removed without sending it again; either choice   *)
(* is allowed, as a sweeper in another process does not know.                  *)
SweepLoad ==
    /\ UseSweeper
    /\ pc[Sweeper] = "idle"
    /\ \E k \in Keys : \E e \in rec[k].outbox :
         /\ key' = [key EXCEPT ![Sweeper] = k]
         /\ ver' = [ver EXCEPT ![Sweeper] = FinVer(rec[k].ver)]
         /\ fin' = [fin EXCEPT ![Sweeper] = e]
         /\ \/ SetPc(Sweeper, FinishStart)
            \/ /\ pc[Client] = "sent" /\ fin[Client].in = e.in
               /\ SetPc(Sweeper, "remove")
            \/ /\ Left(e)                       \* remembered by its endpoint
               /\ SetPc(Sweeper, "remove")
    /\ UNCHANGED <<rec, tokTable, net, msg, leased, crashes, dups,
                   commits, cpay, sent, consumed>>

(* The intent client: commits an OutboxEntry holding m1 (and m1's token) into  *)
(* its record C, then dispatches it and, with tokens in records, stops there   *)
(* ("sent"): the receiver's consume of m1's token drops the entry.             *)
ClientCommit ==
    /\ pc[Client] = "intent"
    /\ LET m1 == [id |-> "m1", pay |-> "seed",
                  tok |-> IF Variant \in {"MintAfterCommit", "Inbox"} THEN NoTok
                          ELSE <<"m1", "c">>]
           e == [in |-> "intent", intok |-> NoTok, out |-> {m1}]
           r == rec["C"]
       IN /\ rec' = [rec EXCEPT !["C"] =
                       [r EXCEPT !.ver = r.ver + 1, !.outbox = r.outbox \cup {e},
                                 !.tokens = IF InRecord THEN r.tokens \cup {m1.tok}
                                            ELSE r.tokens]]
          /\ ver' = [ver EXCEPT ![Client] = FinVer(r.ver + 1)]
          /\ fin' = [fin EXCEPT ![Client] = e]
          /\ cpay' = [cpay EXCEPT !["m1"] = "seed"]
    /\ SetPc(Client, FinishStart)
    /\ UNCHANGED <<tokTable, net, msg, leased, key, crashes, dups, commits, sent, consumed>>

-----------------------------------------------------------------------------
(* Failures *)

(* A process crashes between two steps; a worker's leased copy is redelivered. *)
(* The client never comes back (its caller went away).                         *)
Crash(p) ==
    /\ crashes < MaxCrashes
    /\ \/ p \in Workers /\ pc[p] # "idle"
       \/ p = Sweeper /\ pc[p] # "idle"
       \/ p = Client /\ ClientMayCrash /\ pc[p] \notin {"intent", "done"}
    /\ crashes' = crashes + 1
    /\ IF p \in Workers
       THEN /\ net' = IF leased[p] THEN net (+) SetToBag({msg[p]}) ELSE net
            /\ msg' = [msg EXCEPT ![p] = NoMsg]
            /\ leased' = [leased EXCEPT ![p] = FALSE]
            /\ key' = [key EXCEPT ![p] = "none"]
       ELSE UNCHANGED <<net, msg, leased, key>>
    /\ SetPc(p, IF p = Client THEN "done" ELSE "idle")
    /\ fin' = [fin EXCEPT ![p] = NoFin]
    /\ ver' = [ver EXCEPT ![p] = 0]
    /\ UNCHANGED <<rec, tokTable, dups, commits, cpay, sent, consumed>>

(* Identity inbox only: the retention window of a processed id ends. *)
Forget ==
    /\ Variant = "Inbox"
    /\ \E k \in Keys, m \in MsgIds :
         /\ m \in rec[k].inbox
         /\ \A e \in rec[k].outbox : e.in # m
         /\ rec' = [rec EXCEPT ![k].inbox = @ \ {m}, ![k].ver = @ + 1]
    /\ UNCHANGED <<tokTable, net, pc, msg, leased, key, ver, fin, crashes, dups,
                   commits, cpay, sent, consumed>>

-----------------------------------------------------------------------------
(* A process's own steps (the ones weak fairness applies to). *)
FinishStep(p) ==
    Dispatch(p) \/ MakeTokens(p) \/ Mint(p) \/ RecordToken(p)
    \/ ConsumeToken(p) \/ RemoveEntry(p)

WorkerStep(w) ==
    Take(w) \/ Load(w) \/ CheckToken(w) \/ Reread(w) \/ HandleSendEarly(w)
    \/ Commit(w) \/ Ack(w) \/ FinishStep(w)

Step(p) == CASE p \in Workers -> WorkerStep(p)
             [] p = Sweeper   -> SweepLoad \/ FinishStep(p)
             [] p = Client    -> ClientCommit \/ FinishStep(p)

Progress == \E p \in Procs : Step(p)

Next ==
    \/ Progress
    \/ \E p \in Procs : Crash(p)
    \/ Duplicate
    \/ \E w \in Workers : LeaseExpires(w)
    \/ Forget

Fairness == \A p \in Procs : WF_vars(Step(p))

Spec == Init /\ [][Next]_vars /\ Fairness

(* Workers are interchangeable (safety-only configurations use this). *)
WorkerSymmetry == Permutations(Workers)

-----------------------------------------------------------------------------
(* Properties *)

TypeOK ==
    /\ \A k \in Keys : /\ rec[k].ver \in Nat
                       /\ rec[k].outbox \subseteq Entry
                       /\ rec[k].tokens \subseteq Tok
                       /\ rec[k].inbox \subseteq MsgIds
    /\ tokTable \subseteq Tok
    /\ BagToSet(net) \subseteq Msg
    /\ pc \in [Procs -> {"idle", "intent", "load", "check", "reread", "handle",
                         "commit", "mktok", "dispatch", "record", "consume",
                         "remove", "ack", "done", "sent"}]
    /\ msg \in [Workers -> Msg \cup {NoMsg}]
    /\ leased \in [Workers -> BOOLEAN]
    /\ \A p \in Procs : fin[p] \in Entry \cup {NoFin}
    /\ crashes \in 0..MaxCrashes /\ dups \in 0..MaxDups
    /\ commits \in [MsgIds -> Nat]
    /\ sent \subseteq Msg
    /\ consumed \subseteq Tok

(* At most one state change per logical message. *)
AtMostOneStateChange == \A m \in MsgIds : commits[m] <= 1

(* No ghost message: nothing goes out unless the attempt that fixed it committed. *)
NoGhostMessage == \A s \in sent : cpay[s.id] # "none"

(* Consistent output: every copy of an outgoing message carries the bytes of   *)
(* the committed attempt.                                                      *)
ConsistentOutput == \A s \in sent : cpay[s.id] # "none" => s.pay = cpay[s.id]

(* Dedup data is bounded by in-flight messages: every existing token belongs   *)
(* to a message still listed in an OutboxEntry, queued, or held by a worker    *)
(* (or is being recorded by its minter, variant c); and no consumed token ever *)
(* comes back.                                                                 *)
AllTokens == UNION {rec[k].tokens : k \in Keys} \cup tokTable
Referenced(t) ==
    \/ \E k \in Keys : \E e \in rec[k].outbox : \E o \in e.out : o.tok = t
    \/ \E m \in BagToSet(net) : m.tok = t
    \/ \E w \in Workers : pc[w] # "idle" /\ msg[w].tok = t
    \/ \E p \in Procs : pc[p] = "record" /\ t = <<t[1], p>>
TokensBounded == \A t \in AllTokens : Referenced(t) /\ t \notin consumed

(* Quiescent: no process can take a step any more (crashes, duplicates and    *)
(* expiries aside): the run is over.  This is ~ENABLED Progress spelled out    *)
(* (TLC evaluates it much faster): no worker busy, nothing queued, client and  *)
(* Sweeper at rest, and no entry left for a running Sweeper to pick up.        *)
Quiescent ==
    /\ \A w \in Workers : pc[w] = "idle"
    /\ net = EmptyBag
    /\ pc[Client] \in {"done", "sent"}
    /\ pc[Sweeper] = "idle"
    /\ UseSweeper => \A k \in Keys : rec[k].outbox = {}

SentIds == {s.id : s \in sent}

(* No lost message (checked at quiescence): every committed change's messages  *)
(* were sent.  Also stated as a liveness property (CommittedIsSent).            *)
NoLostMessage == Quiescent => \A o \in MsgIds : cpay[o] # "none" => o \in SentIds

(* An entry a worker left, done, until the next commit to its record or the  *)
(* sweeper removes it: garbage, not pending work.                             *)
LeftDone(e) == WorkerLeavesEntry /\ Done(e)

(* No OutboxEntry with work left is left behind once nothing can move any    *)
(* more.                                                                      *)
NoStrandedOutbox == Quiescent => \A k \in Keys : \A e \in rec[k].outbox : LeftDone(e)

Processed(o) ==
    /\ commits[o] >= 1
    /\ \A k \in Keys : \A e \in rec[k].outbox : e.in = o => LeftDone(e)
    /\ \A t \in AllTokens : t[1] # o

(* Every sent message is eventually processed: committed, its token consumed,  *)
(* its OutboxEntry removed or left done.                                       *)
EventuallyProcessed == \A o \in MsgIds : (o \in SentIds) ~> Processed(o)

CommittedIsSent == \A o \in MsgIds : (cpay[o] # "none") ~> (o \in SentIds)

(* The cheap form of the two properties above.  Every fair behaviour reaches a *)
(* quiescent state (Termination), and in a quiescent state every sent message  *)
(* is processed and every committed message was sent (NoLostMessage,           *)
(* NothingPendingAtQuiescence).  Together they imply EventuallyProcessed and   *)
(* CommittedIsSent, with a single temporal branch for TLC instead of four.    *)
Termination == <>Quiescent
NothingPendingAtQuiescence == Quiescent => \A o \in SentIds : Processed(o)

=============================================================================
