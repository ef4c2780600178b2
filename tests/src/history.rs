//! The history of a chaos run, and the checker that judges it.
//!
//! Every process of a run (the workers and the driver) appends lines to a history file. Each
//! line is one [`Entry`]: a lock attempt begun, a critical section entered or left, a lock
//! declared lost, a write to the fenced register, a holder cut off or dead, or a fault the
//! driver injected. Times are nanoseconds of `CLOCK_MONOTONIC` ([`now_ns`]), which every
//! process on one Linux host shares, so the lines of different processes can be merged and
//! compared.
//!
//! A critical section takes two lines, `enter` and `leave`, so that a section whose process
//! was killed (and so never wrote `leave`) is still seen: it is taken to last until its
//! worker's `down` line.
//!
//! ```
//! use lock_tests::history::History;
//!
//! let history = History::parse(
//!     "enter holder=a/0/0 key=k at=100 fence=1\n\
//!      leave holder=a/0/0 key=k at=300 done=true\n\
//!      enter holder=b/0/0 key=k at=200 fence=2\n\
//!      leave holder=b/0/0 key=k at=400 done=true\n",
//! )?;
//! let report = history.check();
//! assert_eq!(report.overlaps.len(), 1);
//! assert_eq!(report.longest_overlap.as_nanos(), 100);
//! # Ok::<(), lock_tests::history::ParseError>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Nanoseconds on `CLOCK_MONOTONIC`: the clock every process on one Linux host shares.
///
/// `std::time::Instant` reads the same clock, but cannot be written to a file and read back by
/// another process.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// One line of a history file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A lock attempt began: the would-be holder asked for the lock and may wait for it.
    Try {
        /// Who asks: `worker/task/sequence`, the name its section will have.
        holder: String,
        /// The lock key.
        key: String,
        /// When.
        at: u64,
    },
    /// A critical section began: the body of `run` started.
    Enter {
        /// Who holds it: `worker/task/sequence`, unique per section.
        holder: String,
        /// The lock key.
        key: String,
        /// When, in [`now_ns`] nanoseconds.
        at: u64,
        /// The fencing token of this acquisition, if there was one.
        fence: Option<u64>,
    },
    /// A critical section ended: its body returned (`done`) or was dropped (cancelled).
    Leave {
        /// The holder, as in its `Enter`.
        holder: String,
        /// The lock key.
        key: String,
        /// When.
        at: u64,
        /// True when the body ran to its end, false when it was cancelled.
        done: bool,
    },
    /// The lock library declared the holder's lock lost.
    Lost {
        /// The holder.
        holder: String,
        /// The lock key.
        key: String,
        /// When the worker saw the `Lost` error.
        at: u64,
    },
    /// A lock attempt failed with another error (busy after the wait, timeout, connection).
    Fail {
        /// The would-be holder.
        holder: String,
        /// The lock key.
        key: String,
        /// When.
        at: u64,
        /// The error's kind, one word.
        error: String,
    },
    /// A write to the fenced register, which refuses tokens lower than the highest it saw.
    Write {
        /// The holder that wrote.
        holder: String,
        /// The lock key the register belongs to.
        key: String,
        /// When the answer came back.
        at: u64,
        /// The fencing token written.
        fence: u64,
        /// Whether the register accepted it.
        accepted: bool,
    },
    /// A worker stopped holding anything at `at`: killed, closed, or cut off from Redis.
    Down {
        /// The worker's name (the first part of its holders' names).
        worker: String,
        /// When.
        at: u64,
        /// The keys it held at that moment; when absent, the keys of its open sections.
        keys: Option<Vec<String>>,
    },
    /// Something the driver did: a fault switched on or off, a server restarted.
    Mark {
        /// What happened, one word (`blackhole`, `heal`, `restart-up`, ...).
        name: String,
        /// When.
        at: u64,
    },
}

impl Entry {
    /// When this entry happened.
    pub fn at(&self) -> u64 {
        match self {
            Entry::Try { at, .. }
            | Entry::Enter { at, .. }
            | Entry::Leave { at, .. }
            | Entry::Lost { at, .. }
            | Entry::Fail { at, .. }
            | Entry::Write { at, .. }
            | Entry::Down { at, .. }
            | Entry::Mark { at, .. } => *at,
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Try { holder, key, at } => write!(f, "try holder={holder} key={key} at={at}"),
            Entry::Enter {
                holder,
                key,
                at,
                fence,
            } => {
                write!(f, "enter holder={holder} key={key} at={at}")?;
                match fence {
                    Some(fence) => write!(f, " fence={fence}"),
                    None => write!(f, " fence=-"),
                }
            }
            Entry::Leave {
                holder,
                key,
                at,
                done,
            } => write!(f, "leave holder={holder} key={key} at={at} done={done}"),
            Entry::Lost { holder, key, at } => write!(f, "lost holder={holder} key={key} at={at}"),
            Entry::Fail {
                holder,
                key,
                at,
                error,
            } => write!(f, "fail holder={holder} key={key} at={at} error={error}"),
            Entry::Write {
                holder,
                key,
                at,
                fence,
                accepted,
            } => write!(
                f,
                "write holder={holder} key={key} at={at} fence={fence} ok={accepted}"
            ),
            Entry::Down { worker, at, keys } => {
                write!(f, "down worker={worker} at={at}")?;
                match keys {
                    Some(keys) if keys.is_empty() => write!(f, " keys=-"),
                    Some(keys) => write!(f, " keys={}", keys.join(",")),
                    None => Ok(()),
                }
            }
            Entry::Mark { name, at } => write!(f, "mark name={name} at={at}"),
        }
    }
}

/// A history line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("history line {line}: {reason}: {text:?}")]
pub struct ParseError {
    /// 1-based line number (across the files read, in order).
    pub line: usize,
    /// The line.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Entry {
    /// Reads one line written by [`Display`](fmt::Display).
    pub fn parse(text: &str) -> Result<Entry, String> {
        let mut words = text.split_whitespace();
        let kind = words.next().ok_or("empty line")?;
        let mut fields = HashMap::new();
        for word in words {
            let (name, value) = word
                .split_once('=')
                .ok_or_else(|| format!("`{word}` is not name=value"))?;
            fields.insert(name, value);
        }
        let text = |name: &str| -> Result<String, String> {
            fields
                .get(name)
                .map(|v| (*v).to_owned())
                .ok_or_else(|| format!("missing `{name}`"))
        };
        let number = |name: &str| -> Result<u64, String> {
            text(name)?
                .parse()
                .map_err(|_| format!("`{name}` is not a number"))
        };
        let flag = |name: &str| -> Result<bool, String> {
            text(name)?
                .parse()
                .map_err(|_| format!("`{name}` is not true/false"))
        };
        let at = number("at")?;
        Ok(match kind {
            "try" => Entry::Try {
                holder: text("holder")?,
                key: text("key")?,
                at,
            },
            "enter" => Entry::Enter {
                holder: text("holder")?,
                key: text("key")?,
                at,
                fence: match text("fence").as_deref() {
                    Ok("-") | Err(_) => None,
                    Ok(_) => Some(number("fence")?),
                },
            },
            "leave" => Entry::Leave {
                holder: text("holder")?,
                key: text("key")?,
                at,
                done: flag("done")?,
            },
            "lost" => Entry::Lost {
                holder: text("holder")?,
                key: text("key")?,
                at,
            },
            "fail" => Entry::Fail {
                holder: text("holder")?,
                key: text("key")?,
                at,
                error: text("error")?,
            },
            "write" => Entry::Write {
                holder: text("holder")?,
                key: text("key")?,
                at,
                fence: number("fence")?,
                accepted: flag("ok")?,
            },
            "down" => Entry::Down {
                worker: text("worker")?,
                at,
                keys: match fields.get("keys") {
                    None => None,
                    Some(&"-") => Some(Vec::new()),
                    Some(keys) => Some(keys.split(',').map(str::to_owned).collect()),
                },
            },
            "mark" => Entry::Mark {
                name: text("name")?,
                at,
            },
            other => return Err(format!("unknown entry kind `{other}`")),
        })
    }
}

/// Appends entries to a history file, one `write` per line, so that lines written by several
/// tasks (or, with `O_APPEND`, several processes) never interleave, and a line written before
/// the process is killed is kept.
#[derive(Debug)]
pub struct Recorder {
    file: Mutex<File>,
}

impl Recorder {
    /// Opens `path` for appending, creating it if needed.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened.
    pub fn create(path: &Path) -> io::Result<Recorder> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Recorder {
            file: Mutex::new(file),
        })
    }

    /// Appends one entry as one line.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn record(&self, entry: &Entry) -> io::Result<()> {
        let line = format!("{entry}\n");
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(line.as_bytes())
    }
}

/// Every entry of a run, from one or more files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The entries, in the order read.
    pub entries: Vec<Entry>,
}

/// One critical section, put together from its `enter` and `leave` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// `worker/task/sequence`.
    pub holder: String,
    /// The lock key.
    pub key: String,
    /// When the body started.
    pub enter: u64,
    /// When the body ended, if it wrote a `leave` line.
    pub leave: Option<u64>,
    /// Whether the body ran to its end.
    pub done: bool,
    /// The fencing token, if any.
    pub fence: Option<u64>,
}

impl Section {
    /// The worker (process) part of the holder's name.
    pub fn worker(&self) -> &str {
        worker_of(&self.holder)
    }
}

fn worker_of(holder: &str) -> &str {
    holder.split('/').next().unwrap_or(holder)
}

/// One lock attempt, for the handover rule.
struct Attempt<'a> {
    holder: &'a str,
    key: &'a str,
    start: u64,
    /// Its `enter`, `fail` or `lost`; `None` while still waiting when the history ends.
    end: Option<u64>,
}

/// Two different holders inside the critical section of one key at the same time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The key.
    pub key: String,
    /// The holder that entered first.
    pub first: String,
    /// The holder that entered while `first` was still inside.
    pub second: String,
    /// When the overlap began (`second`'s entry).
    pub from: u64,
    /// How long both were inside.
    pub length: Duration,
}

/// How long a key stayed without a holder after its holder went down, while another worker
/// was waiting for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The worker that went down.
    pub worker: String,
    /// A key it held.
    pub key: String,
    /// When it went down.
    pub down_at: u64,
    /// When another worker next entered a section on `key`, if it did.
    pub next_entry: Option<u64>,
}

impl Handover {
    /// From the holder going down to the next holder's entry, or `None` if no one entered.
    /// Zero if the next holder was already in before the `down` line was written.
    pub fn gap(&self) -> Option<Duration> {
        self.next_entry
            .map(|next| Duration::from_nanos(next.saturating_sub(self.down_at)))
    }
}

/// What the checker found in a history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Critical sections entered.
    pub sections: usize,
    /// Sections whose body ran to its end.
    pub completed: usize,
    /// Every pair of different holders inside one key's section at once.
    pub overlaps: Vec<Overlap>,
    /// The longest of them (zero when there is none).
    pub longest_overlap: Duration,
    /// Locks the library declared lost.
    pub losses: usize,
    /// Lock attempts that failed otherwise.
    pub failures: usize,
    /// One per key held by each worker that went down, if another worker was waiting for
    /// that key then (a `try` not yet answered). Histories without `try` lines count every
    /// key.
    pub handovers: Vec<Handover>,
    /// Writes to the fenced register.
    pub writes: usize,
    /// Writes the fenced register refused, because a higher token had been written.
    pub rejected_writes: usize,
    /// Sections whose fencing token was not higher than that of a section that entered
    /// before them on the same key: the counter went backwards (for example, it was lost in
    /// a restart).
    pub fence_regressions: usize,
}

impl Report {
    /// The longest handover, `None` when there was none; `Some(Duration::MAX)` when a key
    /// was never taken again after its holder went down.
    pub fn longest_handover(&self) -> Option<Duration> {
        self.handovers
            .iter()
            .map(|h| h.gap().unwrap_or(Duration::MAX))
            .max()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sections ({} completed), {} overlaps (longest {:?}), {} losses, {} failures, \
             {} writes ({} rejected), {} fence regressions",
            self.sections,
            self.completed,
            self.overlaps.len(),
            self.longest_overlap,
            self.losses,
            self.failures,
            self.writes,
            self.rejected_writes,
            self.fence_regressions
        )?;
        if let Some(longest) = self.longest_handover() {
            write!(f, ", longest handover {}", fmt_gap(longest))?;
        }
        for o in self.overlaps.iter().take(5) {
            write!(
                f,
                "\n  overlap on {}: {} entered while {} was inside, for {:?}",
                o.key, o.second, o.first, o.length
            )?;
        }
        Ok(())
    }
}

fn fmt_gap(gap: Duration) -> String {
    if gap == Duration::MAX {
        "never".to_owned()
    } else {
        format!("{gap:?}")
    }
}

impl History {
    /// Parses the text of one history file. An unfinished last line (no newline, as a
    /// process killed mid-write could leave) is skipped.
    ///
    /// # Errors
    ///
    /// The first line that is not a valid entry.
    pub fn parse(text: &str) -> Result<History, ParseError> {
        let mut history = History::default();
        history.extend_from(text, 0)?;
        Ok(history)
    }

    fn extend_from(&mut self, text: &str, first_line: usize) -> Result<usize, ParseError> {
        let unfinished = !text.is_empty() && !text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() || (unfinished && i + 1 == lines.len()) {
                continue;
            }
            let entry = Entry::parse(line).map_err(|reason| ParseError {
                line: first_line + i + 1,
                text: (*line).to_owned(),
                reason,
            })?;
            self.entries.push(entry);
        }
        Ok(first_line + lines.len())
    }

    /// Reads and merges several history files. Missing files count as empty (a worker
    /// killed before it wrote anything).
    ///
    /// # Errors
    ///
    /// A file that cannot be read, or a line that cannot be parsed.
    pub fn read<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> io::Result<History> {
        let mut history = History::default();
        let mut line = 0;
        for path in paths {
            let text = match std::fs::read_to_string(path.as_ref()) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            line = history
                .extend_from(&text, line)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        Ok(history)
    }

    /// The critical sections, in order of entry.
    pub fn sections(&self) -> Vec<Section> {
        let mut sections: Vec<Section> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for entry in &self.entries {
            if let Entry::Enter {
                holder,
                key,
                at,
                fence,
            } = entry
            {
                index.insert(holder, sections.len());
                sections.push(Section {
                    holder: holder.clone(),
                    key: key.clone(),
                    enter: *at,
                    leave: None,
                    done: false,
                    fence: *fence,
                });
            }
        }
        for entry in &self.entries {
            if let Entry::Leave {
                holder, at, done, ..
            } = entry
                && let Some(&i) = index.get(holder.as_str())
            {
                sections[i].leave = Some(*at);
                sections[i].done = *done;
            }
        }
        sections.sort_by_key(|s| (s.enter, s.holder.clone()));
        sections
    }

    /// The `down` times of each worker, sorted.
    fn downs(&self) -> HashMap<&str, Vec<u64>> {
        let mut downs: HashMap<&str, Vec<u64>> = HashMap::new();
        for entry in &self.entries {
            if let Entry::Down { worker, at, .. } = entry {
                downs.entry(worker).or_default().push(*at);
            }
        }
        for times in downs.values_mut() {
            times.sort_unstable();
        }
        downs
    }

    /// The instant a section stopped running: its `leave`, else its worker's first `down` after
    /// it entered, else never (`u64::MAX`: still inside when the history ends).
    fn end_of(section: &Section, downs: &HashMap<&str, Vec<u64>>) -> u64 {
        section.leave.unwrap_or_else(|| {
            downs
                .get(section.worker())
                .and_then(|times| times.iter().find(|&&t| t >= section.enter))
                .copied()
                .unwrap_or(u64::MAX)
        })
    }

    /// Checks the history: overlaps between holders, losses, handovers, fencing.
    pub fn check(&self) -> Report {
        let sections = self.sections();
        let downs = self.downs();
        let mut report = Report {
            sections: sections.len(),
            completed: sections.iter().filter(|s| s.done).count(),
            ..Report::default()
        };

        let mut by_key: BTreeMap<&str, Vec<&Section>> = BTreeMap::new();
        for s in &sections {
            by_key.entry(&s.key).or_default().push(s);
        }
        for (key, list) in &by_key {
            // `list` is in order of entry. Keep the sections still inside at each entry.
            let mut inside: Vec<(&Section, u64)> = Vec::new();
            let mut highest_fence: Option<u64> = None;
            for s in list {
                let end = Self::end_of(s, &downs);
                inside.retain(|(_, other_end)| *other_end > s.enter);
                for (other, other_end) in &inside {
                    if other.holder != s.holder {
                        let length = Duration::from_nanos(end.min(*other_end) - s.enter);
                        report.longest_overlap = report.longest_overlap.max(length);
                        report.overlaps.push(Overlap {
                            key: (*key).to_owned(),
                            first: other.holder.clone(),
                            second: s.holder.clone(),
                            from: s.enter,
                            length,
                        });
                    }
                }
                inside.push((s, end));
                if let Some(fence) = s.fence {
                    if highest_fence.is_some_and(|h| fence <= h) {
                        report.fence_regressions += 1;
                    }
                    highest_fence = Some(highest_fence.map_or(fence, |h| h.max(fence)));
                }
            }
        }

        let attempts = self.attempts();
        let has_tries = !attempts.is_empty();
        let waited = |key: &str, worker: &str, at: u64| {
            !has_tries
                || attempts.iter().any(|a| {
                    a.key == key
                        && worker_of(a.holder) != worker
                        && a.start <= at
                        && a.end.is_none_or(|end| end > at)
                })
        };
        for entry in &self.entries {
            match entry {
                Entry::Lost { .. } => report.losses += 1,
                Entry::Fail { .. } => report.failures += 1,
                Entry::Write { accepted, .. } => {
                    report.writes += 1;
                    if !accepted {
                        report.rejected_writes += 1;
                    }
                }
                Entry::Down { worker, at, keys } => {
                    let held: Vec<String> = match keys {
                        Some(keys) => keys.clone(),
                        None => sections
                            .iter()
                            .filter(|s| {
                                s.worker() == worker
                                    && s.enter <= *at
                                    && Self::end_of(s, &downs) >= *at
                            })
                            .map(|s| s.key.clone())
                            .collect(),
                    };
                    for key in held.into_iter().filter(|k| waited(k, worker, *at)) {
                        // The worker's last entry on the key before going down; the next
                        // holder is the first other worker to enter after it.
                        let last_own = sections
                            .iter()
                            .filter(|s| s.worker() == worker && s.key == key && s.enter <= *at)
                            .map(|s| s.enter)
                            .max()
                            .unwrap_or(0);
                        let next_entry = sections
                            .iter()
                            .filter(|s| s.worker() != worker && s.key == key && s.enter > last_own)
                            .map(|s| s.enter)
                            .min();
                        report.handovers.push(Handover {
                            worker: worker.clone(),
                            key,
                            down_at: *at,
                            next_entry,
                        });
                    }
                }
                Entry::Try { .. }
                | Entry::Enter { .. }
                | Entry::Leave { .. }
                | Entry::Mark { .. } => {}
            }
        }
        report
    }

    /// Lock attempts: from a `try` to the same holder's `enter`, `fail` or `lost`.
    fn attempts(&self) -> Vec<Attempt<'_>> {
        let mut ends: HashMap<&str, u64> = HashMap::new();
        for entry in &self.entries {
            if let Entry::Enter { holder, at, .. }
            | Entry::Fail { holder, at, .. }
            | Entry::Lost { holder, at, .. } = entry
            {
                let end = ends.entry(holder).or_insert(*at);
                *end = (*end).min(*at);
            }
        }
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Try { holder, key, at } => Some(Attempt {
                    holder,
                    key,
                    start: *at,
                    end: ends.get(holder.as_str()).copied(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The time of the first `mark` named `name`, if any.
    pub fn mark(&self, name: &str) -> Option<u64> {
        self.entries.iter().find_map(|e| match e {
            Entry::Mark { name: n, at } if n == name => Some(*at),
            _ => None,
        })
    }

    /// The entries that happened in `[from, to)`, as a history of their own. Sections are
    /// kept whole when they entered in the window, so that a leave after `to` still counts.
    pub fn window(&self, from: u64, to: u64) -> History {
        let entered: std::collections::HashSet<&str> = self
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Enter { holder, at, .. } if (from..to).contains(at) => Some(holder.as_str()),
                _ => None,
            })
            .collect();
        let entries = self
            .entries
            .iter()
            .filter(|e| match e {
                Entry::Leave { holder, .. } => entered.contains(holder.as_str()),
                e => (from..to).contains(&e.at()),
            })
            .cloned()
            .collect();
        History { entries }
    }
}
