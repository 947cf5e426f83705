//! The `open_dir` input format: arbitrary bytes become the files of a
//! store directory (segments, hints, a compaction manifest, a stray
//! temporary file) on the simulated file system.
//!
//! ```text
//! byte 0            flags: bit 0 also open read-only; bit 1 fix record
//!                   checksums; bit 2 fix hint headers and checksums;
//!                   bit 3 no tail cache; bits 4-5 the recovery modes:
//!                   0 strict, 1 salvage, 2 and 3 both
//! bytes 1..         files, separated by SEP; each file is one descriptor
//!                   byte then its contents
//! descriptor        bits 0-1: 0 segment with a generated valid header,
//!                             1 segment as raw bytes, 2 hint,
//!                             3 COMPACTION manifest (bit 5: built from
//!                               the contents as segment ids, else raw),
//!                             or with bit 6 too, a stray .tmp file
//!                   bits 2-4: segment id - 1 (ids 1..=8)
//!                   bit 5:    segment: the header's "compacted" flag
//!                   bit 7:    segment: 4 KiB of zeros appended
//!                             (preallocated space)
//! ```
//!
//! At most [`MAX_FILES`] files are used; a second file with a name already
//! taken is skipped.

use std::path::{Path, PathBuf};

use cairn::vfs::{write_all_at, OpenMode, Vfs};
use cairn_sim::SimFs;

use crate::format::{self, hint_name, seg_name, MANIFEST_NAME};

/// Separates files in the input.
pub const SEP: &[u8] = b"#F#\n";
/// Most files built from one input.
pub const MAX_FILES: usize = 8;
/// The store directory inside the simulated file system.
pub const DIR: &str = "/fuzz/db";

/// What the input's first byte asks for.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirFlags {
    /// Also open the store read-only.
    pub read_only: bool,
    /// Recompute record checksums in segments.
    pub fix_records: bool,
    /// Recompute hint headers and checksums.
    pub fix_hints: bool,
    /// Open without a tail cache.
    pub no_tail_cache: bool,
    /// Open in strict mode.
    pub strict: bool,
    /// Open in salvage mode.
    pub salvage: bool,
}

/// One file of a directory.
#[derive(Clone, Debug)]
pub struct File {
    /// Its name in the store directory.
    pub name: String,
    /// Its contents.
    pub bytes: Vec<u8>,
}

/// A directory to build, decoded from fuzzer input.
#[derive(Clone, Debug, Default)]
pub struct DirInput {
    /// The flags.
    pub flags: DirFlags,
    /// The files.
    pub files: Vec<File>,
}

/// Splits `data` on [`SEP`].
fn split_sep(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(SEP.len()).position(|w| w == SEP) {
        parts.push(&rest[..i]);
        rest = &rest[i + SEP.len()..];
    }
    parts.push(rest);
    parts
}

impl DirInput {
    /// Decodes fuzzer input.
    pub fn decode(data: &[u8]) -> DirInput {
        let Some((&flags, rest)) = data.split_first() else {
            return DirInput::default();
        };
        let flags = DirFlags {
            read_only: flags & 1 != 0,
            fix_records: flags & 2 != 0,
            fix_hints: flags & 4 != 0,
            no_tail_cache: flags & 8 != 0,
            strict: flags & 0x30 != 0x10,
            salvage: flags & 0x30 != 0,
        };
        let mut files: Vec<File> = Vec::new();
        let mut hints = Vec::new();
        for part in split_sep(rest).into_iter().take(MAX_FILES) {
            let Some((&d, body)) = part.split_first() else {
                continue;
            };
            let id = u32::from((d >> 2) & 7) + 1;
            let (name, bytes) = match d & 3 {
                0 | 1 => {
                    let mut b = if d & 3 == 0 {
                        let flags = if d & 0x20 != 0 {
                            format::SEGMENT_FLAG_COMPACTED
                        } else {
                            0
                        };
                        format::segment_header(id, format::salt_for(id), flags).to_vec()
                    } else {
                        Vec::new()
                    };
                    b.extend_from_slice(body);
                    if flags.fix_records {
                        format::fix_record_checksums(&mut b);
                    }
                    if d & 0x80 != 0 {
                        b.resize(b.len() + 4096, 0);
                    }
                    (seg_name(id), b)
                }
                2 => {
                    hints.push((files.len(), id));
                    (hint_name(id), body.to_vec())
                }
                _ if d & 0x40 != 0 => (format!(".hint-{id}.tmp"), body.to_vec()),
                _ if d & 0xe0 == 0x80 => ("index.ckpt".to_string(), body.to_vec()),
                _ if d & 0x20 != 0 => {
                    let ids: Vec<u32> = body.iter().map(|&b| u32::from(b % 10)).collect();
                    (MANIFEST_NAME.to_string(), format::encode_manifest(&ids))
                }
                _ => (MANIFEST_NAME.to_string(), body.to_vec()),
            };
            if files.iter().any(|f| f.name == name) {
                continue;
            }
            files.push(File { name, bytes });
        }
        if flags.fix_hints {
            for (i, id) in hints {
                let seg = files.iter().find(|f| f.name == seg_name(id)).map(|f| {
                    let salt = format::try_le_u32(&f.bytes, 12).unwrap_or(0);
                    (salt, f.bytes.len() as u64)
                });
                if let (Some((salt, len)), Some(f)) = (seg, files.get_mut(i)) {
                    if f.name == hint_name(id) {
                        format::fix_hint(&mut f.bytes, id, salt, len);
                    }
                }
            }
        }
        DirInput { flags, files }
    }

    /// Encodes (for seeds): the inverse of [`DirInput::decode`] for inputs
    /// whose files were given as (descriptor, contents).
    pub fn encode(flags: u8, files: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![flags];
        for (i, (d, body)) in files.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(SEP);
            }
            out.push(*d);
            out.extend_from_slice(body);
        }
        out
    }

    /// Writes the files durably into a new simulated file system.
    pub fn build(&self) -> SimFs {
        let sim = SimFs::new();
        let dir = Path::new(DIR);
        sim.create_dir_all(dir).expect("mkdir");
        for f in &self.files {
            let file = sim
                .open(&dir.join(&f.name), OpenMode::CreateNew)
                .expect("create");
            write_all_at(&*file, &f.bytes, 0).expect("write");
            file.sync_data().expect("sync");
        }
        sim.sync_dir(dir).expect("sync dir");
        sim
    }

    /// Whether a compaction manifest is among the files.
    pub fn has_manifest(&self) -> bool {
        self.files.iter().any(|f| f.name == MANIFEST_NAME)
    }
}

/// The store directory's path.
pub fn dir() -> PathBuf {
    PathBuf::from(DIR)
}
