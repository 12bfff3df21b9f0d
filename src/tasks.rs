//! A named, supervised set of tokio tasks (a `JoinSet`): says which task exited early or
//! panicked, and stops the rest within a grace period.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::task::{Id, JoinSet};

/// How a supervised task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It returned (before it was asked to stop, when the caller is supervising).
    Returned(&'static str),
    Panicked(&'static str, String),
    Cancelled(&'static str),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Returned(n) => write!(f, "task {n} exited"),
            Exit::Panicked(n, why) => write!(f, "task {n} panicked: {why}"),
            Exit::Cancelled(n) => write!(f, "task {n} was cancelled"),
        }
    }
}

/// Tasks that run until shutdown; any earlier end is news.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks::default()
    }

    pub fn spawn(&mut self, name: &'static str, fut: impl Future<Output = ()> + Send + 'static) {
        let h = self.set.spawn(fut);
        self.names.insert(h.id(), name);
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Waits for the next task to end; pending forever when there are none (for `select!`).
    pub async fn next_exit(&mut self) -> Exit {
        let Some(res) = self.set.join_next_with_id().await else {
            return std::future::pending().await;
        };
        match res {
            Ok((id, ())) => Exit::Returned(self.name(id)),
            Err(e) => {
                let name = self.name(e.id());
                if e.is_panic() {
                    let p = e.into_panic();
                    let why = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "(no message)".into());
                    Exit::Panicked(name, why)
                } else {
                    Exit::Cancelled(name)
                }
            }
        }
    }

    fn name(&mut self, id: Id) -> &'static str {
        self.names.remove(&id).unwrap_or("(unnamed)")
    }

    /// Waits up to `grace` for every task to end (they were told to stop), then aborts the
    /// rest; returns the ends that were not plain returns, and the names still running.
    pub async fn drain(&mut self, grace: Duration) -> Vec<Exit> {
        let mut odd = Vec::new();
        let done = tokio::time::timeout(grace, async {
            while !self.set.is_empty() {
                match self.next_exit().await {
                    Exit::Returned(_) => {}
                    other => odd.push(other),
                }
            }
        })
        .await;
        if done.is_err() {
            let mut left: Vec<&'static str> = self.names.values().copied().collect();
            left.sort_unstable();
            tracing::warn!("tasks still running after {grace:?}, aborted: {left:?}");
            self.set.abort_all();
            while self.set.join_next().await.is_some() {}
            self.names.clear();
        }
        odd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_early_exit_and_panic_by_name() {
        let mut t = Tasks::new();
        t.spawn("quick", async {});
        assert_eq!(t.next_exit().await, Exit::Returned("quick"));
        t.spawn("bad", async { panic!("boom") });
        assert_eq!(t.next_exit().await, Exit::Panicked("bad", "boom".into()));
        t.spawn("slow", std::future::pending());
        let odd = t.drain(Duration::from_millis(20)).await;
        assert!(odd.is_empty());
        assert!(t.is_empty());
    }
}
