//! A progress line for the long one-shot jobs (`demo`, `run --until-drained`): on a
//! terminal, one line that counts what has gone to and come from the PAS and the e-RS
//! calls so far, redrawn a few times a second and cleared before the summary (indicatif).
//! When stderr is not a terminal (a pipe, a file, journald) there is none: the summary and
//! the log say it all.

use std::io::IsTerminal as _;
use std::time::Duration;

use crate::events::Events;

/// A running progress line; [`Progress::finish`] clears it.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts the line for `what` when stderr is a terminal (in a Tokio runtime).
    pub fn start(events: &Events, what: &'static str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                bar: None,
                task: None,
            };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        let (events, line) = (events.clone(), bar.clone());
        let task = tokio::spawn(async move {
            loop {
                let m = events.metrics();
                let calls: u64 = m.ers_calls_by_class.iter().map(|c| c.get()).sum();
                line.set_message(format!(
                    "{what}: {} to the PAS, {} from the PAS, {} e-RS calls",
                    m.trend_to_pas.get(),
                    m.trend_from_pas.get(),
                    calls
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self {
            bar: Some(bar),
            task: Some(task),
        }
    }

    /// Stops and clears the line.
    pub fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
