//! `crdgen [DIR]`: writes the CustomResourceDefinitions as YAML, one file per CRD, into DIR
//! (default: the chart's `charts/beacon-operator/crds/` in this workspace).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = match std::env::args_os().nth(1) {
        Some(d) => PathBuf::from(d),
        None => beacon_crds::crd::chart_crds_dir(),
    };
    match beacon_crds::crd::write_all(&dir) {
        Ok(paths) => {
            for p in paths {
                println!("wrote {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
