//! Statement commands: certify, revoke, rotate-key, harvest, ship, receive, transform, label, dispute, cosign.

use clap::Args;

use crate::Global;

#[derive(Args, Debug)]
pub struct CertifyArgs {}

pub async fn certify(_g: &Global, _a: CertifyArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}

#[derive(Args, Debug)]
pub struct RevokeArgs {}

pub async fn revoke(_g: &Global, _a: RevokeArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}

#[derive(Args, Debug)]
pub struct RotateKeyArgs {}

pub async fn rotate_key(_g: &Global, _a: RotateKeyArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}

#[derive(Args, Debug)]
pub struct HarvestArgs {}

pub async fn harvest(_g: &Global, _a: HarvestArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}

#[derive(Args, Debug)]
pub struct ShipArgs {}

pub async fn ship(_g: &Global, _a: ShipArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}

#[derive(Args, Debug)]
pub struct ReceiveArgs {}

pub async fn receive(_g: &Global, _a: ReceiveArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}

#[derive(Args, Debug)]
pub struct TransformArgs {}

pub async fn transform(_g: &Global, _a: TransformArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}

#[derive(Args, Debug)]
pub struct LabelArgs {}

pub async fn label(_g: &Global, _a: LabelArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}

#[derive(Args, Debug)]
pub struct DisputeArgs {}

pub async fn dispute(_g: &Global, _a: DisputeArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}

#[derive(Args, Debug)]
pub struct CosignArgs {}

pub fn cosign(_g: &Global, _a: CosignArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}

