//! `cairn verify`: check every file of a store, read-only, and list the
//! problems found.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use cairn::{Problem, VerifyReport};
use serde_json::{json, Value};

use crate::common::{check_store, finish, progress, EXIT_CORRUPTION};

/// Verifies the store; lists at most `max_errors` problems. Exit code
/// [`EXIT_CORRUPTION`] when corruption is found.
pub fn verify(
    dir: &Path,
    max_errors: Option<usize>,
    quick: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<u8> {
    check_store(dir)?;
    let pb = progress("verifying");
    let r = cairn::verify(dir, quick)?;
    finish(pb);
    let shown = max_errors.unwrap_or(usize::MAX).min(r.problems.len());
    if json {
        write_json(&r, &r.problems[..shown], out)?;
    } else {
        write_text(&r, &r.problems[..shown], out)?;
    }
    if r.has_corruption() {
        Ok(EXIT_CORRUPTION)
    } else {
        Ok(0)
    }
}

/// One JSON object: the counts and the `shown` problems.
fn write_json(r: &VerifyReport, shown: &[Problem], out: &mut impl Write) -> Result<()> {
    let problems: Vec<Value> = shown
        .iter()
        .map(|p| {
            json!({
                "kind": p.kind.name(),
                "corruption": p.kind.is_corruption(),
                "path": p.path.display().to_string(),
                "offset": p.offset,
                "detail": p.detail,
            })
        })
        .collect();
    writeln!(
        out,
        "{}",
        json!({
            "healthy": !r.has_corruption(),
            "segments": r.segments,
            "hints": r.hints,
            "records": r.records,
            "problems": problems,
            "problems_total": r.problems.len(),
        })
    )?;
    Ok(())
}

/// One line per shown problem, then a summary line.
fn write_text(r: &VerifyReport, shown: &[Problem], out: &mut impl Write) -> Result<()> {
    for p in shown {
        let at = p
            .offset
            .map_or(String::new(), |o| format!(" at offset {o}"));
        writeln!(
            out,
            "{}: {}{at}: {}",
            p.kind.name(),
            p.path.display(),
            p.detail
        )?;
    }
    if shown.len() < r.problems.len() {
        writeln!(out, "... and {} more", r.problems.len() - shown.len())?;
    }
    writeln!(
        out,
        "{}: {} segments, {} hints, {} records checked, {} problems",
        if r.has_corruption() {
            "CORRUPT"
        } else {
            "healthy"
        },
        r.segments,
        r.hints,
        r.records,
        r.problems.len()
    )?;
    Ok(())
}
