//! `cairn`: inspect and operate cairn data directories from the shell.
//!
//! Data goes to stdout, diagnostics to stderr. Exit codes: 0 success,
//! 1 error, 2 bad usage, 3 corruption found, 4 key not found.

mod args;
mod cmd;
mod common;

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Result;
use cairn::Error;
use clap::Parser;

use args::{Cli, Command};
use cmd::{backup, compact, dump, export, import, keys, repair, scan, stats, verify};
use common::EXIT_CORRUPTION;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let corruption = e
                .chain()
                .any(|c| matches!(c.downcast_ref::<Error>(), Some(Error::Corruption { .. })));
            eprintln!("cairn: {e:#}");
            ExitCode::from(if corruption { EXIT_CORRUPTION } else { 1 })
        }
    }
}

/// Runs one subcommand with buffered stdout; returns its exit code.
fn run(command: Command) -> Result<u8> {
    let out = io::stdout();
    let mut out = BufWriter::new(out.lock());
    let code = dispatch(command, &mut out)?;
    out.flush()?;
    Ok(code)
}

/// Hands each subcommand to its module.
fn dispatch(command: Command, out: &mut impl Write) -> Result<u8> {
    match command {
        Command::Get { dir, key, json } => keys::get(&dir, &key, json, out),
        Command::Scan {
            dir,
            prefix,
            limit,
            json,
        } => scan::scan(&dir, &prefix, limit, json, out),
        Command::Ttl { dir, key, json } => keys::ttl(&dir, &key, json, out),
        Command::Set {
            dir,
            key,
            value,
            ttl,
            nx,
        } => keys::set(&dir, &key, &value, ttl, nx, out),
        Command::Del { dir, keys } => keys::del(&dir, &keys, out),
        Command::Incr { dir, key, by } => keys::incr(&dir, &key, by, out),
        Command::Expire { dir, key, ttl } => keys::expire(&dir, &key, ttl),
        Command::Stats { dir, json } => stats::stats(&dir, json, out),
        Command::Dump {
            dir,
            segment,
            from_offset,
            values,
            json,
        } => dump::dump(&dir, segment, from_offset, values, json, out),
        Command::Verify {
            dir,
            max_errors,
            quick,
            json,
        } => verify::verify(&dir, max_errors, quick, json, out),
        Command::Repair { dir, dry_run } => repair::repair(&dir, dry_run, out),
        Command::Compact { dir } => compact::compact(&dir, out),
        Command::Backup { dir, dest } => backup::backup(&dir, &dest, out),
        Command::Export { dir, prefix } => export::export(&dir, &prefix, out),
        Command::Import { dir } => import::import(&dir),
    }
}
