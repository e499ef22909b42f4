//! `beacon-node keys generate|show`: the node's long-term key pair.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use beacon_core::crypto::Scheme;
use clap::Subcommand;
use rand_core::OsRng;

use super::{EXIT_BAD_INPUT, EXIT_INVALID};
use crate::keys::{validate_address, KeyError, KeyPair, KeyStore};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate the node's long-term key pair into DIR/key/ (node.private, node.public).
    /// Refuses (exit 2) when key material already exists there, unless --backup-existing.
    Generate(GenerateArgs),
    /// Print the node's address, scheme and public key, and whether its self-signature
    /// verifies. Exits 0 when everything checks out, 1 when the signature does not verify or
    /// the private key does not match, 2 when the files cannot be read.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// The node's folder; keys go to DIR/key/.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The chain's signature scheme: pedersen-bls-chained, pedersen-bls-unchained or
    /// bls-unchained-g1-rfc9380.
    #[arg(long, value_name = "SCHEME")]
    pub scheme: String,
    /// The address peers reach this node at.
    #[arg(long, value_name = "HOST:PORT")]
    pub address: String,
    /// Move existing key files into DIR/key/backup-<unix time>/ first (nothing is deleted).
    #[arg(long)]
    pub backup_existing: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The node's folder (keys are read from DIR/key/).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: &KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Generate(args) => generate(args),
        KeysCommand::Show(args) => show(args),
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

fn generate(args: &GenerateArgs) -> ExitCode {
    let scheme: Scheme = match args.scheme.parse() {
        Ok(s) => s,
        Err(e) => return fail(EXIT_BAD_INPUT, format_args!("--scheme: {e}")),
    };
    if let Err(e) = scheme.ensure_can_sign() {
        return fail(EXIT_BAD_INPUT, format_args!("--scheme: {e}"));
    }
    if let Err(e) = validate_address(&args.address) {
        return fail(EXIT_BAD_INPUT, format_args!("--address: {e}"));
    }
    let store = KeyStore::new(&args.dir);
    let existing = store.existing_key_material();
    if let Some(first) = existing.first() {
        if !args.backup_existing {
            let others = existing.len() - 1;
            return fail(
                EXIT_BAD_INPUT,
                format_args!(
                    "{} already exists{}: refusing to overwrite key material, nothing was changed. To move the existing key files aside into {}/backup-<unix time>/ and generate a new key pair, run again with --backup-existing",
                    first.display(),
                    if others > 0 { format!(" (and {others} more key file(s))") } else { String::new() },
                    store.key_dir().display()
                ),
            );
        }
        match store.backup_existing() {
            Ok(Some(dir)) => println!(
                "moved the existing key files ({}) to {}",
                existing
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", "),
                dir.display()
            ),
            Ok(None) => {}
            Err(e) => {
                return fail(
                    EXIT_BAD_INPUT,
                    format_args!("--backup-existing: {e}; no new key was generated"),
                )
            }
        }
    }
    let pair = match KeyPair::generate(scheme, &args.address, &mut OsRng) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_BAD_INPUT, e),
    };
    match store.save_new_pair(&pair) {
        Ok(()) => {}
        Err(KeyError::Exists { path }) => {
            return fail(
                EXIT_BAD_INPUT,
                format_args!(
                    "{} appeared while generating (another process?): refusing to overwrite key material; run again with --backup-existing to move it aside",
                    path.display()
                ),
            )
        }
        Err(e) => return fail(EXIT_BAD_INPUT, e),
    }
    println!("generated a {} key pair for {}", scheme, args.address);
    println!("private key: {}", store.private_path().display());
    println!("public key:  {}", store.public_path().display());
    println!("{}", hex::encode(pair.public_key().to_bytes()));
    ExitCode::SUCCESS
}

fn show(args: &ShowArgs) -> ExitCode {
    let store = KeyStore::new(&args.dir);
    let report = match store.inspect() {
        Ok(r) => r,
        Err(e) => return fail(EXIT_BAD_INPUT, e),
    };
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => writeln!(out, "{text}"),
            Err(e) => return fail(EXIT_BAD_INPUT, format_args!("cannot encode JSON: {e}")),
        }
    } else {
        let signature = match (report.signature_format, report.self_signature_valid) {
            ("none", _) => "missing".to_owned(),
            (format, true) => format!("valid ({format} self-signature)"),
            (format, false) => format!("DOES NOT VERIFY ({format} self-signature)"),
        };
        let private = match report.private_key_matches {
            None => "absent",
            Some(true) => "present, matches the public key",
            Some(false) => "present, DOES NOT MATCH the public key",
        };
        let mut text = format!(
            "file:           {}\naddress:        {}\nscheme:         {}\npublic key:     {}\nself-signature: {signature}\nprivate key:    {private}\nformat version: {}\n",
            report.public_file.display(),
            report.address,
            report.scheme,
            report.public_key,
            report.format_version,
        );
        for w in &report.warnings {
            text.push_str(&format!("warning:        {w}\n"));
        }
        out.write_all(text.as_bytes())
    };
    if written.is_err() {
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    }
}
