//! What `cairn follow` records about each store it follows, and where: a
//! key in the target, or a file.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};

use super::feed::Position;

/// Where a follower is with one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Copying the snapshot at this position; `clean`: keys the store does
    /// not have must be removed from the target before following.
    Snapshot {
        /// The snapshot's position.
        at: Position,
        /// Whether stale keys must be removed afterwards.
        clean: bool,
    },
    /// The target holds the store as of this position (a batch end).
    At(Position),
}

impl State {
    /// `at <pos>`, `snapshot <pos>` or `snapshot <pos> clean`.
    pub fn text(&self) -> String {
        match self {
            State::At(p) => format!("at {p}"),
            State::Snapshot { at, clean: false } => format!("snapshot {at}"),
            State::Snapshot { at, clean: true } => format!("snapshot {at} clean"),
        }
    }

    /// Parses [`State::text`]; `what` names where it came from.
    pub fn parse(s: &str, what: &str) -> Result<State> {
        let bad = || {
            anyhow!(
                "{what} holds {s:?}, which is not a position of cairn follow \
                 (\"at <seq>:<check>\" or \"snapshot <seq>:<check>\")"
            )
        };
        let words: Vec<&str> = s.split_whitespace().collect();
        let pos = |w: &str| w.parse::<Position>().map_err(|_| bad());
        match words[..] {
            ["at", p] => Ok(State::At(pos(p)?)),
            ["snapshot", p] => Ok(State::Snapshot {
                at: pos(p)?,
                clean: false,
            }),
            ["snapshot", p, "clean"] => Ok(State::Snapshot {
                at: pos(p)?,
                clean: true,
            }),
            _ => Err(bad()),
        }
    }
}

/// A file of states, one line per store: `<store> <state>`, where
/// `<store>` is `root` or `keyspace:<name>`. Rewritten whole and
/// atomically (a temporary file, fsync, rename, fsync of the directory),
/// mode 0600.
pub struct PositionFile {
    path: PathBuf,
    states: Mutex<BTreeMap<String, State>>,
}

impl PositionFile {
    /// Reads `path` (a missing file: no states yet).
    pub fn open(path: &Path) -> Result<PositionFile> {
        let mut states = BTreeMap::new();
        match fs::read_to_string(path) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let what = format!("line {} of {}", i + 1, path.display());
                    let (store, state) = line
                        .split_once(' ')
                        .ok_or_else(|| anyhow!("{what}: expected \"<store> <state>\""))?;
                    states.insert(store.to_string(), State::parse(state, &what)?);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context(format!("cannot read {}", path.display())),
        }
        if path.file_name().is_none() {
            bail!("--position-file {}: not a file name", path.display());
        }
        Ok(PositionFile {
            path: path.to_path_buf(),
            states: Mutex::new(states),
        })
    }

    /// The state of `store`, if recorded.
    pub fn get(&self, store: &str) -> Option<State> {
        self.lock().get(store).copied()
    }

    /// Records `state` for `store`, durably.
    pub fn set(&self, store: &str, state: State) -> Result<()> {
        let mut states = self.lock();
        states.insert(store.to_string(), state);
        let mut text = String::from("# cairn follow: where each store is (do not edit)\n");
        for (k, v) in states.iter() {
            text.push_str(&format!("{k} {}\n", v.text()));
        }
        write_atomically(&self.path, text.as_bytes())
            .with_context(|| format!("cannot write the position file {}", self.path.display()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, State>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Replaces `path` with `data`: a temporary file beside it (0600), fsync,
/// rename, fsync of the directory.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::{PositionFile, State};
    use std::os::unix::fs::PermissionsExt;

    fn pos(s: &str) -> super::Position {
        s.parse().expect("position")
    }

    #[test]
    fn states_round_trip_as_text() {
        for s in [
            State::At(pos("12:0000abcd")),
            State::Snapshot {
                at: pos("7:deadbeef"),
                clean: false,
            },
            State::Snapshot {
                at: pos("0:00000000"),
                clean: true,
            },
        ] {
            assert_eq!(State::parse(&s.text(), "x").expect("parse"), s);
        }
        for bad in [
            "",
            "at",
            "at x",
            "later 1:00000000",
            "snapshot 1:00000000 dirty",
        ] {
            let e = State::parse(bad, "key k").expect_err(bad).to_string();
            assert!(e.contains("key k"), "{e}");
        }
    }

    #[test]
    fn the_position_file_is_private_and_reread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pos");
        let f = PositionFile::open(&path).expect("open");
        assert_eq!(f.get("root"), None);
        f.set("root", State::At(pos("5:00000001"))).expect("set");
        f.set("keyspace:1", State::At(pos("9:00000002")))
            .expect("set");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = PositionFile::open(&path).expect("reopen");
        assert_eq!(again.get("root"), Some(State::At(pos("5:00000001"))));
        assert_eq!(again.get("keyspace:1"), Some(State::At(pos("9:00000002"))));
    }
}
