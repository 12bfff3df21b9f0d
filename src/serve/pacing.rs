//! Pacing of a link's sending to `link.max_bandwidth`.

use std::time::Duration;

use tokio::time::Instant;

/// Paces sending to `max_bandwidth` bytes per second (0 = unlimited).
pub(super) struct Pacer {
    rate: u64,
    start: Instant,
    sent: u64,
}

impl Pacer {
    pub(super) fn new(rate: u64) -> Self {
        Pacer {
            rate,
            start: Instant::now(),
            sent: 0,
        }
    }

    pub(super) async fn spent(&mut self, n: u64) {
        if self.rate == 0 {
            return;
        }
        self.sent += n;
        let due = self.start + Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        // Forget history older than a few seconds so an idle period does not bank a burst.
        if self.start.elapsed() > Duration::from_secs(5) {
            self.start = Instant::now();
            self.sent = 0;
        }
    }
}
