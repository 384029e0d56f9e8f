//! `fairtrail qr`: the QR code of a product's GS1 Digital Link, for label printing.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use fairtrail_client::gs1::ProductId;
use fairtrail_client::qr;

use super::EXIT_OK;
use crate::Global;

#[derive(Args, Debug)]
pub struct QrArgs {
    /// The product's GTIN (8, 12, 13 or 14 digits; written as 14 in the link).
    pub gtin: String,
    /// The batch or lot number on the package.
    pub batch: String,
    /// A serial number, for one item of the batch.
    #[arg(long)]
    pub serial: Option<String>,
    /// The public URL of the node's pages (the operator's --public-url).
    #[arg(
        long,
        env = "FAIRTRAIL_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub base_url: String,
    /// Where to write the code: FILE.svg (vector, for print layouts) or FILE.png.
    #[arg(long)]
    pub out: PathBuf,
    /// Size of one module (the smallest square): pixels for PNG, user units for SVG.
    #[arg(long, default_value_t = 10)]
    pub module: u32,
}

pub fn qr(g: &Global, a: QrArgs) -> anyhow::Result<u8> {
    let product = ProductId::new(&a.gtin, &a.batch, a.serial.as_deref())?;
    let url = product.url(&a.base_url);
    let code = qr::encode(&url)?;
    let module = a.module.clamp(1, 100);
    let bytes = match a
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("svg") => qr::to_svg(&code, module).into_bytes(),
        Some("png") => qr::to_png(&code, module as usize)?,
        _ => bail!("--out must end in .svg or .png"),
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&a.out)
        .with_context(|| format!("cannot create {} (it must not exist yet)", a.out.display()))?;
    std::io::Write::write_all(&mut file, &bytes)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({ "url": url, "file": a.out.display().to_string() })
        );
    } else {
        println!("{url}\nQR code written to {}", a.out.display());
    }
    Ok(EXIT_OK)
}
