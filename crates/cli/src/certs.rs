//! `calcmesh certs …`: a development CA and certificates, and a look inside one.

use std::process::ExitCode;

use calcmesh_runtime::tls::certs::{self, InitOptions};

use crate::cli::Certs;

/// Runs `calcmesh certs init|show`.
pub(crate) fn run(command: Certs) -> anyhow::Result<ExitCode> {
    match command {
        Certs::Init {
            dir,
            services,
            clients,
            san,
            days,
        } => {
            let options = InitOptions {
                services,
                clients,
                extra_sans: san,
                days,
            };
            for file in certs::init(&dir, &options)? {
                say!("wrote {}", file.display());
            }
        }
        Certs::Show { file } => say!("{}", certs::show(&file)?.trim_end()),
    }
    Ok(ExitCode::SUCCESS)
}
