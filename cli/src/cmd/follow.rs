//! `cairn follow`: copies a live store (and its keyspaces) to a Redis or
//! Valkey server or Cluster: a snapshot first, then every change of the
//! store's change feed, in order, until stopped (or, with `--once`, until
//! caught up). It records where it is (a key in the target or a file), so
//! that a new run, also after a kill -9, continues where the last one was.
//!
//! What is guaranteed (docs/guide.md says the same for users):
//! - Every change sets a key's whole state (`SET k v [PXAT ms]` or `DEL k`;
//!   an expiry change is a `SET` with the value it carries), so applying a
//!   change twice changes nothing: a replay after a kill is harmless.
//! - On a single server the position is written in the same `MULTI`/`EXEC`
//!   as the changes it covers; a batch of the store is applied whole in one
//!   `MULTI`/`EXEC`. On a cluster (no transaction across slots) changes are
//!   applied key by key in order, then the position: a kill in between
//!   replays them.
//! - A snapshot copy is resumable without stale keys: before copying, the
//!   follower records `snapshot <S>`; a run that finds that state takes a
//!   new snapshot S2, first applies the store's changes S..S2 (so keys the
//!   half-copied snapshot wrote and the store deleted since are deleted),
//!   then copies S2 and follows from S2.
//! - When the store no longer has the changes after the recorded position
//!   (compaction removed them, or the store lost changes in a crash),
//!   the follower copies a new snapshot and then deletes the keys of its
//!   namespace in the target that the store does not have (SCAN), only
//!   where follow owns the keys: under a non-empty namespace or prefix
//!   (`--prefix`, a keyspace's `NAME:` on a cluster, `cairn:NAME:` of a
//!   module keyspace), or anywhere with `--owns-database`. Elsewhere (the
//!   root store, a keyspace in a database of its own) the database may
//!   hold another application's keys: it counts them and leaves them.

mod feed;
mod state;
mod target;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use cairn::backend::resp::{RespBackend, RespOptions};
use cairn::module_keys::{ModuleKeys, ModuleLayout};
use cairn::Db;

use feed::{is_changes_lost, Change, ChangeKind, Changes, FeedStart, Position};
use state::{PositionFile, State};
use target::{check_cluster_db, glob_escape, Op, Target, Url};

use crate::common::{
    check_keyspace, flat_keyspace, now_ms, numbered_database, open_read, unmapped_keyspaces,
};

/// Most operations in one transaction (a store batch may exceed it: a
/// batch is never split).
const MAX_OPS: usize = 1000;
/// Most bytes in one transaction, roughly (same exception).
const MAX_BYTES: usize = 4 << 20;
/// Keys the follower keeps for itself in the target; the clean-up of stale
/// keys never deletes them.
const OWN_KEYS: &[u8] = b"cairn-follow:";

/// Set by SIGINT or SIGTERM (or a failing feed): every feed finishes its
/// current step, records its position and stops.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // A second signal: stop now (the position of the last step is
        // recorded; the next run replays at most one step).
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches an atomic and calls _exit.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The settings of one `cairn follow`.
pub struct FollowArgs {
    /// The store directory.
    pub dir: PathBuf,
    /// `redis://…` of the server (or any node of the cluster).
    pub to: String,
    /// Treat the target as a Redis Cluster without asking it.
    pub cluster: bool,
    /// The follower's name, in its default position key.
    pub name: String,
    /// The position key (default `cairn-follow:<name>:position`).
    pub position_key: Option<String>,
    /// Record positions in this file instead of the target.
    pub position_file: Option<PathBuf>,
    /// Only keys starting with this.
    pub prefix: String,
    /// Stop once caught up.
    pub once: bool,
    /// How often to print the lag.
    pub lag_every: Duration,
    /// `--keyspace-db NAME=N|skip`.
    pub keyspace_db: Vec<(String, Option<u32>)>,
    /// `--modules NAME=KIND`.
    pub modules: Vec<(String, String)>,
    /// `--owns-database`: the clean-up after a full resync may delete
    /// keys of a store without a key prefix on the target.
    pub owns_database: bool,
}

/// The environment variable with the sessions' tag secret, for
/// `--modules NAME=sessions` (never a flag: `ps` shows flags).
const TAG_SECRET_ENV: &str = "CAIRN_SESSIONS_TAG_SECRET";

/// How a store's key names become target keys.
#[derive(Clone)]
pub struct KeyMap {
    /// On a cluster (database 0 only) a keyspace's keys get the prefix
    /// `NAME:`; on a server each store has its own database.
    cluster: bool,
    /// For a module keyspace (`--modules`): the module's key map and the
    /// backend namespace whose layout it writes.
    module: Option<Arc<ModuleMap>>,
}

/// The server keys of a module's keyspace.
struct ModuleMap {
    keys: ModuleKeys,
    backend: RespBackend,
}

impl KeyMap {
    /// The target key of the key `name` of the root store (`None`) or of a
    /// keyspace. Every key `follow` writes goes through here: raw (the
    /// name, under `NAME:` for a keyspace on a cluster), or for a module
    /// keyspace the key the RESP backend reads
    /// (`cairn::module_keys::ModuleKeys::server_key`).
    pub fn target_key(&self, keyspace: Option<&str>, name: &[u8]) -> Result<Vec<u8>> {
        if let Some(m) = &self.module {
            return m.keys.server_key(&m.backend, name).map_err(|e| {
                anyhow::Error::new(e).context(format!(
                    "key {:?} of keyspace {:?} has no place on the server",
                    crate::common::escape(name),
                    keyspace.unwrap_or("")
                ))
            });
        }
        let mut k = self.namespace(keyspace);
        k.extend_from_slice(name);
        Ok(k)
    }

    /// The prefix every target key of `keyspace` starts with (empty for
    /// the root store, and for a keyspace in a database of its own).
    fn namespace(&self, keyspace: Option<&str>) -> Vec<u8> {
        match (&self.module, keyspace) {
            (Some(m), _) => m.backend.prefix().to_vec(),
            (None, Some(ks)) if self.cluster => format!("{ks}:").into_bytes(),
            _ => Vec::new(),
        }
    }
}

/// One store to follow and where its keys go.
struct Plan {
    keyspace: Option<String>,
    db: Db,
    redis_db: i64,
    /// `--modules`: the module that wrote the keyspace.
    module: Option<ModuleLayout>,
}

/// Where positions are recorded.
#[derive(Clone)]
enum Where {
    /// In the target, under this key (through [`KeyMap::target_key`]).
    Key(String),
    /// In this file.
    File(Arc<PositionFile>),
}

/// Runs `cairn follow`; 0 when stopped by a signal or caught up (`--once`).
pub fn follow(args: FollowArgs) -> Result<u8> {
    install_signal_handlers();
    let url = Url::parse(&args.to)?;
    let cluster = args.cluster || url.is_cluster()?;
    if cluster {
        check_cluster_db(&url)?;
    }
    let root = open_read(&args.dir)?;
    let plans = plan(&root, &url, cluster, &args.keyspace_db, &args.modules)?;
    let backend =
        if plans.iter().any(|p| p.module.is_some()) {
            let to = url.with_password(&args.to)?;
            let opts = if cluster {
                RespOptions::cluster([to.as_str()])
            } else {
                RespOptions::new(&to)
            };
            Some(opts.open().map_err(|e| {
                anyhow!(e).context(format!("cannot open {} for --modules", url.addr))
            })?)
        } else {
            None
        };
    let _lock = lock_follower(&args, &url)?;
    let at = match &args.position_file {
        Some(path) => Where::File(Arc::new(PositionFile::open(path)?)),
        None => Where::Key(
            args.position_key
                .clone()
                .unwrap_or_else(|| format!("cairn-follow:{}:position", args.name)),
        ),
    };
    let mut maps = Vec::new();
    for p in &plans {
        let module = match (&p.module, &backend, &p.keyspace) {
            (Some(layout), Some(b), Some(ks)) => {
                let ns = b.namespace(ks);
                Some(Arc::new(ModuleMap {
                    keys: ModuleKeys::new(layout.clone(), ns.clone()),
                    backend: ns,
                }))
            }
            _ => None,
        };
        maps.push(KeyMap { cluster, module });
    }
    // What each store's namespace starts with, and its database: the
    // clean-up of one store leaves the namespaces of the others alone.
    let namespaces: Vec<(i64, Vec<u8>)> = plans
        .iter()
        .zip(&maps)
        .map(|(p, m)| (p.redis_db, m.namespace(p.keyspace.as_deref())))
        .collect();
    let mut followers = Vec::new();
    for (i, (p, keys)) in plans.into_iter().zip(maps).enumerate() {
        let foreign = namespaces
            .iter()
            .enumerate()
            .filter(|&(j, (db, ns))| j != i && *db == p.redis_db && !ns.is_empty())
            .map(|(_, (_, ns))| ns.clone())
            .collect();
        let target = if cluster {
            Target::cluster(&url)?
        } else {
            Target::single(&url, p.redis_db)?
        };
        let store = p
            .keyspace
            .as_ref()
            .map_or("root".to_string(), |k| format!("keyspace:{k}"));
        followers.push(Follower {
            label: p
                .keyspace
                .as_ref()
                .map_or("root store".to_string(), |k| format!("keyspace {k:?}")),
            store,
            foreign,
            prefix: if p.module.is_some() {
                Vec::new()
            } else {
                args.prefix.as_bytes().to_vec()
            },
            keyspace: p.keyspace,
            db: p.db,
            target,
            keys,
            at: at.clone(),
            once: args.once,
            lag_every: args.lag_every,
            owns_database: args.owns_database,
            applied: None,
        });
    }
    run_all(followers)
}

/// Takes an exclusive lock (`flock`, released when the process ends, also
/// by kill -9) for this store, target and position, so that a second
/// follower of the same ones on this machine fails instead of writing an
/// older state over the first one's newer one.
///
/// The lock file is `cairn-follow-<hash>.lock` in the temporary directory
/// (`$TMPDIR`, else `/tmp`): the same for every run of the user whatever
/// its environment (a shell, cron, a service), since `$XDG_RUNTIME_DIR`
/// is set in some and not others and two runs must find the same lock.
/// There another user could plant a file or a symlink under the
/// predictable name: it is opened without following a symlink
/// (`O_NOFOLLOW`), mode 0600, and refused unless it is a regular file of
/// one link owned by this user (a planted one stops follow with a message
/// naming it; it never writes through it).
fn lock_follower(args: &FollowArgs, url: &Url) -> Result<std::fs::File> {
    use std::hash::{Hash, Hasher};
    use std::os::fd::AsRawFd;
    let dir = std::fs::canonicalize(&args.dir).unwrap_or_else(|_| args.dir.clone());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&dir, &url.addr, url.db(), &args.name, &args.position_key).hash(&mut h);
    args.position_file
        .as_ref()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .hash(&mut h);
    let path = std::env::temp_dir().join(format!("cairn-follow-{:016x}.lock", h.finish()));
    let file = open_lock_file(&path)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!(
            "another cairn follow of {} to {} with the same position is running (lock {}); \
             two would write over each other",
            args.dir.display(),
            url.addr,
            path.display()
        );
    }
    Ok(file)
}

/// Opens (creating, 0600) the lock file `path`: never through a symlink,
/// and only a regular file of one link that this user owns.
fn open_lock_file(path: &std::path::Path) -> Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let what = || format!("the lock file {}", path.display());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        // O_NONBLOCK: a FIFO planted at the name must not block the open.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            let why = if e.raw_os_error() == Some(libc::ELOOP) {
                "it is a symbolic link (follow never writes one: someone else may have \
                 planted it; remove it)"
                    .to_string()
            } else {
                e.to_string()
            };
            anyhow!("cannot open {}: {why}", what())
        })?;
    let meta = file
        .metadata()
        .map_err(|e| anyhow!(e).context(format!("cannot read {}", what())))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        bail!(
            "{} is not owned by this user (uid {}, owner {}): someone else may have made it; \
             remove it, or set TMPDIR to a directory of your own",
            what(),
            me,
            meta.uid()
        );
    }
    if !meta.is_file() || meta.nlink() != 1 {
        bail!(
            "{} is not a plain file of its own (a directory, a device or a hard link): \
             remove it",
            what()
        );
    }
    Ok(file)
}

/// Runs each follower on a thread of its own; the first error, if any.
fn run_all(followers: Vec<Follower>) -> Result<u8> {
    let errors: Vec<anyhow::Error> = std::thread::scope(|s| {
        let handles: Vec<_> = followers
            .into_iter()
            .map(|mut f| {
                s.spawn(move || {
                    let r = f.run();
                    if r.is_err() {
                        STOP.store(true, Ordering::SeqCst);
                    }
                    r.map_err(|e| e.context(format!("following the {}", f.label)))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(r) => r.err(),
                Err(_) => Some(anyhow!("a follower thread panicked")),
            })
            .collect()
    });
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

/// The stores to follow and their databases, by the rule of `cairn export
/// --format resp`: the root store to the URL's database (0 when it names
/// none), each keyspace to its `--keyspace-db` entry, else to the number
/// that is its name; on a cluster every keyspace to database 0 under the
/// key prefix `NAME:`.
fn plan(
    root: &Db,
    url: &Url,
    cluster: bool,
    keyspace_db: &[(String, Option<u32>)],
    modules: &[(String, String)],
) -> Result<Vec<Plan>> {
    let names = root.keyspace_names()?;
    let modules = module_layouts(root, &names, modules)?;
    let mut map = BTreeMap::new();
    for (name, db) in keyspace_db {
        check_keyspace(root, &names, name, "--keyspace-db")?;
        if modules.contains_key(name) {
            bail!("keyspace {name:?} is in --modules and in --keyspace-db: give it one of them");
        }
        if cluster && db.is_some() {
            bail!(
                "--keyspace-db {name}=N: a Redis Cluster has only database 0; there keyspace \
                 {name:?} goes under the key prefix \"{name}:\" (NAME=skip leaves it out)"
            );
        }
        if map.insert(name.clone(), *db).is_some() {
            bail!("--keyspace-db names keyspace {name:?} twice");
        }
    }
    let mut plans = vec![Plan {
        keyspace: None,
        db: root.clone(),
        redis_db: url.db(),
        module: None,
    }];
    let mut unmapped = Vec::new();
    for name in &names {
        let module = modules.get(name).cloned();
        let number = match map.get(name) {
            _ if module.is_some() => url.db(),
            Some(None) => continue,
            Some(Some(n)) => i64::from(*n),
            None if cluster => 0,
            None => match numbered_database(name) {
                Some(n) => i64::from(n),
                None => {
                    unmapped.push(format!("{name:?}"));
                    continue;
                }
            },
        };
        let db = flat_keyspace(root, name, "follow")?;
        plans.push(Plan {
            keyspace: Some(name.clone()),
            db,
            redis_db: number,
            module,
        });
    }
    if !unmapped.is_empty() {
        return Err(unmapped_keyspaces(&unmapped));
    }
    if !cluster {
        let mut by_db: BTreeMap<i64, String> = BTreeMap::new();
        for p in plans.iter().filter(|p| p.module.is_none()) {
            let label = p
                .keyspace
                .as_ref()
                .map_or("the root store".to_string(), |k| format!("keyspace {k:?}"));
            if let Some(other) = by_db.insert(p.redis_db, label.clone()) {
                bail!(
                    "{other} and {label} would both go to Redis database {}, mixing their keys; \
                     give one of them another database with --keyspace-db NAME=N (or NAME=skip)",
                    p.redis_db
                );
            }
        }
    }
    Ok(plans)
}

/// The layouts of `--modules NAME=KIND`; a sessions keyspace takes its
/// tag secret from [`TAG_SECRET_ENV`] when it is set.
fn module_layouts(
    root: &Db,
    names: &[String],
    modules: &[(String, String)],
) -> Result<BTreeMap<String, ModuleLayout>> {
    let mut out = BTreeMap::new();
    for (name, kind) in modules {
        check_keyspace(root, names, name, "--modules")?;
        let mut layout = ModuleLayout::parse(kind).map_err(|e| anyhow!(e))?;
        if let ModuleLayout::Sessions { tag_secret } = &mut layout {
            *tag_secret = std::env::var_os(TAG_SECRET_ENV)
                .filter(|v| !v.is_empty())
                .map(|v| v.into_encoded_bytes());
        }
        if out.insert(name.clone(), layout).is_some() {
            bail!("--modules names keyspace {name:?} twice");
        }
    }
    Ok(out)
}

/// Follows one store (the root or a keyspace) into its target.
struct Follower {
    /// "root store" or "keyspace \"name\"", for messages.
    label: String,
    /// "root" or "keyspace:<name>", in the position file.
    store: String,
    keyspace: Option<String>,
    /// Target-key prefixes of the other stores (the root store's
    /// namespace on a cluster excludes its keyspaces').
    foreign: Vec<Vec<u8>>,
    db: Db,
    target: Target,
    keys: KeyMap,
    prefix: Vec<u8>,
    at: Where,
    once: bool,
    lag_every: Duration,
    /// `--owns-database`: the clean-up may delete outside a namespace.
    owns_database: bool,
    /// The last position recorded as applied ("at").
    applied: Option<Position>,
}

/// Whether `e` is damage the feed found in the log.
fn feed_damage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<cairn::Error>(),
            Some(cairn::Error::Corruption { .. })
        )
    })
}

/// Whether `e` is the feed's "the changes after this position are gone".
fn lost(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<cairn::Error>()
            .is_some_and(is_changes_lost)
    })
}

impl Follower {
    fn run(&mut self) -> Result<()> {
        let mut changes = self.start()?;
        // (position, how many times in a row the feed failed there)
        let mut rereads: (Option<Position>, u32) = (None, 0);
        loop {
            let Some(c) = changes else {
                eprintln!(
                    "cairn follow: {}: stopped during the snapshot copy; the next run continues it",
                    self.label
                );
                return Ok(());
            };
            match self.stream(c) {
                Err(e) if lost(&e) => {
                    eprintln!(
                        "cairn follow: {}: {e:#}; copying a new snapshot (full resync)",
                        self.label
                    );
                    changes = self.full_sync(true)?;
                }
                Err(e) if feed_damage(&e) && self.applied.is_some() => {
                    // A feed on another process's files can misread a
                    // record the writer is still writing; a new feed from
                    // the last applied position reads it again. Damage
                    // that is really there fails the same way again.
                    let at = self.applied;
                    rereads = (at, if rereads.0 == at { rereads.1 + 1 } else { 1 });
                    if rereads.1 > 3 {
                        return Err(e);
                    }
                    let at = at.unwrap_or(Position::START);
                    eprintln!(
                        "cairn follow: {}: {e:#}; reading the log again after {at}",
                        self.label
                    );
                    std::thread::sleep(Duration::from_millis(100));
                    changes = Some(self.db.changes(FeedStart::After(at))?);
                }
                r => return r,
            }
        }
    }

    /// The feed to stream from, after whatever copying the recorded state
    /// calls for; `None` when stopped during a snapshot copy.
    fn start(&mut self) -> Result<Option<Changes>> {
        match self.load()? {
            None => {
                if !self.namespace_empty()? {
                    let resync = if self.owns_cleanup() {
                        "a full resync deletes those the store does not have"
                    } else {
                        "also after a full resync (--owns-database lets one delete them)"
                    };
                    eprintln!(
                        "cairn follow: {}: warning: {} already holds keys where the store's keys \
                         go; follow overwrites the store's keys and leaves the others, {resync}",
                        self.label, self.target.label
                    );
                }
                self.full_sync(false)
            }
            Some(State::At(p)) => match self.db.changes(FeedStart::After(p)) {
                Ok(c) => {
                    self.applied = Some(p);
                    eprintln!("cairn follow: {}: continuing after {p}", self.label);
                    Ok(Some(c))
                }
                Err(e) if is_changes_lost(&e) => {
                    eprintln!(
                        "cairn follow: {}: {e}; copying a new snapshot (full resync)",
                        self.label
                    );
                    self.full_sync(true)
                }
                Err(e) => Err(e.into()),
            },
            Some(State::Snapshot { at, clean }) => self.resume_snapshot(at, clean),
        }
    }

    /// A new snapshot handle on the store: the handle of the start shows
    /// the store as it was then, and the changes after that may be gone.
    fn fresh(&self) -> Result<Db> {
        open_read(self.db.path())
    }

    /// Copies a new snapshot (then, with `clean`, deletes the target keys
    /// the store does not have); returns the changes after it.
    fn full_sync(&mut self, clean: bool) -> Result<Option<Changes>> {
        let (snap, changes) = self.fresh()?.snapshot_then_changes()?;
        self.copy(&snap, changes, clean)
    }

    /// A snapshot copy at `at` was interrupted: bring the keys it wrote up
    /// to a new snapshot's position, then copy that one.
    fn resume_snapshot(&mut self, at: Position, mut clean: bool) -> Result<Option<Changes>> {
        eprintln!(
            "cairn follow: {}: the copy of the snapshot at {at} was interrupted; copying a new one",
            self.label
        );
        let old = match self.db.changes(FeedStart::After(at)) {
            Ok(c) => Some(c),
            Err(e) if is_changes_lost(&e) => {
                clean = true;
                None
            }
            Err(e) => return Err(e.into()),
        };
        let (snap, changes) = self.fresh()?.snapshot_then_changes()?;
        if let Some(old) = old {
            match self.catch_up_to(old, changes.resume_position()) {
                Ok(true) => {}
                // The changes in between cannot be read: delete what the
                // store does not have once the new snapshot is copied.
                Ok(false) => clean = true,
                Err(e) if lost(&e) || feed_damage(&e) => clean = true,
                Err(e) => return Err(e),
            }
        }
        self.copy(&snap, changes, clean)
    }

    /// Applies the changes of `old` up to `end` (no position recorded: the
    /// state stays "snapshot"); false when they did not come within 10 s
    /// (they are all in the log already).
    fn catch_up_to(&mut self, mut old: Changes, end: Position) -> Result<bool> {
        let mut ops = Vec::new();
        while old.resume_position().seq() < end.seq() {
            let Some(c) = old.next_timeout(Duration::from_secs(10))? else {
                return Ok(false);
            };
            self.take(c, &mut old, &mut ops)?;
            if ops.len() >= MAX_OPS {
                self.target.apply(&ops, None)?;
                ops.clear();
            }
        }
        self.target.apply(&ops, None)?;
        Ok(true)
    }

    /// Records "snapshot", copies `snap`'s keys, cleans if asked, records
    /// "at"; `None` when stopped during the copy.
    fn copy(&mut self, snap: &Db, changes: Changes, clean: bool) -> Result<Option<Changes>> {
        let at = changes.resume_position();
        self.record(State::Snapshot { at, clean }, &[])?;
        eprintln!(
            "cairn follow: {}: copying the snapshot at {at} to {}",
            self.label, self.target.label
        );
        let started = Instant::now();
        let mut keys = Vec::new();
        snap.for_each_key(&self.prefix, |k, _| keys.push(k.to_vec()))?;
        let mut last_print = Instant::now();
        let mut copied = 0usize;
        for chunk in keys.chunks(MAX_OPS) {
            if stopping() {
                return Ok(None);
            }
            let now = now_ms();
            let mut ops = Vec::with_capacity(chunk.len());
            for k in chunk {
                if let Some((value, exp)) = snap.get_with_expiry(k)? {
                    if exp.is_none_or(|ms| ms > now) {
                        let key = self.keys.target_key(self.keyspace.as_deref(), k)?;
                        ops.push(Op::Set {
                            key,
                            value,
                            pxat: exp,
                        });
                    }
                }
            }
            self.target.apply(&ops, None)?;
            copied += ops.len();
            if last_print.elapsed() >= self.lag_every {
                last_print = Instant::now();
                eprintln!(
                    "cairn follow: {}: snapshot: {copied} of {} keys copied",
                    self.label,
                    keys.len()
                );
            }
        }
        if clean {
            self.remove_stale(snap)?;
        }
        self.record(State::At(at), &[])?;
        eprintln!(
            "cairn follow: {}: snapshot copied: {copied} keys in {:.1} s",
            self.label,
            started.elapsed().as_secs_f64()
        );
        Ok(Some(changes))
    }

    /// The glob of the target keys where this store's keys (under the
    /// prefix) go.
    fn pattern(&self) -> Vec<u8> {
        let mut ns = self.keys.namespace(self.keyspace.as_deref());
        ns.extend_from_slice(&self.prefix);
        let mut p = glob_escape(&ns);
        p.push(b'*');
        p
    }

    /// Whether a target key found in this store's namespace is someone
    /// else's: the follower's own keys, another store's namespace, or a
    /// key the module's layout keeps for itself on the target (the
    /// sessions' `tag-salt`: the store never holds it, and without it the
    /// module there makes a new salt and misses every user's index).
    fn not_ours(&self) -> Result<impl Fn(&[u8]) -> bool> {
        let (foreign, own) = (self.foreign.clone(), self.own_key());
        let ns = self.keys.namespace(self.keyspace.as_deref());
        let mut reserved = Vec::new();
        if let Some(m) = &self.keys.module {
            for name in m.keys.reserved_names() {
                reserved.push(self.keys.target_key(self.keyspace.as_deref(), &name)?);
            }
        }
        Ok(move |k: &[u8]| {
            k.strip_prefix(&ns[..]).unwrap_or(k).starts_with(OWN_KEYS)
                || own.as_deref() == Some(k)
                || foreign.iter().any(|f| k.starts_with(f))
                || reserved.iter().any(|r| r == k)
        })
    }

    /// Whether the target holds no key where this store's keys go.
    fn namespace_empty(&mut self) -> Result<bool> {
        let pattern = self.pattern();
        let not_ours = self.not_ours()?;
        let mut empty = true;
        self.target.for_each_key(&pattern, &mut |keys| {
            empty = keys.iter().all(|k| not_ours(k));
            Ok(empty)
        })?;
        Ok(empty)
    }

    /// Whether the clean-up after a full resync may delete the target keys
    /// the store lacks: only within a namespace or prefix of the store's
    /// own, or anywhere with `--owns-database`. A store without either
    /// shares its database with whatever else is there.
    fn owns_cleanup(&self) -> bool {
        self.owns_database
            || !self.prefix.is_empty()
            || !self.keys.namespace(self.keyspace.as_deref()).is_empty()
    }

    /// Deletes the target keys of this store's namespace that `snap` does
    /// not have (after a full resync: the changes that deleted them are
    /// gone). It compares target keys, so it works for any key mapping.
    /// Where follow does not own the keys ([`Follower::owns_cleanup`]) it
    /// only counts them.
    fn remove_stale(&mut self, snap: &Db) -> Result<()> {
        let mut names = Vec::new();
        snap.for_each_key(&self.prefix, |k, _| names.push(k.to_vec()))?;
        let mut expected = std::collections::HashSet::with_capacity(names.len());
        for name in names {
            expected.insert(self.keys.target_key(self.keyspace.as_deref(), &name)?);
        }
        let pattern = self.pattern();
        let not_ours = self.not_ours()?;
        let mut stale = Vec::new();
        self.target.for_each_key(&pattern, &mut |found| {
            stale.extend(
                found
                    .iter()
                    .filter(|k| !not_ours(k) && !expected.contains(*k))
                    .cloned(),
            );
            Ok(true)
        })?;
        if !self.owns_cleanup() {
            eprintln!(
                "cairn follow: {}: left {} keys in {} that the store does not have: they may be \
                 another application's (--owns-database says the database is follow's alone, \
                 and a full resync then deletes them)",
                self.label,
                stale.len(),
                self.target.label
            );
            return Ok(());
        }
        for chunk in stale.chunks(MAX_OPS) {
            self.target.delete(chunk)?;
        }
        eprintln!(
            "cairn follow: {}: removed {} keys the store no longer has",
            self.label,
            stale.len()
        );
        Ok(())
    }

    /// The position key in the target, in position-key mode: under the
    /// store's raw namespace (a module keyspace's gets `:<keyspace>`
    /// appended instead, outside the module's layout).
    fn own_key(&self) -> Option<Vec<u8>> {
        let Where::Key(k) = &self.at else {
            return None;
        };
        Some(match (&self.keys.module, &self.keyspace) {
            (Some(_), Some(ks)) => format!("{k}:{ks}").into_bytes(),
            _ => {
                let mut key = self.keys.namespace(self.keyspace.as_deref());
                key.extend_from_slice(k.as_bytes());
                key
            }
        })
    }

    /// The recorded state, if any.
    fn load(&mut self) -> Result<Option<State>> {
        match self.at.clone() {
            Where::File(f) => Ok(f.get(&self.store)),
            Where::Key(_) => {
                let key = self.own_key().unwrap_or_default();
                match self.target.get(&key)? {
                    None => Ok(None),
                    Some(v) => {
                        let what = format!(
                            "the position key {:?} in {}",
                            String::from_utf8_lossy(&key),
                            self.target.label
                        );
                        State::parse(&String::from_utf8_lossy(&v), &what).map(Some)
                    }
                }
            }
        }
    }

    /// Applies `ops` and records `state`: in the same transaction (a key
    /// on a single server), or after them (a cluster, a file).
    fn record(&mut self, state: State, ops: &[Op]) -> Result<()> {
        self.applied = None;
        self.write_state(state, ops)?;
        if let State::At(p) = state {
            self.applied = Some(p);
        }
        Ok(())
    }

    fn write_state(&mut self, state: State, ops: &[Op]) -> Result<()> {
        match self.at.clone() {
            Where::Key(_) => {
                let key = self.own_key().unwrap_or_default();
                self.target.apply(ops, Some((&key, &state.text())))
            }
            Where::File(f) => {
                self.target.apply(ops, None)?;
                f.set(&self.store, state)
            }
        }
    }

    /// Adds what `c` does to `ops`; a batch's begin takes the whole batch
    /// (its changes are all in the log already).
    fn take(&self, c: Change, changes: &mut Changes, ops: &mut Vec<Op>) -> Result<()> {
        if let ChangeKind::BatchBegin { .. } = c.kind {
            loop {
                let Some(next) = changes.next() else {
                    bail!("the feed ended inside a batch");
                };
                let next = next?;
                if let ChangeKind::BatchEnd { .. } = next.kind {
                    return Ok(());
                }
                self.convert(next, ops)?;
            }
        }
        self.convert(c, ops)
    }

    /// The operation of one change (none for keys outside the prefix).
    fn convert(&self, c: Change, ops: &mut Vec<Op>) -> Result<()> {
        let (key, state) = match c.kind {
            ChangeKind::Put {
                key,
                value,
                expires_at_ms,
            }
            | ChangeKind::ExpiryChanged {
                key,
                value,
                expires_at_ms,
            } => (key, Some((value, expires_at_ms))),
            ChangeKind::Delete { key } | ChangeKind::Expired { key } => (key, None),
            ChangeKind::BatchBegin { .. } | ChangeKind::BatchEnd { .. } => {
                bail!("change {}: a batch boundary out of place", c.seq)
            }
            #[allow(unreachable_patterns)]
            _ => bail!(
                "change {}: a kind of change this cairn follow does not know; use the cairn \
                 binary that matches the store's version",
                c.seq
            ),
        };
        if !key.starts_with(&self.prefix) {
            return Ok(());
        }
        let key = self.keys.target_key(self.keyspace.as_deref(), &key)?;
        ops.push(match state {
            Some((value, pxat)) if pxat.is_none_or(|ms| ms > now_ms()) => {
                Op::Set { key, value, pxat }
            }
            _ => Op::Del { key },
        });
        Ok(())
    }

    /// Applies changes as they come, a transaction at a time, until
    /// stopped (or caught up, with `--once`).
    fn stream(&mut self, mut changes: Changes) -> Result<()> {
        let mut clock = LagClock::default();
        let mut last_print = Instant::now();
        let mut last_observed = Instant::now();
        let mut applied = 0u64;
        // --once: the end of the log now; later changes are for later runs
        // (under a steady writer the feed is never empty).
        let end = if self.once {
            changes.lag()?.newest_seq
        } else {
            u64::MAX
        };
        loop {
            if stopping() || changes.resume_position().seq() >= end {
                break;
            }
            let Some(first) = changes.next_timeout(Duration::from_millis(200))? else {
                let behind = changes.lag()?.seqs;
                clock.observe(changes.resume_position().seq(), behind);
                if self.once && behind == 0 {
                    break;
                }
                if last_print.elapsed() >= self.lag_every {
                    last_print = Instant::now();
                    self.print_lag(&mut changes, &clock)?;
                }
                continue;
            };
            let mut ops = Vec::new();
            let mut n = 1u64;
            self.take(first, &mut changes, &mut ops)?;
            let mut bytes: usize = ops.iter().map(Op::size).sum();
            while ops.len() < MAX_OPS && bytes < MAX_BYTES && changes.resume_position().seq() < end
            {
                let Some(c) = changes.try_next()? else { break };
                let before = ops.len();
                n += 1;
                self.take(c, &mut changes, &mut ops)?;
                bytes += ops[before..].iter().map(Op::size).sum::<usize>();
            }
            self.record(State::At(changes.resume_position()), &ops)?;
            applied += n;
            // The lag reads the log ahead on a snapshot handle: not after
            // every transaction.
            if last_observed.elapsed() >= Duration::from_millis(100) {
                last_observed = Instant::now();
                clock.observe(changes.resume_position().seq(), changes.lag()?.seqs);
            }
            if last_print.elapsed() >= self.lag_every {
                last_print = Instant::now();
                self.print_lag(&mut changes, &clock)?;
            }
        }
        let how = if stopping() { "stopped" } else { "caught up" };
        eprintln!(
            "cairn follow: {}: {how} at {} ({applied} changes applied by this run)",
            self.label,
            changes.resume_position()
        );
        Ok(())
    }

    fn print_lag(&self, changes: &mut Changes, clock: &LagClock) -> Result<()> {
        let lag = changes.lag()?;
        eprintln!(
            "cairn follow: {}: at {}; behind: {} changes, {:.1} s",
            self.label,
            changes.resume_position(),
            lag.seqs,
            clock.behind().as_secs_f64()
        );
        Ok(())
    }
}

/// Seconds behind: how long ago the follower first saw (in the feed's
/// lag) the oldest change it has not applied yet.
#[derive(Default)]
struct LagClock {
    /// (when, the newest sequence number written then), oldest first.
    seen: VecDeque<(Instant, u64)>,
}

impl LagClock {
    /// At `applied`, with `behind` changes written and not yet applied.
    fn observe(&mut self, applied: u64, behind: u64) {
        while self.seen.front().is_some_and(|&(_, end)| end <= applied) {
            self.seen.pop_front();
        }
        let end = applied.saturating_add(behind);
        let newer = self.seen.back().is_none_or(|&(_, e)| e < end);
        if behind > 0 && newer && self.seen.len() < 4096 {
            self.seen.push_back((Instant::now(), end));
        }
    }

    /// How long the oldest unapplied change has been known.
    fn behind(&self) -> Duration {
        self.seen
            .front()
            .map_or(Duration::ZERO, |(t, _)| t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyMap, LagClock};
    use std::time::Duration;

    #[test]
    fn keyspaces_get_a_prefix_on_a_cluster_only() {
        let server = KeyMap {
            cluster: false,
            module: None,
        };
        let cluster = KeyMap {
            cluster: true,
            module: None,
        };
        let key = |m: &KeyMap, ks, k| m.target_key(ks, k).expect("key");
        assert_eq!(key(&server, Some("s"), b"k"), b"k");
        assert_eq!(key(&server, None, b"k"), b"k");
        assert_eq!(key(&cluster, Some("s"), b"k"), b"s:k");
        assert_eq!(key(&cluster, None, b"k"), b"k");
        assert_eq!(cluster.namespace(Some("s")), b"s:");
        assert_eq!(server.namespace(Some("s")), b"");
    }

    #[test]
    fn seconds_behind_start_when_the_oldest_unapplied_change_was_seen() {
        let mut c = LagClock::default();
        c.observe(10, 0);
        assert_eq!(c.behind(), Duration::ZERO);
        c.observe(10, 5); // 11..=15 seen now
        std::thread::sleep(Duration::from_millis(30));
        c.observe(12, 8); // 13..=20: 13 was seen 30 ms ago
        assert!(c.behind() >= Duration::from_millis(30));
        c.observe(15, 5); // 16..=20 were first seen at the second call
        assert!(c.behind() < Duration::from_millis(30));
        c.observe(20, 0);
        assert_eq!(c.behind(), Duration::ZERO);
    }
}
