//! What the user sees while natspkg works: one line (or spinner) per long step, on stderr.
//!
//! Four modes, for the places natspkg runs in:
//! - an interactive terminal: an indicatif spinner per step, replaced by `✓ step (12.3s)` when done;
//! - a CI log or a pipe (stderr is not a terminal): plain lines, `==> step` then `    done (12.3s)`,
//!   since spinners' carriage returns turn logs into noise;
//! - `--verbose`: plain lines too, because the compiler's own output streams in between;
//! - `--quiet`: nothing but errors (the closing summary goes to stdout and is still printed).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How chatty natspkg is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// The reporter for one run. Cheap to copy around by reference.
#[derive(Clone, Debug)]
pub struct Progress {
    verbosity: Verbosity,
    spinners: bool,
}

impl Progress {
    /// Spinners only when stderr is a terminal and the output is neither quiet nor verbose.
    pub fn new(verbosity: Verbosity) -> Progress {
        let spinners = verbosity == Verbosity::Normal && std::io::stderr().is_terminal();
        Progress {
            verbosity,
            spinners,
        }
    }

    /// A reporter that prints nothing (for library callers and tests).
    pub fn silent() -> Progress {
        Progress {
            verbosity: Verbosity::Quiet,
            spinners: false,
        }
    }

    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    /// True when child processes' output should stream to the terminal instead of being captured.
    pub fn is_verbose(&self) -> bool {
        self.verbosity == Verbosity::Verbose
    }

    /// Starts a long step; finish it with [`Step::done`]. A step dropped without `done` (an error
    /// path) is marked as failed, so the last line on screen says where things stopped.
    pub fn step(&self, what: impl Into<String>) -> Step {
        let what = what.into();
        let bar = if self.spinners {
            let bar = ProgressBar::new_spinner().with_message(what.clone());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            Some(bar)
        } else {
            if self.verbosity != Verbosity::Quiet {
                eprintln!("==> {what}");
            }
            None
        };
        Step {
            what,
            bar,
            start: Instant::now(),
            quiet: self.verbosity == Verbosity::Quiet,
            finished: false,
        }
    }

    /// A one-off informational line (not shown with `--quiet`).
    pub fn note(&self, line: impl AsRef<str>) {
        if self.verbosity != Verbosity::Quiet {
            eprintln!("    {}", line.as_ref());
        }
    }
}

/// One running step.
#[derive(Debug)]
pub struct Step {
    what: String,
    bar: Option<ProgressBar>,
    start: Instant,
    quiet: bool,
    finished: bool,
}

impl Step {
    /// Marks the step as finished, with an optional detail (`"1.2 MiB"`).
    pub fn done(mut self, detail: impl AsRef<str>) {
        self.finished = true;
        let took = format!("{:.1}s", self.start.elapsed().as_secs_f64());
        let detail = detail.as_ref();
        let tail = if detail.is_empty() {
            took
        } else {
            format!("{detail}, {took}")
        };
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None if self.quiet => return,
            None => {
                eprintln!("    done: {} ({tail})", self.what);
                return;
            }
        }
        eprintln!("✓ {} ({tail})", self.what);
    }

    /// Runs `f` with the spinner hidden (e.g. to print a warning without it being overdrawn).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if !self.quiet {
            eprintln!(
                "✗ {} (failed after {:.1}s)",
                self.what,
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}
