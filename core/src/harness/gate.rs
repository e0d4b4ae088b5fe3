//! Step-by-step control of workers. Every worker is a future polled by one
//! scheduler task; a [`Gate`] parks it before each protocol step until the
//! scheduler releases it. Only one worker moves at a time, so a schedule is
//! a pure function of its seed, even over a real database.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;

use crate::protocol::{Probe, Step};

#[derive(Debug, Default)]
struct GateState {
    released: bool,
    parked: Option<Step>,
}

/// Parks a worker before each step until released.
#[derive(Debug, Default)]
pub(crate) struct Gate(Mutex<GateState>);

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn release(&self) {
        let mut s = self.lock();
        s.released = true;
        s.parked = None;
    }

    fn parked(&self) -> Option<Step> {
        self.lock().parked
    }
}

struct GateWait<'a> {
    gate: &'a Gate,
    step: Step,
}

impl Future for GateWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        let mut s = self.gate.lock();
        if s.released {
            s.released = false;
            Poll::Ready(())
        } else {
            // No waker: the scheduler polls parked workers explicitly.
            s.parked = Some(self.step);
            Poll::Pending
        }
    }
}

impl Probe for Gate {
    fn at(&self, step: Step) -> BoxFuture<'_, ()> {
        Box::pin(GateWait { gate: self, step })
    }
}

/// A worker under the scheduler's control.
pub(crate) struct Worker {
    /// Completes with `true` when a seed send failed and must be retried.
    pub future: BoxFuture<'static, bool>,
    pub gate: Arc<Gate>,
    /// The deliveries it works on, for lease expiry and crash recovery.
    pub receipts: Vec<crate::transport::Receipt>,
    /// Seed sends to restart if this worker crashes (the client retries).
    pub resend: Vec<crate::message::Envelope>,
}

/// Where a worker stopped after one [`advance`].
pub(crate) enum Advanced {
    Parked,
    Done(bool),
}

/// Lets `worker` pass one gate and run until the next gate or completion.
/// I/O the worker awaits in between (a real database) is awaited here.
pub(crate) async fn advance(worker: &mut Worker) -> Advanced {
    worker.gate.release();
    let gate = worker.gate.clone();
    let future = &mut worker.future;
    futures::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(retry) => Poll::Ready(Advanced::Done(retry)),
        Poll::Pending => match gate.parked() {
            Some(_) => Poll::Ready(Advanced::Parked),
            None => Poll::Pending,
        },
    })
    .await
}
