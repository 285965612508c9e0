//! Whether anybody still waits for a resolution, and whether the resolution may still stop.
//!
//! A status poll is worth finishing only while its caller waits for the answer: under
//! overload, polls whose callers gave up (a deadline passed, the tab closed) would otherwise
//! keep queueing in front of the store and keep the service slow long after the load is
//! gone. But some work must finish whatever the caller does: once a resolution writes (a
//! poll claim, a recreate lock, a recovery claim, a mint and its persist), stopping half way
//! would leave a claim others wait on, or a billed token unused.
//!
//! So a resolution *commits* right before its first write. [`Interest::run`] drives it and
//! drops it at its next await point when the caller has [lost interest](Interest::lose) and
//! it has not committed; a committed resolution always runs to its end. Runtime-agnostic:
//! no timers, no spawning.

use std::{
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::Poll,
};

use futures::task::AtomicWaker;

/// Shared between the caller (who may [lose](Self::lose) interest) and the work (which
/// commits before its first write). Clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct Interest(Arc<State>);

#[derive(Debug, Default)]
struct State {
    lost: AtomicBool,
    committed: AtomicBool,
    waker: AtomicWaker,
}

impl Interest {
    /// A caller that waits.
    pub fn new() -> Self {
        Self::default()
    }

    /// The caller left: uncommitted work stops at its next await point.
    pub fn lose(&self) {
        self.0.lost.store(true, Ordering::SeqCst);
        self.0.waker.wake();
    }

    /// From here on the work runs to its end, whether or not the caller waits.
    pub fn commit(&self) {
        self.0.committed.store(true, Ordering::SeqCst);
    }

    /// Whether the work has committed.
    pub fn is_committed(&self) -> bool {
        self.0.committed.load(Ordering::SeqCst)
    }

    /// Whether the caller left before the work committed: it is to be dropped.
    pub fn is_abandoned(&self) -> bool {
        self.0.lost.load(Ordering::SeqCst) && !self.is_committed()
    }

    /// Runs `work` to its end, unless the caller loses interest before it commits: then
    /// `None`, and `work` is dropped without running further.
    pub async fn run<F: Future>(&self, work: F) -> Option<F::Output> {
        let mut work = pin!(work);
        futures::future::poll_fn(|cx| {
            if self.is_abandoned() {
                return Poll::Ready(None);
            }
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            self.0.waker.register(cx.waker());
            // Lost between the first check and the registration: do not miss the wake-up.
            if self.is_abandoned() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::Interest;

    #[tokio::test]
    async fn uncommitted_work_stops_when_the_caller_leaves() {
        let interest = Interest::new();
        let (reached, mut never) = futures::channel::mpsc::channel::<()>(1);
        let run = interest.run(async move {
            let _keep = reached;
            futures::StreamExt::next(&mut never).await;
            "finished"
        });
        let leaver = interest.clone();
        let (result, ()) = futures::join!(run, async move { leaver.lose() });
        assert_eq!(result, None, "abandoned before committing");
    }

    #[tokio::test]
    async fn committed_work_finishes_although_the_caller_left() {
        let interest = Interest::new();
        let (release, wait) = futures::channel::oneshot::channel::<()>();
        let worker = interest.clone();
        let run = interest.run(async move {
            worker.commit();
            wait.await.expect("released");
            "finished"
        });
        let leaver = interest.clone();
        let (result, ()) = futures::join!(run, async move {
            leaver.lose();
            release.send(()).expect("the work waits");
        });
        assert_eq!(result, Some("finished"));
        assert!(interest.is_committed());
    }

    #[tokio::test]
    async fn work_whose_caller_stays_finishes() {
        let interest = Interest::new();
        assert_eq!(interest.run(async { 7 }).await, Some(7));
        assert!(!interest.is_abandoned());
    }
}
