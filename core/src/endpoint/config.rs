//! Endpoint settings and their defaults.

use std::time::Duration;

use crate::protocol::Mutant;

/// How failed attempts are retried before a message is error-queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries in the same worker, right away (after a short jitter).
    pub immediate: u32,
    /// Upper bound of the jitter between immediate retries.
    pub immediate_backoff: Duration,
    /// Retries later, by re-queueing a copy with a delay.
    pub delayed: u32,
    /// Delay before the first delayed retry; doubles each time.
    pub delayed_backoff: Duration,
    /// Cap on the delayed-retry delay.
    pub max_delay: Duration,
    /// Lost commit races tolerated in one delivery before it counts as failed.
    pub conflict_limit: u32,
    /// Back-off unit between conflicting attempts (jittered, grows linearly).
    pub conflict_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            immediate: 3,
            immediate_backoff: Duration::from_millis(50),
            delayed: 3,
            delayed_backoff: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            conflict_limit: 100,
            conflict_backoff: Duration::from_millis(2),
        }
    }
}

impl RetryPolicy {
    /// No waiting anywhere (tests and fault harnesses).
    pub fn no_delays() -> Self {
        Self {
            immediate_backoff: Duration::ZERO,
            delayed_backoff: Duration::ZERO,
            max_delay: Duration::ZERO,
            conflict_backoff: Duration::ZERO,
            ..Self::default()
        }
    }
}

/// The delivery guarantee an endpoint runs with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Guarantee {
    /// The full protocol: dedup tokens, outbox, exactly-once effects.
    #[default]
    ExactlyOnce,
    /// No dedup and no outbox: the state is written (still conditionally,
    /// so concurrent handlers do not lose updates) and captured messages are
    /// sent right after, without tokens. A redelivery runs the handler
    /// again, and a crash between the write and the send loses the
    /// messages. The baseline benchmarks compare against.
    AtLeastOnce,
}

/// An endpoint's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Deliveries handled at once.
    pub concurrency: usize,
    /// Most deliveries one worker receives and handles together (default
    /// 1): more than one are read in one `get_all`, committed in one
    /// `put_all` and acked in one `ack_all` (`docs/protocol.md`, Batches).
    pub batch: usize,
    /// Exactly-once (default) or the at-least-once baseline.
    pub guarantee: Guarantee,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Identity-inbox fallback for tokenless producers: how long processed
    /// ids are remembered. `None`: tokenless messages are error-queued.
    pub inbox_retention: Option<Duration>,
    /// Where poison messages go.
    pub error_queue: String,
    /// How long one receive call waits for a message.
    pub receive_wait: Duration,
    /// How often the endpoint's sweeper runs.
    pub sweep_interval: Duration,
    /// Entries younger than this are left to the worker that committed them.
    pub sweep_min_age: Duration,
    /// At most this many entity records read per sweep pass (`None`: all).
    pub sweep_records_per_pass: Option<usize>,
    /// Captured message bodies larger than this go through the claim check
    /// (default 256 KiB; needs a blob store).
    pub claim_threshold: usize,
    /// Hard limit of one captured message body, in bytes (default 64 MiB):
    /// over it, `Context::send` fails at once.
    pub max_payload_bytes: usize,
    /// Hard limit of one blob, in bytes (default 8 GiB).
    pub max_blob_bytes: u64,
    pub(crate) mutant: Option<Mutant>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            concurrency: 8,
            batch: 1,
            guarantee: Guarantee::ExactlyOnce,
            retry: RetryPolicy::default(),
            inbox_retention: None,
            error_queue: "error".into(),
            receive_wait: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(2),
            sweep_min_age: Duration::from_secs(2),
            sweep_records_per_pass: None,
            claim_threshold: 256 * 1024,
            max_payload_bytes: 64 << 20,
            max_blob_bytes: 8 << 30,
            mutant: None,
        }
    }
}
