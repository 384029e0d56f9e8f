//! The demo: a realistic coffee chain written to a node and verified.

use clap::Args;

use crate::Global;

#[derive(Args, Debug)]
pub struct DemoArgs {}

pub async fn demo(_g: &Global, _a: DemoArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}

