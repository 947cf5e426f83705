//! Session ids are not stored: the data files hold a hash of each id, so
//! a copy of them (a leaked backup, a stolen disk) cannot be used to take
//! over a session. Sessions written by older versions, which stored the
//! verifier as it is (`tests/fixtures/sessions-v1`), still validate and are
//! rewritten with the hash.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn::backend::{Backend, Key, Snapshot, Store, Update};
use cairn::session::Sessions;
use cairn::{Db, ManualClock, Options, Result, SyncPolicy};

const HOUR: Duration = Duration::from_secs(3600);

/// The fixture's clock: the sessions in it were created at this time, with
/// a TTL of one day.
const FIXTURE_MS: u64 = 1_700_000_000_000;

/// Decodes unpadded base64url (the ids' encoding), written out here so
/// that the test does not lean on the code under test.
fn b64url_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        acc = (acc << 6) | val(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every encoding of an id's secret part that could sit in a file: the
/// verifier's 12 bytes, the id's 24 bytes, the id's text and the
/// verifier's text (its last 16 characters), and hex of both.
fn secret_forms(id: &str) -> Vec<(String, Vec<u8>)> {
    let raw = b64url_decode(id);
    assert_eq!(raw.len(), 24, "an id is 24 bytes");
    let verifier = raw[12..].to_vec();
    vec![
        ("verifier bytes".into(), verifier.clone()),
        ("id bytes".into(), raw.clone()),
        ("id text".into(), id.as_bytes().to_vec()),
        ("verifier text".into(), id.as_bytes()[16..].to_vec()),
        ("verifier hex".into(), hex(&verifier).into_bytes()),
        (
            "verifier HEX".into(),
            hex(&verifier).to_uppercase().into_bytes(),
        ),
        ("id hex".into(), hex(&raw).into_bytes()),
    ]
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_dir() {
            files_under(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

/// Where, if anywhere, a secret of `ids` appears in the files under `dir`.
fn leaks(dir: &Path, ids: &[String]) -> Vec<String> {
    let mut files = Vec::new();
    files_under(dir, &mut files);
    assert!(!files.is_empty());
    let mut found = Vec::new();
    for f in &files {
        let mut bytes = std::fs::read(f).expect("read");
        // Segments are preallocated with zeros: search up to a little past
        // the last byte written, which is much faster in a debug build.
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        bytes.truncate((end + 64).min(bytes.len()));
        for id in ids {
            for (form, needle) in secret_forms(id) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(format!("{} holds the {form} of {id}", f.display()));
                }
            }
        }
    }
    found
}

#[test]
fn data_files_hold_no_session_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .sync_policy(SyncPolicy::Always)
        .open(dir.path())
        .expect("open");
    let sessions = Sessions::new(db.keyspace("sessions").expect("keyspace"));
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = if i % 2 == 0 {
            sessions.create_for_user("ada", format!("data {i}"), HOUR)
        } else {
            sessions.create(format!("data {i}"), HOUR)
        }
        .expect("create");
        ids.push(id.into_string());
    }
    // Every kind of write: touch, update, rotate.
    assert!(sessions.touch(&ids[0]).expect("touch"));
    assert!(sessions.update(&ids[1], "new data").expect("update"));
    let rotated = sessions.rotate(&ids[2]).expect("rotate").expect("live");
    ids.push(rotated.into_string());
    // The store also works on a plain Db, not only a keyspace.
    let plain = Sessions::new(db.clone());
    ids.push(plain.create("x", HOUR).expect("create").into_string());
    for id in &ids[3..] {
        assert!(
            sessions.get(id).expect("get").is_some() || plain.get(id).expect("get").is_some(),
            "{id} is live"
        );
    }
    db.close().expect("close");
    drop((sessions, plain, db));
    let found = leaks(dir.path(), &ids);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_wrong_verifier_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open");
    let sessions = Sessions::new(db);
    let id = sessions.create_for_user("ada", "d", HOUR).expect("create");
    let id = id.as_str();
    assert!(sessions.get(id).expect("get").is_some());
    // Change one bit of the verifier at a time (the last character holds 6
    // bits of it), and swap in a verifier of another session.
    let other = sessions.create("e", HOUR).expect("create");
    let mut wrong: Vec<String> = (16..32)
        .map(|i| {
            let mut b = id.as_bytes().to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).expect("ascii")
        })
        .collect();
    wrong.push(format!("{}{}", &id[..16], &other.as_str()[16..]));
    for w in &wrong {
        assert_eq!(sessions.get(w).expect("get"), None, "{w}");
        assert!(!sessions.touch(w).expect("touch"), "{w}");
        assert!(!sessions.update(w, "x").expect("update"), "{w}");
        assert_eq!(sessions.rotate(w).expect("rotate"), None, "{w}");
        assert!(!sessions.revoke(w).expect("revoke"), "{w}");
    }
    // None of that touched the real session.
    assert_eq!(sessions.get(id).expect("get").expect("live").data, b"d");
    // A handle revokes only the session of the user it is given with.
    let handle = sessions.list_for_user("ada").expect("list")[0].0.clone();
    assert!(!sessions
        .revoke_for_user("bob", handle.as_str())
        .expect("revoke"));
    assert!(!sessions
        .revoke_for_user("ada", other.handle().as_str())
        .expect("revoke"));
    assert!(!sessions.revoke_for_user("ada", id).expect("revoke"));
    assert!(sessions.get(id).expect("get").is_some());
    assert!(sessions
        .revoke_for_user("ada", handle.as_str())
        .expect("revoke"));
    assert_eq!(sessions.get(id).expect("get"), None);
    assert!(sessions.list_for_user("ada").expect("list").is_empty());
}

/// The ids in `tests/fixtures/sessions-v1/ids.txt`, by name.
fn fixture_ids() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sessions-v1");
    std::fs::read_to_string(dir.join("ids.txt"))
        .expect("ids.txt")
        .lines()
        .map(|l| {
            let (name, id) = l.split_once(' ').expect("name id");
            (name.to_owned(), id.to_owned())
        })
        .collect()
}

fn open_fixture(into: &Path, clock: &ManualClock) -> Db {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sessions-v1/store");
    std::fs::create_dir_all(into).expect("mkdir");
    for e in std::fs::read_dir(from).expect("fixture") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), into.join(e.file_name())).expect("copy");
    }
    Options::new()
        .sync_policy(SyncPolicy::Always)
        .clock(clock.clone())
        .open(into)
        .expect("open the fixture")
}

/// The stored record of the session `id` (key `s` + its first 12 bytes).
fn record_of(db: &Db, id: &str) -> Vec<u8> {
    let mut key = vec![b's'];
    key.extend_from_slice(&b64url_decode(id)[..12]);
    db.get(key).expect("get").expect("the record")
}

#[test]
fn sessions_of_the_old_layout_still_validate_and_are_rewritten() {
    let ids = fixture_ids();
    let id = |name: &str| -> String {
        ids.iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.clone())
            .expect("named in ids.txt")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(FIXTURE_MS + 60_000);
    let db = open_fixture(dir.path(), &clock);
    let sessions = Sessions::new(db.clone());
    let (laptop, phone, anon) = (id("ada-laptop"), id("ada-phone-rotated"), id("anonymous"));
    let verifier = |id: &str| b64url_decode(id)[12..].to_vec();
    // The fixture is of the old layout: format 1, the verifier inside.
    for i in [&laptop, &phone, &anon] {
        let rec = record_of(&db, i);
        assert_eq!(rec[0], 1, "format of the fixture's record");
        assert!(rec.windows(12).any(|w| w == verifier(i)));
    }

    // They validate, with their data; the rotated-away id does not; a
    // wrong verifier does not.
    let s = sessions.get(&laptop).expect("get").expect("live");
    assert_eq!(
        (s.data.as_slice(), s.user.as_deref()),
        (&b"ada's laptop"[..], Some("ada"))
    );
    assert_eq!(
        sessions.get(&phone).expect("get").expect("live").data,
        b"ada's phone"
    );
    assert_eq!(
        sessions.get(&anon).expect("get").expect("live").data,
        b"anonymous cart"
    );
    assert_eq!(
        sessions.get(&id("ada-phone-before-rotation")).expect("get"),
        None
    );
    let wrong = format!("{}{}", &laptop[..16], &anon[16..]);
    assert_eq!(sessions.get(&wrong).expect("get"), None);
    let listed: Vec<String> = sessions
        .list_for_user("ada")
        .expect("list")
        .into_iter()
        .map(|(h, _)| h.as_str().to_owned())
        .collect();
    assert_eq!(listed, [laptop[..16].to_owned(), phone[..16].to_owned()]);
    // A read does not rewrite.
    assert_eq!(record_of(&db, &laptop)[0], 1);

    // Their next write stores the hash: a touch that moves the expiry,
    // an update, a rotation.
    clock.advance(Duration::from_secs(600));
    assert!(sessions.touch(&laptop).expect("touch"));
    assert!(sessions.update(&anon, "a new cart").expect("update"));
    let phone2 = sessions
        .rotate(&phone)
        .expect("rotate")
        .expect("live")
        .into_string();
    for i in [&laptop, &anon, &phone2] {
        let rec = record_of(&db, i);
        assert_eq!(rec[0], 2, "format after a write");
        assert!(!rec.windows(12).any(|w| w == verifier(i)));
    }
    assert_eq!(sessions.get(&phone).expect("get"), None);

    // And keep validating, after a restart too.
    db.close().expect("close");
    drop((sessions, db));
    let db = Options::new()
        .clock(clock.clone())
        .open(dir.path())
        .expect("reopen");
    let sessions = Sessions::new(db.clone());
    assert_eq!(
        sessions.get(&laptop).expect("get").expect("live").data,
        b"ada's laptop"
    );
    assert_eq!(
        sessions.get(&anon).expect("get").expect("live").data,
        b"a new cart"
    );
    assert_eq!(
        sessions.get(&phone2).expect("get").expect("live").data,
        b"ada's phone"
    );
    assert_eq!(sessions.get(&wrong).expect("get"), None);
    assert_eq!(sessions.hash_stored_verifiers().expect("migrate"), 0);
}

#[test]
fn hashing_the_stored_verifiers_migrates_every_old_session() {
    let ids = fixture_ids();
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(FIXTURE_MS + 60_000);
    let db = open_fixture(dir.path(), &clock);
    let sessions = Sessions::new(db.clone());
    let live: Vec<&String> = ids
        .iter()
        .filter(|(n, _)| n != "ada-phone-before-rotation")
        .map(|(_, id)| id)
        .collect();
    let expires: Vec<u64> = live
        .iter()
        .map(|i| sessions.get(i).expect("get").expect("live").expires_unix_ms)
        .collect();
    assert_eq!(sessions.hash_stored_verifiers().expect("migrate"), 3);
    assert_eq!(sessions.hash_stored_verifiers().expect("migrate"), 0);
    for (i, exp) in live.iter().zip(&expires) {
        let rec = record_of(&db, i);
        assert_eq!(rec[0], 2, "format after the migration");
        assert!(!rec.windows(12).any(|w| w == &b64url_decode(i)[12..]));
        let s = sessions.get(i).expect("get").expect("still live");
        assert_eq!(s.expires_unix_ms, *exp, "the expiry stays");
    }
}

/// An embedded store that counts the calls made to it.
#[derive(Debug)]
struct Counting {
    inner: Store,
    reads: Arc<AtomicUsize>,
    updates: Arc<AtomicUsize>,
}

impl Backend for Counting {
    fn read(&self, keys: &[Key]) -> Result<Snapshot> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.backend().read(keys)
    }

    fn update(&self, keys: &[Key], f: &mut dyn FnMut(&mut Update) -> Result<()>) -> Result<()> {
        self.updates.fetch_add(1, Ordering::Relaxed);
        self.inner.backend().update(keys, f)
    }

    fn scan(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], u64, Option<u64>)) -> Result<()> {
        self.inner.backend().scan(prefix, f)
    }

    fn is_remote(&self) -> bool {
        false
    }

    fn as_db(&self) -> Option<&Db> {
        self.inner.as_db()
    }
}

#[test]
fn a_users_session_takes_one_transaction_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::open(dir.path()).expect("open");
    let reads = Arc::new(AtomicUsize::new(0));
    let updates = Arc::new(AtomicUsize::new(0));
    let sessions = Sessions::new(Store::new(Counting {
        inner: Store::from(db),
        reads: Arc::clone(&reads),
        updates: Arc::clone(&updates),
    }));
    let calls = || {
        (
            reads.swap(0, Ordering::Relaxed),
            updates.swap(0, Ordering::Relaxed),
        )
    };
    let hour = Duration::from_secs(3600);
    let a = sessions.create_for_user("ada", b"a", hour).expect("create");
    assert_eq!(calls(), (0, 1), "create_for_user");
    let b = sessions.create_for_user("ada", b"b", hour).expect("create");
    let c = sessions.create_for_user("ada", b"c", hour).expect("create");
    calls();
    std::thread::sleep(Duration::from_millis(5));
    let touched = sessions.get_and_touch(a.as_str()).expect("touch");
    assert!(touched.expect("live").expires_unix_ms > 0);
    assert_eq!(calls(), (0, 1), "get_and_touch that extends the expiry");
    let a2 = sessions.rotate(a.as_str()).expect("rotate").expect("live");
    assert_eq!(calls(), (0, 1), "rotate");
    assert!(sessions.revoke(b.as_str()).expect("revoke"));
    assert_eq!(calls(), (0, 1), "revoke");
    let handle = c.handle();
    assert!(sessions
        .revoke_for_user("ada", handle.as_str())
        .expect("revoke one"));
    assert_eq!(calls(), (0, 1), "revoke_for_user");
    let listed = sessions.list_for_user("ada").expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, a2.handle());
    assert_eq!(sessions.revoke_all_for_user("ada").expect("revoke all"), 1);
    assert_eq!(calls().1, 1, "revoke_all_for_user");
    assert!(sessions.list_for_user("ada").expect("list").is_empty());
}

#[test]
fn list_for_user_works_inside_a_transaction() {
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::open(dir.path()).expect("open");
    let sessions = Sessions::new(db.clone());
    let hour = Duration::from_secs(3600);
    sessions.create_for_user("ada", b"", hour).expect("create");
    sessions.create_for_user("ada", b"", hour).expect("create");
    // A read takes no writer lock, so it runs inside a transaction
    // (it returned Error::NestedWrite when it read in one).
    let n = db
        .transaction(|_| Ok(sessions.list_for_user("ada").map(|l| l.len())))
        .expect("transaction");
    assert_eq!(n.expect("list inside a transaction"), 2);
}

#[test]
fn embedded_selectors_carry_no_user_prefix() {
    let dir = tempfile::tempdir().expect("dir");
    let sessions = Sessions::new(Db::open(dir.path()).expect("open"));
    let hour = Duration::from_secs(3600);
    let mut prefixes = std::collections::BTreeSet::new();
    let first_bytes = |id: &cairn::session::SessionId| b64url_decode(id.as_str())[..2].to_vec();
    for _ in 0..32 {
        let id = sessions.create_for_user("ada", b"", hour).expect("create");
        prefixes.insert(first_bytes(&id));
        let new = sessions.rotate(id.as_str()).expect("rotate").expect("live");
        prefixes.insert(first_bytes(&new));
    }
    // 64 random draws from 65536: all distinct but for a 3% chance of
    // one collision. A prefix taken from the user name gives one.
    assert!(prefixes.len() >= 60, "{} prefixes", prefixes.len());
    assert_eq!(sessions.list_for_user("ada").expect("list").len(), 32);
}
