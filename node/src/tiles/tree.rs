//! One tile expanded into its internal nodes: the 256 hashes a tlog tile stores, plus every
//! complete subtree above them inside the tile, so that any subtree lookup is O(1).

use fairtrail_client::merkle::{node_hash, Hash};

/// Hashes in a full tile (C2SP tlog-tiles: tiles of height 8).
pub const TILE_WIDTH: usize = 256;
/// Rows of a tile tree: row 0 holds the tile's hashes, row 8 the tile's root once full.
const ROWS: usize = 9;

/// A tile and its complete internal nodes.
///
/// INVARIANT: `rows[h]` holds exactly the complete subtrees of height `h` over `rows[0]`,
/// that is `rows[h].len() == rows[0].len() >> h`.
#[derive(Clone, Debug, Default)]
pub struct TileTree {
    rows: [Vec<Hash>; ROWS],
}

impl TileTree {
    pub fn new() -> Self {
        let mut tree = TileTree::default();
        tree.rows[0].reserve_exact(TILE_WIDTH);
        tree
    }

    /// Expands stored hashes (at most 256) into a tile tree.
    pub fn from_hashes(hashes: &[Hash]) -> Self {
        let mut tree = TileTree::new();
        for h in hashes.iter().take(TILE_WIDTH) {
            tree.push(*h);
        }
        tree
    }

    /// Appends one hash; returns the tile's root when this hash completes the tile.
    ///
    /// # Panics
    /// When the tile is already full: the caller starts a new tile first.
    pub fn push(&mut self, hash: Hash) -> Option<Hash> {
        assert!(self.rows[0].len() < TILE_WIDTH, "push onto a full tile");
        self.rows[0].push(hash);
        let mut row = 0;
        // A node completes whenever its right child does: amortised one hash per push.
        while row + 1 < ROWS && self.rows[row].len().is_multiple_of(2) {
            let n = self.rows[row].len();
            let parent = node_hash(&self.rows[row][n - 2], &self.rows[row][n - 1]);
            self.rows[row + 1].push(parent);
            row += 1;
        }
        if self.is_full() {
            self.rows[ROWS - 1].first().copied()
        } else {
            None
        }
    }

    pub fn width(&self) -> usize {
        self.rows[0].len()
    }

    pub fn is_full(&self) -> bool {
        self.rows[0].len() == TILE_WIDTH
    }

    /// The stored hashes (row 0).
    pub fn hashes(&self) -> &[Hash] {
        &self.rows[0]
    }

    /// The complete subtree of height `height` (0..=8) at position `pos` in its row.
    pub fn get(&self, height: u8, pos: u64) -> Option<Hash> {
        let row = self.rows.get(usize::from(height))?;
        row.get(usize::try_from(pos).ok()?).copied()
    }

    /// The tile's root, when full.
    pub fn root(&self) -> Option<Hash> {
        self.rows[ROWS - 1].first().copied()
    }

    /// The tile's row 0 in tlog-tiles form: hashes concatenated.
    pub fn encode(&self) -> Vec<u8> {
        self.rows[0].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fairtrail_client::merkle::{leaf_hash, MemoryTree, SubtreeSource};

    #[test]
    fn internal_nodes_match_the_tree() {
        let mut memory = MemoryTree::new();
        let mut tile = TileTree::new();
        let mut root = None;
        for i in 0..256u32 {
            let h = leaf_hash(&i.to_be_bytes());
            memory.push_leaf_hash(h);
            root = tile.push(h);
        }
        assert_eq!(root, Some(memory.root()));
        for height in 0..=8u8 {
            for pos in 0..(256u64 >> height) {
                assert_eq!(
                    tile.get(height, pos),
                    Some(memory.subtree(height, pos).unwrap())
                );
            }
        }
        let again = TileTree::from_hashes(tile.hashes());
        assert_eq!(again.root(), tile.root());
    }
}
