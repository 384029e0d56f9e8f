//! `fairtrail audit`: replays the whole log from a node and checks everything.

use clap::Args;

use crate::Global;

#[derive(Args, Debug)]
pub struct AuditArgs {}

pub async fn audit(_g: &Global, _a: AuditArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}
