//! Transfer progress for people (a bar with rate and ETA on standard error)
//! or for scripts (`transfer_progress` events, at most 4 a second).

use std::time::{Duration, Instant};

use chatdrop_client::ClientEvent;
use indicatif::{ProgressBar, ProgressStyle};

use crate::printer::Printer;

/// Shows the progress of one transfer.
pub struct Meter {
    id: String,
    bar: Option<ProgressBar>,
    printer: Printer,
    last: Option<Instant>,
}

/// Least time between two JSON progress events.
const EVERY: Duration = Duration::from_millis(250);

impl Meter {
    /// A meter for transfer `id` of `total` bytes.
    pub fn new(printer: &Printer, id: &str, total: u64) -> Meter {
        let bar = (!printer.json).then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Meter {
            id: id.to_string(),
            bar,
            printer: printer.clone(),
            last: None,
        }
    }

    /// Records `done` of `total` bytes.
    pub fn update(&mut self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let now = Instant::now();
        if self.last.is_some_and(|t| now - t < EVERY) && done < total {
            return;
        }
        self.last = Some(now);
        println!(
            "{}",
            self.printer.line(&ClientEvent::TransferProgress {
                id: self.id.clone(),
                bytes: done,
                total,
                sources: Vec::new(),
            })
        );
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
