//! The one way the store runs many DynamoDB calls of one request at once.

use std::future::Future;

use tokio::task::JoinSet;

use super::StoreError;

/// Runs `call` on every item, each as its own task, at most `limit` at a time. The first error
/// stops further items from starting; the calls already running finish, then that error is
/// returned. `what` names the calls in the error of a task that panicked. Results come in the
/// order the calls finished.
pub async fn for_each_bounded<I, T, F, Fut>(
    items: I,
    limit: usize,
    what: &'static str,
    mut call: F,
) -> Result<Vec<T>, StoreError>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    T: Send + 'static,
{
    let mut pending = items.into_iter();
    let mut running = JoinSet::new();
    let mut done = Vec::new();
    let mut first_error = None;
    loop {
        while running.len() < limit.max(1) && first_error.is_none() {
            let Some(item) = pending.next() else { break };
            running.spawn(call(item));
        }
        match running.join_next().await {
            None => break,
            Some(Ok(Ok(t))) => done.push(t),
            Some(Ok(Err(e))) => {
                first_error.get_or_insert(e);
            }
            Some(Err(join)) => {
                first_error.get_or_insert(StoreError::unavailable(what, join));
            }
        }
    }
    first_error.map_or(Ok(done), Err)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn runs_every_item_at_most_limit_at_once() {
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut out = for_each_bounded(0..20u32, 3, "test", |i| {
            let (now, peak) = (now.clone(), peak.clone());
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(i * 2)
            }
        })
        .await
        .unwrap();
        out.sort_unstable();
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3);
    }

    #[tokio::test]
    async fn the_first_error_stops_new_calls() {
        let started = Arc::new(AtomicUsize::new(0));
        let res = for_each_bounded(0..100u32, 2, "test", |i| {
            let started = started.clone();
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                if i == 1 { Err(StoreError::NotFound("boom".into())) } else { Ok(i) }
            }
        })
        .await;
        assert!(matches!(res, Err(StoreError::NotFound(m)) if m == "boom"));
        assert!(started.load(Ordering::SeqCst) < 100, "no new call after the error");
    }

    async fn explode() -> Result<(), StoreError> {
        panic!("a call panics")
    }

    #[tokio::test]
    async fn a_panicking_call_is_an_error() {
        let res = for_each_bounded([()], 1, "probe", |()| explode()).await;
        let Err(StoreError::Unavailable { op, source }) = res else { panic!("{res:?}") };
        assert_eq!(op, "probe");
        assert!(source.downcast_ref::<tokio::task::JoinError>().is_some_and(|j| j.is_panic()), "{source}");
    }
}
