//! Chain verification commands: verify (online or offline) and bundle.

use clap::Args;

use crate::Global;

#[derive(Args, Debug)]
pub struct VerifyArgs {}

pub async fn verify(_g: &Global, _a: VerifyArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}

#[derive(Args, Debug)]
pub struct BundleArgs {}

pub async fn bundle(_g: &Global, _a: BundleArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}
