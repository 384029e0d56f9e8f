//! File names of the C2SP tlog-tiles layout: `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`.

use std::path::{Path, PathBuf};

/// Which kind of tile: a hash tile at a level, or an entry bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileKind {
    Hashes(u8),
    Entries,
}

/// The tile index as path elements: groups of three digits, all but the last prefixed with
/// `x` (1234067 -> `x001/x234/067`).
pub fn index_path(n: u64) -> String {
    let digits = n.to_string();
    let pad = (3 - digits.len() % 3) % 3;
    let padded = format!("{}{}", "0".repeat(pad), digits);
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .map(|c| std::str::from_utf8(c).unwrap_or("000"))
        .collect();
    let last = groups.len() - 1;
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if i < last {
                format!("x{g}")
            } else {
                (*g).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn kind_dir(root: &Path, kind: TileKind) -> PathBuf {
    match kind {
        TileKind::Hashes(level) => root.join("tile").join(level.to_string()),
        TileKind::Entries => root.join("tile").join("entries"),
    }
}

/// The path of tile `n` with `width` entries (256 = full, otherwise a partial tile).
pub fn tile_path(root: &Path, kind: TileKind, n: u64, width: usize) -> PathBuf {
    let base = kind_dir(root, kind).join(index_path(n));
    if width >= super::tree::TILE_WIDTH {
        base
    } else {
        partial_dir(root, kind, n).join(width.to_string())
    }
}

/// The directory holding the partial versions of tile `n`.
pub fn partial_dir(root: &Path, kind: TileKind, n: u64) -> PathBuf {
    let base = kind_dir(root, kind).join(index_path(n));
    let mut name = base
        .file_name()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    name.push(".p");
    base.with_file_name(name)
}

/// Whether any hash tile of `level` exists on disk.
pub fn level_exists(root: &Path, kind: TileKind) -> bool {
    kind_dir(root, kind).is_dir()
}

/// Parses a path below `tile/` (such as `0/x001/234.p/7` or `entries/005`) into the tile
/// it names; `None` for anything that is not a tlog-tiles path.
pub fn parse(path: &str) -> Option<(TileKind, u64, usize)> {
    let mut parts: Vec<&str> = path.split('/').collect();
    let kind = match parts.first()? {
        &"entries" => TileKind::Entries,
        l => TileKind::Hashes(l.parse::<u8>().ok().filter(|n| n.to_string() == *l)?),
    };
    parts.remove(0);
    let width = match parts.as_slice() {
        [.., last, text] if last.ends_with(".p") => {
            let w: usize = text
                .parse()
                .ok()
                .filter(|w| (1..super::tree::TILE_WIDTH).contains(w))?;
            if w.to_string() != *text {
                return None;
            }
            let n = parts.len();
            parts.truncate(n - 1);
            if let Some(last) = parts.last_mut() {
                *last = last.strip_suffix(".p")?;
            }
            w
        }
        _ => super::tree::TILE_WIDTH,
    };
    let n = parse_index(&parts)?;
    (index_path(n) == parts.join("/")).then_some((kind, n, width))
}

fn parse_index(parts: &[&str]) -> Option<u64> {
    let (last, prefix) = parts.split_last()?;
    let mut n: u64 = 0;
    for p in prefix {
        let digits = p.strip_prefix('x')?;
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
    }
    if last.len() != 3 || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.checked_mul(1000)?.checked_add(last.parse().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_follow_tlog_tiles() {
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(5), "005");
        assert_eq!(index_path(999), "999");
        assert_eq!(index_path(1000), "x001/000");
        assert_eq!(index_path(1234067), "x001/x234/067");
    }

    #[test]
    fn tile_paths_parse_back() {
        assert_eq!(
            parse("0/x001/x234/067"),
            Some((TileKind::Hashes(0), 1234067, 256))
        );
        assert_eq!(parse("1/001.p/7"), Some((TileKind::Hashes(1), 1, 7)));
        assert_eq!(
            parse("entries/x001/000.p/255"),
            Some((TileKind::Entries, 1000, 255))
        );
        for bad in [
            "",
            "0",
            "0/1",
            "0/0001",
            "0/x000/001",
            "0/001.p/0",
            "0/001.p/256",
            "0/001.p/07",
            "9x/001",
            "entries/../001",
            "0/001/extra",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Any text below `tile/` parses to a tile or to `None`, never a panic; and what
        /// parses is the tile's one path, never another spelling of it (`0/01`, `0/x000/001`).
        #[test]
        fn any_path_parses_or_is_refused(
            near in "(entries|[0-9]{1,3}|x1)(/x?[0-9]{1,4}){1,4}(\\.p/[0-9]{1,3})?",
            path in "[0-9a-z./x]{0,40}",
            any in ".{0,40}",
        ) {
            for text in [&near, &path, &any] {
                if let Some((kind, n, width)) = parse(text) {
                    let canonical = tile_path(Path::new("/"), kind, n, width);
                    let canonical = canonical.strip_prefix("/tile").expect("below tile/");
                    proptest::prop_assert_eq!(canonical.to_str(), Some(text.as_str()));
                }
            }
        }

        #[test]
        fn tile_paths_parse_back_to_their_tile(
            level in proptest::option::of(0u8..64),
            n in proptest::num::u64::ANY,
            width in 1usize..=256,
        ) {
            let kind = level.map_or(TileKind::Entries, TileKind::Hashes);
            let path = tile_path(Path::new("/"), kind, n, width);
            let below = path.strip_prefix("/tile").expect("below tile/");
            let text = below.to_str().expect("UTF-8");
            proptest::prop_assert_eq!(parse(text), Some((kind, n, width)));
        }
    }

    #[test]
    fn tile_paths_follow_tlog_tiles() {
        let root = Path::new("/log");
        assert_eq!(
            tile_path(root, TileKind::Hashes(0), 1234067, 256),
            Path::new("/log/tile/0/x001/x234/067")
        );
        assert_eq!(
            tile_path(root, TileKind::Hashes(1), 1, 7),
            Path::new("/log/tile/1/001.p/7")
        );
        assert_eq!(
            tile_path(root, TileKind::Entries, 1000, 255),
            Path::new("/log/tile/entries/x001/000.p/255")
        );
    }
}
