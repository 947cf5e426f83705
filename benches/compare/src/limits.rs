//! The physical limits, measured in the same run as the stores, through the
//! same workload code: pseudo-stores that do only the unavoidable work.
//!
//! - `limit-hashmap`: a `HashMap<[u8; 16], Box<[u8]>>` (foldhash) holding
//!   every key and value; a get is one lookup plus a copy of the value. It
//!   bounds point reads.
//! - `limit-fdatasync`: a put is a 128-byte `pwrite` into a file pre-filled
//!   with zeros, then `fdatasync`. It bounds durable writes.
//! - `limit-fdatasync-append`: the same, appending to a growing file.
//! - `limit-seqread`: open reads every file of the cairn store sequentially
//!   (1 MiB reads). It bounds an open that has to read the whole log.
//! - `limit-hints`: open reads the cairn store's hint files and inserts
//!   every key into a presized `HashMap` (foldhash). It bounds an open with
//!   hints.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use crate::gen;
use crate::store::{Describe, Durability, Peer, Result, Store};
use crate::workload::VALUE_BYTES;

type Fast = foldhash::fast::RandomState;

/// The limit pseudo-peer called `name`, for a store of `keys` keys.
pub fn peer(name: &str, keys: u64) -> Option<Box<dyn Peer>> {
    let kind = match name {
        "limit-hashmap" => Kind::HashMap,
        "limit-fdatasync" => Kind::Fdatasync { append: false },
        "limit-fdatasync-append" => Kind::Fdatasync { append: true },
        "limit-seqread" => Kind::SeqRead,
        "limit-hints" => Kind::Hints,
        _ => return None,
    };
    Some(Box::new(LimitPeer { kind, keys }))
}

#[derive(Clone, Copy)]
enum Kind {
    HashMap,
    Fdatasync { append: bool },
    SeqRead,
    Hints,
}

struct LimitPeer {
    kind: Kind,
    keys: u64,
}

struct Limit {
    kind: Kind,
    map: HashMap<[u8; 16], Box<[u8]>, Fast>,
    file: Option<Mutex<(File, u64)>>,
    note: String,
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

/// Reads every file under `dir` (recursively) whose name passes `want`;
/// returns the bytes read.
fn read_all(dir: &Path, want: &dyn Fn(&Path) -> bool, buf: &mut [u8]) -> Result<u64> {
    let mut total = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(io)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            total += read_all(&p, want, buf)?;
        } else if want(&p) {
            let mut f = File::open(&p).map_err(io)?;
            loop {
                let n = f.read(buf).map_err(io)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
        }
    }
    Ok(total)
}

impl Peer for LimitPeer {
    fn open(&self, dir: &Path, _d: Durability) -> Result<Box<dyn Store>> {
        let mut l = Limit {
            kind: self.kind,
            map: HashMap::with_hasher(Fast::default()),
            file: None,
            note: String::new(),
        };
        match self.kind {
            Kind::HashMap => {
                l.map.reserve(self.keys as usize);
                for i in 0..self.keys {
                    l.map.insert(
                        gen::key(i),
                        gen::value(i, 0, VALUE_BYTES).into_boxed_slice(),
                    );
                }
            }
            Kind::Fdatasync { append } => {
                let path = dir.join("limit.log");
                let mut f = OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io)?;
                if !append {
                    let zeros = vec![0u8; 1 << 20];
                    for _ in 0..256 {
                        f.write_all(&zeros).map_err(io)?;
                    }
                    f.sync_all().map_err(io)?;
                }
                l.file = Some(Mutex::new((f, 0)));
            }
            Kind::SeqRead => {
                let mut buf = vec![0u8; 1 << 20];
                let n = read_all(dir, &|_| true, &mut buf)?;
                l.note = format!("read {n} bytes");
            }
            Kind::Hints => {
                let mut buf = vec![0u8; 1 << 20];
                let n = read_all(
                    dir,
                    &|p| p.extension().is_some_and(|e| e == "hint"),
                    &mut buf,
                )?;
                let mut m: HashMap<[u8; 16], u64, Fast> =
                    HashMap::with_capacity_and_hasher(self.keys as usize, Fast::default());
                for i in 0..self.keys {
                    m.insert(gen::key(i), i);
                }
                l.note = format!("read {n} bytes of hints, inserted {} keys", m.len());
            }
        }
        Ok(Box::new(l))
    }
}

impl Store for Limit {
    fn describe(&self) -> Describe {
        let settings = match self.kind {
            Kind::HashMap => "std HashMap<[u8;16], Box<[u8]>> with foldhash; get = lookup + copy into a reused buffer",
            Kind::Fdatasync { append: false } => "128-byte pwrite at the next offset of a 256 MiB file pre-filled with zeros, then fdatasync",
            Kind::Fdatasync { append: true } => "128-byte append to a growing file, then fdatasync",
            Kind::SeqRead => "read every file of the cairn store once, 1 MiB at a time",
            Kind::Hints => "read cairn's hint files, then insert every key into a presized foldhash HashMap",
        };
        Describe {
            settings: format!("{settings} {}", self.note).trim().to_string(),
            caveat: None,
            self_periodic: true,
        }
    }

    fn put_batch(&self, _pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        Err("not a store".into())
    }

    fn put(&self, _key: &[u8], value: &[u8]) -> Result<()> {
        let Some(f) = &self.file else {
            return Err("not a store".into());
        };
        let mut g = f.lock().map_err(|_| "poisoned")?;
        let (file, off) = &mut *g;
        let mut rec = [0u8; 128];
        let n = value.len().min(128);
        rec[..n].copy_from_slice(&value[..n]);
        file.write_all_at(&rec, *off).map_err(io)?;
        *off = (*off + 128) % (256 << 20);
        file.sync_data().map_err(io)
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        out.clear();
        match self.kind {
            Kind::HashMap => {
                let k: [u8; 16] = key.try_into().map_err(|_| "key is not 16 bytes")?;
                match self.map.get(&k) {
                    Some(v) => {
                        out.extend_from_slice(v);
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
            // The open workload reads one key to prove the open worked.
            Kind::SeqRead | Kind::Hints => {
                out.resize(VALUE_BYTES, 0);
                Ok(true)
            }
            Kind::Fdatasync { .. } => Err("not a store".into()),
        }
    }

    fn delete(&self, _key: &[u8]) -> Result<()> {
        Err("not a store".into())
    }

    fn put_ttl(&self, _key: &[u8], _value: &[u8], _ttl_ms: u64) -> Result<()> {
        Err("not a store".into())
    }

    fn get_live(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        self.get(key, out)
    }

    fn touch(&self, _key: &[u8], _ttl_ms: u64) -> Result<bool> {
        Err("not a store".into())
    }

    fn incr_ttl(&self, _key: &[u8], _ttl_ms: u64) -> Result<i64> {
        Err("not a store".into())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}
