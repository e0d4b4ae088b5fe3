//! Deliberately broken protocol variants. The fault harness must catch every
//! one of them; that is the test that the harness has teeth. Never enable one
//! outside tests.

/// A known-broken change to the protocol, selected by a test-only switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mutant {
    /// Check the token before loading the entity (step 2 before step 1).
    /// A copy that checks, pauses, and loads after another copy finished
    /// the message sees no trace of it and runs the handler again.
    CheckTokenBeforeLoad,
    /// Don't write tokens at commit; add them if absent when dispatching.
    /// A stale finisher re-creates a token the receiver already consumed.
    RecreateTokenAtDispatch,
    /// Token gone → drop and ack without re-reading the own entity. An entry
    /// committed by a worker that died after consuming the token is left
    /// behind forever.
    DropWithoutReread,
    /// Remove the `OutboxEntry` before consuming the incoming token. A crash
    /// in between leaves the token, so a redelivery runs the handler again.
    RemoveEntryBeforeConsume,
    /// Send the outgoing messages before the commit: ghost messages.
    DispatchBeforeCommit,
    /// The blob collector deletes old blobs without checking references.
    CollectWithoutChecking,
    /// Consuming a token drops every `OutboxEntry` that lists its message,
    /// not only those left with nothing to do. An entry whose own incoming
    /// token is still unconsumed goes too: a crash before that consume,
    /// and a redelivery runs the handler again.
    ForgetWholeEntry,
    /// A batch takes a second message for an entity (or token holder)
    /// already in it: both handlers run on the record as the batch read
    /// it, and the later write of the key in the `put_all` overwrites the
    /// earlier one, whose effect is lost.
    BatchSharedKeys,
    /// Batch members whose tokens share a holder each write the holder as
    /// the batch read it, less their own token, instead of one write less
    /// all of them: the last write in the `put_all` wins, the other
    /// members' tokens stay, and a later copy of one of those messages
    /// runs the handler again.
    BatchHolderPerMember,
    /// A worker remembers the entry it leaves for the receivers' consumes
    /// before sending its messages, not after: a crash in between, and the
    /// redelivery finds the entry "sent", skips it, and the messages are
    /// never sent (TLA+ mutant (i), `LeaveUnsent`).
    LeaveUnsent,
    /// A worker remembers the entry it leaves before consuming its
    /// incoming token, not after: a crash in between, and the redelivery
    /// finds the entry done and acks, the next commit drops it, and the
    /// token is never consumed: a copy that comes later runs the handler
    /// again (TLA+ mutant (j), `LeaveUnconsumed`).
    LeaveUnconsumed,
    /// A `Sender`'s group commit reports every send of a group as written
    /// when the group's `put_all` failed: those sends return `Ok` and
    /// dispatch a message whose intent record (its token) was never
    /// created, and the receiver drops it as already processed.
    GroupTrustsFailedWrite,
    /// An endpoint's grouped consumes report every commit of a group as
    /// written when the group's `put_all` failed: the attempts go on as if
    /// committed (send, ack) while neither their state nor the consume of
    /// their tokens was written, so their effects are lost.
    ConsumeGroupTrustsFailedWrite,
    /// A batch keeps a token holder it wrote as it had read it (the tokens
    /// it consumed still in) under the version it wrote: the next batch or
    /// group of this endpoint that consumes from it starts from that copy
    /// and writes those tokens back, and a later copy of one of their
    /// messages runs the handler again.
    BatchKeepsHolderAsRead,
}

impl Mutant {
    /// Whether this variant breaks only a path added after the others
    /// (batches, entries left for the consumes) and so runs everything else
    /// as the protocol does: one-write commits included. The older variants
    /// run the protocol as it was when they were written (no `put_all`
    /// consume, no prefetched holder, every entry removed by its finisher).
    pub(crate) fn breaks_only_new_paths(self) -> bool {
        matches!(
            self,
            Mutant::BatchSharedKeys
                | Mutant::BatchHolderPerMember
                | Mutant::LeaveUnsent
                | Mutant::LeaveUnconsumed
                | Mutant::GroupTrustsFailedWrite
                | Mutant::ConsumeGroupTrustsFailedWrite
                | Mutant::BatchKeepsHolderAsRead
        )
    }

    /// Every mutant.
    pub const ALL: [Mutant; 14] = [
        Mutant::CheckTokenBeforeLoad,
        Mutant::RecreateTokenAtDispatch,
        Mutant::DropWithoutReread,
        Mutant::RemoveEntryBeforeConsume,
        Mutant::DispatchBeforeCommit,
        Mutant::CollectWithoutChecking,
        Mutant::ForgetWholeEntry,
        Mutant::BatchSharedKeys,
        Mutant::BatchHolderPerMember,
        Mutant::LeaveUnsent,
        Mutant::LeaveUnconsumed,
        Mutant::GroupTrustsFailedWrite,
        Mutant::ConsumeGroupTrustsFailedWrite,
        Mutant::BatchKeepsHolderAsRead,
    ];
}
