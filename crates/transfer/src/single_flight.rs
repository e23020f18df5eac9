use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use std::hash::Hash;

use tokio::sync::OnceCell;

use crate::error::TransferError;
use crate::mutex::lock;

type Slot<T> = Arc<OnceCell<Result<T, Arc<TransferError>>>>;

/// Runs the work for one key (a blob) once per run, however many images ask
/// for it at the same moment: the first caller does it, the others wait for
/// its result. A failure is shared too, so a broken blob is not fetched N times.
pub(crate) struct SingleFlight<K, T> {
    slots: Mutex<HashMap<K, Slot<T>>>,
}

impl<K: Eq + Hash, T: Clone> SingleFlight<K, T> {
    pub(crate) fn new() -> Self {
        Self { slots: Mutex::new(HashMap::new()) }
    }

    /// Returns `(result, ran_here)`: `ran_here` is true for the one caller whose
    /// `work` actually ran.
    pub(crate) async fn run<F, Fut>(&self, key: K, work: F) -> (Result<T, Arc<TransferError>>, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, TransferError>>,
    {
        let slot = {
            let mut slots = lock(&self.slots);
            Arc::clone(slots.entry(key).or_default())
        };
        let mut ran_here = false;
        let result = slot
            .get_or_init(|| {
                ran_here = true;
                async move { work().await.map_err(Arc::new) }
            })
            .await;
        (result.clone(), ran_here)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_run_and_its_result() {
        let flight = Arc::new(SingleFlight::<&str, u64>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let digest = "blob";
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (flight, runs) = (Arc::clone(&flight), Arc::clone(&runs));
            tasks.push(tokio::spawn(async move {
                flight
                    .run(digest, || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(42)
                    })
                    .await
            }));
        }
        let mut ran_here = 0;
        for task in tasks {
            let (result, ran) = task.await.unwrap();
            assert_eq!(result.unwrap(), 42);
            ran_here += usize::from(ran);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(ran_here, 1);
    }

    #[tokio::test]
    async fn a_failure_is_shared_not_retried() {
        let flight = SingleFlight::<&str, u64>::new();
        let (first, _) = flight.run("bad", || async { Err(TransferError::Unsupported("broken".into())) }).await;
        assert!(first.is_err());
        let (second, ran) = flight.run("bad", || async { Ok(1) }).await;
        assert!(second.is_err());
        assert!(!ran);
    }
}
