//! The live view of `mop push` and `mop local` on a terminal: indicatif lines under the change
//! lines, one per host in flight with the resource it is on, and a role line with the batch,
//! the elapsed time and running counts. It implements `mop_push::report::Progress`; the
//! library only says what starts and ends.
//!
//! Only on a terminal: stdout and stderr both terminals, no `--json`, `TERM` not `dumb`.
//! Otherwise the reporter prints exactly what it prints without a live view. Everything the
//! reporter prints meanwhile (change lines, diagnostics) goes through [`AboveProgress`], which
//! hides the live lines, writes whole lines, and draws them again, so output never mixes
//! with them. The live lines are plain text (readable without colour), cut to the terminal's
//! width, and never more than fit: beyond that, one `... and N more hosts running` line.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mop_protocol::ResourceStatus;
use mop_push::report::{Diagnostics, Progress, ReportStyle, Reporter};

/// How often the elapsed times are redrawn when nothing else happens.
const TICK: Duration = Duration::from_millis(200);

/// Whether a run gets the live view: only for a person at a terminal.
pub fn wanted(json: bool) -> bool {
    !json
        && std::io::stdout().is_terminal()
        && std::io::stderr().is_terminal()
        && std::env::var_os("TERM").is_none_or(|term| term != "dumb")
}

/// The reporter of a run: on stdout, diagnostics on stderr (with `-vv` steps when `steps`), and
/// the live view when [`wanted`].
pub fn reporter(style: ReportStyle, steps: bool) -> Reporter {
    if !wanted(style.json) {
        return Reporter::new(
            style,
            Box::new(std::io::stdout()),
            Diagnostics::stderr().with_steps(steps),
        );
    }
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let (rows, columns) = console::Term::stderr().size();
    let live = LiveProgress::new(multi.clone(), usize::from(rows), usize::from(columns));
    let out = AboveProgress::new(multi.clone(), Box::new(std::io::stdout()));
    let err = AboveProgress::new(multi, Box::new(std::io::stderr()));
    Reporter::new(
        style,
        Box::new(out),
        Diagnostics::new(Box::new(err)).with_steps(steps),
    )
    .with_progress(Box::new(live))
}

/// Host lines shown for a terminal of `rows` rows: at most half of it, so the change lines
/// above stay readable, and at least one.
fn host_lines_for(rows: usize) -> usize {
    (rows.saturating_sub(4) / 2).max(1)
}

/// A writer that prints whole lines above the live view (hiding it while writing).
struct AboveProgress {
    multi: MultiProgress,
    target: Box<dyn Write + Send>,
    pending: Vec<u8>,
}

impl AboveProgress {
    fn new(multi: MultiProgress, target: Box<dyn Write + Send>) -> AboveProgress {
        AboveProgress {
            multi,
            target,
            pending: Vec::new(),
        }
    }

    /// Writes every complete line buffered so far in one go: a line written in pieces would
    /// otherwise be split by a redraw of the live lines.
    fn write_lines(&mut self) -> std::io::Result<()> {
        let Some(end) = self.pending.iter().rposition(|byte| *byte == b'\n') else {
            return Ok(());
        };
        let lines: Vec<u8> = self.pending.drain(..=end).collect();
        let target = &mut self.target;
        self.multi.suspend(|| {
            target.write_all(&lines)?;
            target.flush()
        })
    }
}

impl Write for AboveProgress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if buf.contains(&b'\n') {
            self.write_lines()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_lines()
    }
}

impl Drop for AboveProgress {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.pending.push(b'\n');
            let _ = self.write_lines();
        }
    }
}

/// The live view: the state is shared with a ticker thread that redraws elapsed times.
struct LiveProgress {
    view: Arc<Mutex<View>>,
    stop: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl LiveProgress {
    fn new(multi: MultiProgress, rows: usize, columns: usize) -> LiveProgress {
        let view = Arc::new(Mutex::new(View::new(multi, rows, columns)));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let view = Arc::clone(&view);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    lock(&view).draw();
                }
            })
        };
        LiveProgress {
            view,
            stop,
            ticker: Some(ticker),
        }
    }

    fn with_view(&self, change: impl FnOnce(&mut View)) {
        let mut view = lock(&self.view);
        change(&mut view);
        view.draw();
    }
}

fn lock(view: &Mutex<View>) -> std::sync::MutexGuard<'_, View> {
    // A panic while drawing leaves a view that is still fine to draw or clear.
    view.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Progress for LiveProgress {
    fn role_started(&mut self, role: &str, hosts: usize, batches: usize) {
        self.with_view(|view| view.start_role(role, hosts, batches));
    }

    fn batch_started(&mut self, batch: usize) {
        self.with_view(|view| view.batch = batch);
    }

    fn host_started(&mut self, host: &str) {
        self.with_view(|view| {
            view.running.insert(
                host.to_string(),
                Running {
                    resource: None,
                    since: Instant::now(),
                },
            );
        });
    }

    fn resource_started(&mut self, host: &str, resource: &str) {
        self.with_view(|view| {
            if let Some(running) = view.running.get_mut(host) {
                running.resource = Some(resource.to_string());
            }
        });
    }

    fn resource_finished(&mut self, _host: &str, status: ResourceStatus) {
        self.with_view(|view| match status {
            ResourceStatus::Ok => view.ok += 1,
            ResourceStatus::Changed => view.changed += 1,
            ResourceStatus::Failed => view.failed += 1,
            ResourceStatus::Skipped => {}
        });
    }

    fn host_finished(&mut self, host: &str) {
        self.with_view(|view| {
            view.running.shift_remove(host);
        });
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
        lock(&self.view).clear();
    }
}

impl Drop for LiveProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

struct Running {
    /// What the agent said it is on; `None` while connecting and starting the agent.
    resource: Option<String>,
    since: Instant,
}

/// What is drawn, and the indicatif lines drawing it: a role line, then one line per host in
/// flight up to `host_lines`, then the "more" line.
struct View {
    multi: MultiProgress,
    host_lines: usize,
    columns: usize,
    role: Option<String>,
    role_hosts: usize,
    role_since: Instant,
    batches: usize,
    batch: usize,
    ok: u32,
    changed: u32,
    failed: u32,
    running: IndexMap<String, Running>,
    header: Option<ProgressBar>,
    lines: Vec<ProgressBar>,
    more: Option<ProgressBar>,
}

impl View {
    fn new(multi: MultiProgress, rows: usize, columns: usize) -> View {
        View {
            multi,
            host_lines: host_lines_for(rows),
            columns: columns.max(20),
            role: None,
            role_hosts: 0,
            role_since: Instant::now(),
            batches: 1,
            batch: 1,
            ok: 0,
            changed: 0,
            failed: 0,
            running: IndexMap::new(),
            header: None,
            lines: Vec::new(),
            more: None,
        }
    }

    fn start_role(&mut self, role: &str, hosts: usize, batches: usize) {
        self.role = Some(role.to_string());
        self.role_hosts = hosts;
        self.role_since = Instant::now();
        self.batches = batches.max(1);
        self.batch = 1;
        (self.ok, self.changed, self.failed) = (0, 0, 0);
        self.running.clear();
    }

    fn new_line(&self) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
        bar
    }

    /// Cuts a line to the terminal's width, so no line wraps and the redraw stays exact.
    fn fit(&self, text: &str) -> String {
        console::truncate_str(text, self.columns - 1, "...").into_owned()
    }

    fn draw(&mut self) {
        let Some(role) = &self.role else {
            return;
        };
        let mut header = format!("role {role}");
        if self.batches > 1 {
            header.push_str(&format!("  batch {}/{}", self.batch, self.batches));
        }
        header.push_str(&format!(
            "  {}  ok {}  changed {}  failed {}  running {}/{}",
            seconds(self.role_since.elapsed()),
            self.ok,
            self.changed,
            self.failed,
            self.running.len(),
            self.role_hosts
        ));
        let header = self.fit(&header);
        if self.header.is_none() {
            self.header = Some(self.new_line());
        }
        if let Some(bar) = &self.header {
            bar.set_message(header);
        }

        let shown = self.running.len().min(self.host_lines);
        while self.lines.len() > shown {
            if let Some(bar) = self.lines.pop() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        // The "more" line stays last: it goes before host lines are added.
        let hidden = self.running.len() - shown;
        if hidden == 0 || self.lines.len() < shown {
            if let Some(bar) = self.more.take() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        while self.lines.len() < shown {
            let bar = self.new_line();
            self.lines.push(bar);
        }
        let texts: Vec<String> = self
            .running
            .iter()
            .take(shown)
            .map(|(host, running)| {
                let doing = running.resource.as_deref().unwrap_or("connecting");
                self.fit(&format!(
                    "  {host}  {doing}  {}",
                    seconds(running.since.elapsed())
                ))
            })
            .collect();
        for (bar, text) in self.lines.iter().zip(texts) {
            bar.set_message(text);
        }
        if hidden > 0 {
            if self.more.is_none() {
                self.more = Some(self.new_line());
            }
            let text = self.fit(&format!(
                "  ... and {hidden} more host{} running",
                if hidden == 1 { "" } else { "s" }
            ));
            if let Some(bar) = &self.more {
                bar.set_message(text);
            }
        }
    }

    fn clear(&mut self) {
        for bar in self
            .header
            .take()
            .into_iter()
            .chain(self.lines.drain(..))
            .chain(self.more.take())
        {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let _ = self.multi.clear();
        self.role = None;
    }
}

/// `7s`, `2m05s`: whole seconds, so the lines do not flicker.
fn seconds(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lines_leave_room_for_the_change_lines() {
        assert_eq!(host_lines_for(24), 10);
        assert_eq!(host_lines_for(3), 1);
        assert_eq!(host_lines_for(0), 1);
        assert_eq!(seconds(Duration::from_millis(7400)), "7s");
        assert_eq!(seconds(Duration::from_secs(125)), "2m05s");
    }
}
