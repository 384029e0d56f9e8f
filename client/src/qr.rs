//! QR codes for product labels: the GS1 Digital Link URL of a product as SVG (for print
//! layouts) or PNG (for label printers), with a quiet zone of four modules as ISO/IEC 18004
//! asks.

use qrcode::{Color, EcLevel, QrCode};

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("the URL is too long for a QR code")]
    TooLong,
    #[error("encoding the PNG: {0}")]
    Png(String),
}

/// Quiet zone around the symbol, in modules.
const QUIET: usize = 4;

/// The QR code of `url`, with medium error correction (15%): robust to scuffed packaging
/// while keeping modules large on small labels.
pub fn encode(url: &str) -> Result<QrCode, QrError> {
    QrCode::with_error_correction_level(url.as_bytes(), EcLevel::M).map_err(|_| QrError::TooLong)
}

/// An SVG of the code, `module_px` user units per module.
pub fn to_svg(code: &QrCode, module_px: u32) -> String {
    code.render::<qrcode::render::svg::Color<'_>>()
        .quiet_zone(true)
        .module_dimensions(module_px, module_px)
        .build()
}

/// A greyscale PNG of the code, `module_px` pixels per module.
pub fn to_png(code: &QrCode, module_px: usize) -> Result<Vec<u8>, QrError> {
    let width = code.width();
    let colors = code.to_colors();
    let side = (width + 2 * QUIET) * module_px;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % width + QUIET, i / width + QUIET);
            for dy in 0..module_px {
                let row = (my * module_px + dy) * side;
                for dx in 0..module_px {
                    if let Some(p) = pixels.get_mut(row + mx * module_px + dx) {
                        *p = 0;
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let side32 = u32::try_from(side).map_err(|_| QrError::TooLong)?;
        let mut encoder = png::Encoder::new(&mut out, side32, side32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| QrError::Png(e.to_string()))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| QrError::Png(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_png(bytes: &[u8]) -> String {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_png_decodes_to_the_digital_link() {
        let url = "https://trace.example.org/01/09506000134352/10/L2026-11";
        let png = to_png(&encode(url).unwrap(), 4).unwrap();
        assert_eq!(decode_png(&png), url);
    }

    #[test]
    fn the_svg_is_a_complete_document() {
        let svg = to_svg(
            &encode("https://x.example/01/09506000134352/10/A").unwrap(),
            8,
        );
        assert!(
            svg.starts_with("<?xml") && svg.contains("<svg") && svg.trim_end().ends_with("</svg>")
        );
    }
}
