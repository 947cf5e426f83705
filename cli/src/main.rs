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
use cmd::{
    backup, compact, dump, export, follow, import, import_redis, keys, repair, scan, serve, stats,
    verify,
};
use common::EXIT_CORRUPTION;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let corruption = e
                .chain()
                .any(|c| matches!(c.downcast_ref::<Error>(), Some(Error::Corruption { .. })));
            eprintln!("cairn: {}", one_line(&e));
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
        Command::Export {
            dir,
            prefix,
            format,
            keyspace_db,
        } => export::export(&dir, &prefix, format, &keyspace_db, out),
        Command::Import { dir, from, cluster } => match from {
            Some(url) => import_redis::import(&dir, &url, cluster),
            None => import::import(&dir),
        },
        Command::Serve(args) => serve::serve(args),
        Command::Follow(a) => follow::follow(follow::FollowArgs {
            dir: a.dir,
            to: a.to,
            cluster: a.cluster,
            name: a.name,
            position_key: a.position_key,
            position_file: a.position_file,
            prefix: a.prefix,
            once: a.once,
            lag_every: a.lag_every,
            keyspace_db: a.keyspace_db,
            modules: a.modules,
            owns_database: a.owns_database,
        }),
    }
}

/// The error and its causes on one line, joined by ": ", leaving out a
/// cause whose message the line already ends with. cairn's `Error::Io`
/// (like many errors) both prints its source and returns it from
/// `source()`, so anyhow's `{:#}` would print the OS message twice
/// ("Permission denied (os error 13): Permission denied (os error 13)").
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if line.ends_with(&msg) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&msg);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::{one_line, Error};
    use std::io;

    #[test]
    fn an_io_error_prints_its_os_message_once() {
        let os = io::Error::from_raw_os_error(13);
        let e = anyhow::Error::new(Error::Io(os)).context("cannot open d");
        let line = one_line(&e);
        let os_msg = io::Error::from_raw_os_error(13).to_string();
        assert_eq!(line.matches(&os_msg).count(), 1, "{line}");
        assert!(line.starts_with("cannot open d: "), "{line}");
    }

    #[test]
    fn distinct_causes_are_all_printed() {
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(one_line(&e), "outer: middle: inner");
    }
}
