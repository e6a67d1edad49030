//! Scripted faults of a [`crate::MockServer`]: each chat completion request
//! takes the next [`Fault`] of the server's script (or its default once the
//! script is used up), so a test states exactly what the upstream does on
//! the first, second, … call. The server also counts requests it saw
//! abandoned by the client (cancellation reaching the upstream).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// What the mock does with one chat completion request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    /// Answer normally.
    #[default]
    Ok,
    /// Answer this status with an OpenAI error body, with `Retry-After`
    /// (seconds) when given.
    Status {
        status: u16,
        retry_after: Option<String>,
    },
    /// Answer this status with an OpenAI error body carrying this
    /// `error.code` (e.g. 400 `context_length_exceeded`).
    ErrorCode { status: u16, code: String },
    /// Wait, then answer normally.
    Latency(Duration),
    /// Accept the request and never send the response head.
    HangBeforeHeaders,
    /// Stream `after` events, then send nothing more (connection kept open).
    HangMidStream { after: usize },
    /// Stream `after` events, then abort the connection.
    CutMidStream { after: usize },
    /// Stream every event with `delay` between them.
    SlowDrip { delay: Duration },
}

impl Fault {
    pub fn status(status: u16) -> Fault {
        Fault::Status {
            status,
            retry_after: None,
        }
    }

    pub fn retry_after(status: u16, secs: &str) -> Fault {
        Fault::Status {
            status,
            retry_after: Some(secs.to_string()),
        }
    }
}

/// The script and the counters, shared with the handlers.
#[derive(Debug)]
pub(crate) struct Script {
    queue: Mutex<VecDeque<Fault>>,
    default: Mutex<Fault>,
    chat_calls: AtomicUsize,
    abandoned: watch::Sender<usize>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            queue: Mutex::new(VecDeque::new()),
            default: Mutex::new(Fault::Ok),
            chat_calls: AtomicUsize::new(0),
            abandoned: watch::channel(0).0,
        }
    }
}

impl Script {
    pub(crate) fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        if let Ok(mut q) = self.queue.lock() {
            q.extend(faults);
        }
    }

    pub(crate) fn set_default(&self, fault: Fault) {
        if let Ok(mut d) = self.default.lock() {
            *d = fault;
        }
    }

    /// The fault for the next chat completion request.
    pub(crate) fn next(&self) -> Fault {
        self.chat_calls.fetch_add(1, Ordering::AcqRel);
        let scripted = self.queue.lock().ok().and_then(|mut q| q.pop_front());
        scripted.unwrap_or_else(|| self.default.lock().map(|d| d.clone()).unwrap_or_default())
    }

    pub(crate) fn chat_calls(&self) -> usize {
        self.chat_calls.load(Ordering::Acquire)
    }

    pub(crate) fn abandoned(&self) -> usize {
        *self.abandoned.borrow()
    }

    pub(crate) async fn wait_abandoned(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.abandoned.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|v| *v >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Counts a request as abandoned if dropped before [`Watch::finish`]: the
/// client went away while the mock was still working on it.
#[derive(Debug)]
pub(crate) struct Watch {
    script: Arc<Script>,
    done: bool,
}

impl Watch {
    pub(crate) fn new(script: Arc<Script>) -> Watch {
        Watch {
            script,
            done: false,
        }
    }

    pub(crate) fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.done {
            self.script.abandoned.send_modify(|n| *n += 1);
        }
    }
}
