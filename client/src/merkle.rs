//! The RFC 9162 §2.1 Merkle tree over SHA-256: hashing, proof generation and proof verification.
//!
//! Everything here is pure computation. Verification treats every input (proof hashes, sizes,
//! indices, roots) as hostile: malformed evidence is reported as a [`ProofError`], never a panic.
//! Provers read hashes of complete subtrees from a [`SubtreeSource`], so a log stored as tiles can
//! answer proofs with O(log n) reads and without rebuilding any part of the tree.

use std::sync::OnceLock;

use sha2::digest::core_api::{Block, Buffer, CoreProxy, FixedOutputCore, UpdateCore};
use sha2::digest::Output;
use sha2::{Digest, Sha256};

/// The SHA-256 compression core behind [`Sha256`], driven directly by [`node_hash`].
type NodeCore = <Sha256 as CoreProxy>::Core;

/// A SHA-256 tree hash (leaf, interior node or root).
pub type Hash = [u8; 32];

/// Bytes in a [`Hash`](type@Hash).
pub const HASH_LEN: usize = 32;

/// Domain separation between leaves and interior nodes (RFC 9162 §2.1.1): without it a leaf
/// holding the concatenation of two hashes would collide with their parent node.
const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// SHA-256 of the empty string, the RFC's MTH({}).
const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The leaf hash SHA-256(0x00 || leaf).
#[inline]
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    Sha256::new_with_prefix([LEAF_PREFIX])
        .chain_update(leaf)
        .finalize()
        .into()
}

/// The interior node hash SHA-256(0x01 || left || right).
#[inline]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // The 65-byte message is one full block plus one byte, so the block is compressed straight
    // from the stack and only the last byte goes through the padding buffer; this skips the
    // generic streaming wrapper, whose copying is a measurable share of a two-block hash.
    let mut core = NodeCore::default();
    let mut block = Block::<NodeCore>::default();
    let (prefix, rest) = block.split_at_mut(1);
    let (l, r) = rest.split_at_mut(HASH_LEN);
    prefix.copy_from_slice(&[NODE_PREFIX]);
    l.copy_from_slice(left);
    let (right_head, right_last) = right.split_at(HASH_LEN - 1);
    r.copy_from_slice(right_head);
    core.update_blocks(std::slice::from_ref(&block));
    let mut tail = Buffer::<NodeCore>::new(right_last);
    let mut out = Output::<NodeCore>::default();
    core.finalize_fixed_core(&mut tail, &mut out);
    out.into()
}

/// The root of the empty tree, SHA-256("").
#[inline]
pub fn empty_root() -> Hash {
    EMPTY_ROOT
}

/// Converts a hash received on the wire; any length other than [`HASH_LEN`] is an error.
pub fn hash_from_bytes(b: &[u8]) -> Result<Hash, ProofError> {
    Hash::try_from(b).map_err(|_| ProofError::BadHashLength { len: b.len() })
}

/// Converts a list of wire hashes (e.g. a proof); fails on the first one of the wrong length.
pub fn hashes_from_bytes<B: AsRef<[u8]>>(v: &[B]) -> Result<Vec<Hash>, ProofError> {
    v.iter().map(|b| hash_from_bytes(b.as_ref())).collect()
}

/// What is wrong with a piece of Merkle evidence (or with a request to prove something).
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ProofError {
    /// A wire hash (root, leaf hash or proof element) has the wrong length.
    #[error("a hash is {len} bytes long, not {HASH_LEN}")]
    BadHashLength {
        /// The length received.
        len: usize,
    },
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not inside a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The proof's length does not match the one its sizes (and index) determine.
    #[error("the proof has {got} hashes where the sizes call for {expected}")]
    WrongProofLength {
        /// Hashes the sizes call for.
        expected: usize,
        /// Hashes received.
        got: usize,
    },
    /// The inclusion proof leads to a different root.
    #[error("the inclusion proof does not lead to the expected root")]
    RootMismatch,
    /// The consistency proof does not lead to the old root.
    #[error("the consistency proof does not lead to the old root (root1)")]
    Root1Mismatch,
    /// The consistency proof does not lead to the new root (or, for equal sizes, the roots
    /// differ).
    #[error("the consistency proof does not lead to the new root (root2)")]
    Root2Mismatch,
    /// The "old" tree is larger than the "new" one.
    #[error("consistency from size {from} to the smaller size {to}")]
    SizeOrder {
        /// The old size (size1).
        from: u64,
        /// The new size (size2).
        to: u64,
    },
    /// Consistency from the empty tree was asked for or claimed.
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyFromTree,
    /// Equal sizes came with proof hashes.
    #[error("the sizes are equal, so the consistency proof must be empty")]
    NonEmptyProofForEqualSizes,
    /// A [`MemoryTree`] was asked about a size larger than itself.
    #[error("the tree holds {len} leaves, so nothing can be proved at size {size}")]
    SizeBeyondTree {
        /// The size asked about.
        size: u64,
        /// Leaves in the tree.
        len: u64,
    },
    /// A [`CompactRange`] was given a hash count that does not fit its size.
    #[error("a compact range of size {size} has {expected} hashes, not {got}")]
    WrongRangeLength {
        /// The claimed size.
        size: u64,
        /// Hashes that size needs (its number of set bits).
        expected: usize,
        /// Hashes given.
        got: usize,
    },
    /// A [`CompactRange`] cannot grow past `u64::MAX` leaves.
    #[error("the tree already holds the maximum number of leaves")]
    SizeOverflow,
}

/// Splits the audit path of leaf `index` in a tree of `size` (`index < size`) into its "inner"
/// part, the levels where the leaf's ancestor has a sibling inside the perfect subtree shared with
/// the last leaf's path, and its "border" part, the left siblings met once the path runs along the
/// tree's right edge (where a node without a right sibling is promoted unchanged, as in the RFC's
/// split at the largest power of two). This is what makes PATH computable bottom-up from bits.
#[inline]
fn decompose(index: u64, size: u64) -> (u32, u32) {
    let last = size.saturating_sub(1);
    let inner = u64::BITS - (index ^ last).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

/// A mask of the `bits` low bits, for any `bits` up to 64.
#[inline]
fn low_mask(bits: u32) -> u64 {
    1u64.checked_shl(bits).map_or(u64::MAX, |b| b - 1)
}

/// The number of "inner" hashes at the front of a well-formed inclusion proof of leaf `index`
/// in a tree of `tree_size` (see [`decompose`]), or why the proof cannot be one.
fn inclusion_shape(index: u64, tree_size: u64, proof: &[Hash]) -> Result<usize, ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    let (inner, border) = decompose(index, tree_size);
    let expected = inner as usize + border as usize;
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    Ok(inner as usize)
}

/// The root that an inclusion proof implies for `leaf_hash` at `index` in a tree of `tree_size`.
///
/// The result alone proves nothing: compare it with a trusted root (see [`verify_inclusion`]).
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    let inner = inclusion_shape(index, tree_size, proof)?;
    let mut acc = *leaf_hash;
    let mut bits = index;
    for (step, sibling) in proof.iter().enumerate() {
        // Inside the shared perfect subtree the index's bits say which side the path is on;
        // along the right edge the sibling is always on the left.
        acc = if step < inner && bits & 1 == 0 {
            node_hash(&acc, sibling)
        } else {
            node_hash(sibling, &acc)
        };
        bits >>= 1;
    }
    Ok(acc)
}

/// Checks that `proof` shows `leaf_hash` at `index` in the tree of `tree_size` with root `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // Roots and proofs are public, so a plain (not constant-time) comparison leaks nothing.
    if root_from_inclusion_proof(leaf_hash, index, tree_size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// One inclusion proof for [`verify_inclusions`]: the arguments of [`verify_inclusion`].
#[derive(Debug, Clone, Copy)]
pub struct Inclusion<'a> {
    /// The leaf's hash, [`leaf_hash`] of its bytes.
    pub leaf_hash: Hash,
    /// The leaf's index.
    pub index: u64,
    /// The size of the tree the proof is against.
    pub tree_size: u64,
    /// The audit path, from the leaf up.
    pub proof: &'a [Hash],
    /// The root the proof must lead to.
    pub root: &'a Hash,
}

/// A proof being walked by [`verify_inclusions`].
struct Walk<'a> {
    /// Its position in the caller's list.
    at: usize,
    check: Inclusion<'a>,
    inner: usize,
    step: usize,
    acc: Hash,
    bits: u64,
}

impl Walk<'_> {
    /// The pair to hash at this step: (left, right).
    fn pair(&self) -> Option<(&Hash, &Hash)> {
        let sibling = self.check.proof.get(self.step)?;
        Some(if self.step < self.inner && self.bits & 1 == 0 {
            (&self.acc, sibling)
        } else {
            (sibling, &self.acc)
        })
    }

    fn advance(&mut self, parent: Hash) {
        self.acc = parent;
        self.bits >>= 1;
        self.step += 1;
    }

    fn verdict(&self) -> Result<(), ProofError> {
        if self.acc == *self.check.root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        }
    }
}

/// [`verify_inclusion`] for each of `proofs`: the same verdicts, in order.
///
/// Faster than checking them one by one when there are several (a bundle's entries, a batch
/// of receipts): a proof is a chain of hashes each waiting for the one before, and up to four
/// chains are advanced together so that the CPU's SHA-256 unit works on one while waiting for
/// another (BENCHMARKS.md). Proofs may be against different trees.
pub fn verify_inclusions(proofs: &[Inclusion<'_>]) -> Vec<Result<(), ProofError>> {
    let mut verdicts: Vec<Result<(), ProofError>> = Vec::with_capacity(proofs.len());
    let mut queue = Vec::with_capacity(proofs.len());
    for (at, check) in proofs.iter().enumerate() {
        match inclusion_shape(check.index, check.tree_size, check.proof) {
            Ok(inner) => {
                // Until its walk settles it: a walk lost by a bug fails closed.
                verdicts.push(Err(ProofError::RootMismatch));
                queue.push(Walk {
                    at,
                    check: *check,
                    inner,
                    step: 0,
                    acc: check.leaf_hash,
                    bits: check.index,
                });
            }
            Err(e) => verdicts.push(Err(e)),
        }
    }
    // Later proofs are taken from the back; the order of the work does not matter.
    queue.reverse();
    let mut lanes: [Option<Walk<'_>>; lanes::LANES] = std::array::from_fn(|_| None);
    loop {
        // Fill the free lanes, settling the walks that are finished (a proof of a one-leaf
        // tree has no step at all).
        for lane in &mut lanes {
            loop {
                if let Some(walk) = lane.as_ref().filter(|w| w.pair().is_none()) {
                    if let Some(v) = verdicts.get_mut(walk.at) {
                        *v = walk.verdict();
                    }
                    *lane = None;
                }
                if lane.is_some() {
                    break;
                }
                match queue.pop() {
                    Some(walk) => *lane = Some(walk),
                    None => break,
                }
            }
        }
        let busy = lanes.iter().filter(|l| l.is_some()).count();
        if busy == 0 {
            break;
        }
        if busy <= 2 {
            // One chain alone gains nothing from the lanes, and two need only two of them.
            let mut walks = lanes.iter_mut().flatten();
            match (walks.next(), walks.next()) {
                (Some(a), Some(b)) => {
                    if let (Some(pa), Some(pb)) = (a.pair(), b.pair()) {
                        let (x, y) = lanes::node_hash_pair(pa, pb);
                        a.advance(x);
                        b.advance(y);
                    }
                }
                (Some(a), None) => {
                    if let Some((left, right)) = a.pair() {
                        let parent = node_hash(left, right);
                        a.advance(parent);
                    }
                }
                _ => {}
            }
            continue;
        }
        let idle = ([0u8; HASH_LEN], [0u8; HASH_LEN]);
        let pairs = std::array::from_fn(|i| {
            lanes
                .get(i)
                .and_then(|l| l.as_ref())
                .and_then(Walk::pair)
                .unwrap_or((&idle.0, &idle.1))
        });
        let parents = lanes::node_hashes(pairs);
        for (lane, parent) in lanes.iter_mut().zip(parents) {
            if let Some(walk) = lane {
                walk.advance(parent);
            }
        }
    }
    verdicts
}

/// Checks that the tree of `size2` with root `root2` extends the tree of `size1` with `root1`.
///
/// Equal sizes need an empty proof and equal roots. A proof from the empty tree (`size1 == 0`) is
/// refused even though every tree extends it: it proves nothing, and accepting it would let a
/// caller believe it had checked something.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizeOrder {
            from: size1,
            to: size2,
        });
    }
    if size1 == 0 {
        return Err(ProofError::EmptyFromTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::NonEmptyProofForEqualSizes);
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::Root2Mismatch)
        };
    }

    // SUBPROOF is the audit path of the last old leaf in the new tree, cut below the largest
    // perfect subtree that ends at size1 (which the verifier can stand on instead of a leaf). That
    // subtree's hash leads the proof unless it is the whole old tree, whose root we already hold.
    let last1 = size1 - 1;
    let shift = size1.trailing_zeros();
    let (inner_full, border) = decompose(last1, size2);
    let inner = inner_full.saturating_sub(shift) as usize;
    let border = border as usize;
    let start = usize::from(size1 != 1u64 << shift);
    let expected = start + inner + border;
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    let (seed, rest) = match proof.split_first() {
        Some((first, rest)) if start == 1 => (*first, rest),
        _ => (*root1, proof),
    };
    let (inner_proof, border_proof) =
        rest.split_at_checked(inner)
            .ok_or(ProofError::WrongProofLength {
                expected,
                got: proof.len(),
            })?;

    // Both roots are rebuilt in one pass: the old tree only ever has left siblings above the seed,
    // while the new tree also takes the right siblings.
    let mut old = seed;
    let mut new = seed;
    let mut bits = last1 >> shift;
    // Where both take the same left sibling they are one hash while they are equal, and two
    // independent ones, computed together, once they differ.
    let both = |sibling: &Hash, old: &Hash, new: &Hash| {
        if old == new {
            let parent = node_hash(sibling, old);
            (parent, parent)
        } else {
            lanes::node_hash_pair((sibling, old), (sibling, new))
        }
    };
    for sibling in inner_proof {
        if bits & 1 == 1 {
            (old, new) = both(sibling, &old, &new);
        } else {
            new = node_hash(&new, sibling);
        }
        bits >>= 1;
    }
    for sibling in border_proof {
        (old, new) = both(sibling, &old, &new);
    }
    if old != *root1 {
        return Err(ProofError::Root1Mismatch);
    }
    if new != *root2 {
        return Err(ProofError::Root2Mismatch);
    }
    Ok(())
}

/// A source of hashes of complete (perfect) subtrees: `subtree(level, index)` is the MTH of leaves
/// `[index << level, (index + 1) << level)`. Storage implements this (the node reads C2SP tlog
/// tiles); proofs and roots are built from it with O(log n) calls and never rebuild the tree.
pub trait SubtreeSource {
    /// Why a subtree hash could not be read (missing, I/O, corrupt storage, ...).
    type Error;
    /// The MTH of leaves `[index << level, (index + 1) << level)`, which must all exist.
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

impl<S: SubtreeSource + ?Sized> SubtreeSource for &S {
    type Error = S::Error;
    #[inline]
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, S::Error> {
        (**self).subtree(level, index)
    }
}

/// Why a proof or root could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ProveError<E> {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not inside a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// `size1 > size2`.
    #[error("consistency from size {from} to the smaller size {to}")]
    SizeOrder {
        /// The old size (size1).
        from: u64,
        /// The new size (size2).
        to: u64,
    },
    /// `size1 == 0`: see [`prove_consistency`].
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyFromTree,
    /// The source could not supply a subtree hash.
    #[error(transparent)]
    Source(E),
}

/// How the provers read the tree: complete subtrees, plus the MTH of a right-edge range that is
/// not a complete subtree, which a source with cached edge hashes can answer without hashing.
trait Nodes {
    type Error;
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;

    /// MTH(D[lo:lo+len]) for `len >= 1` and `lo` a multiple of a power of two not below `len`,
    /// which is the shape of every range the RFC's recursion visits.
    #[inline]
    fn range(&self, lo: u64, len: u64) -> Result<Hash, Self::Error> {
        fold_range(self, lo, len)
    }
}

/// The RFC splits a range at its largest power of two below the size, so the range is a chain of
/// perfect subtrees (one per set bit of `len`, largest first) nested to the right: fold from the
/// smallest. Subtree `b` ends where the bits of the range's end below `b` begin.
fn fold_range<N: Nodes + ?Sized>(nodes: &N, lo: u64, len: u64) -> Result<Hash, N::Error> {
    let end = lo | len;
    let mut bits = len;
    let low = bits.trailing_zeros();
    let mut acc = nodes.perfect(low, (end >> low).saturating_sub(1))?;
    bits &= bits.wrapping_sub(1);
    while bits != 0 {
        let level = bits.trailing_zeros();
        acc = node_hash(
            &nodes.perfect(level, (end >> level).saturating_sub(1))?,
            &acc,
        );
        bits &= bits - 1;
    }
    Ok(acc)
}

struct FromSource<'a, S>(&'a S);

impl<S: SubtreeSource> Nodes for FromSource<'_, S> {
    type Error = S::Error;
    #[inline]
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, S::Error> {
        // Levels come from bit positions of u64 values, so they are below 64 and fit.
        self.0.subtree(level as u8, index)
    }
}

fn root_with<N: Nodes>(nodes: &N, size: u64) -> Result<Hash, N::Error> {
    if size == 0 {
        Ok(empty_root())
    } else {
        nodes.range(0, size)
    }
}

/// PATH(index, D[0:size]) bottom-up, from the same decomposition the verifier uses.
fn inclusion_with<N: Nodes>(
    nodes: &N,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProveError<N::Error>> {
    if index >= size {
        return Err(ProveError::IndexOutOfRange { index, size });
    }
    let (inner, border) = decompose(index, size);
    let mut proof = Vec::with_capacity(inner as usize + border as usize);
    path_into(nodes, index, size, 0, inner, &mut proof).map_err(ProveError::Source)?;
    border_into(nodes, index, inner, &mut proof).map_err(ProveError::Source)?;
    Ok(proof)
}

/// Appends the inner siblings of leaf `index`'s path from level `from` up to (excluding) `inner`.
/// Only the topmost can be an incomplete subtree: it holds the tree's last leaf, and everything
/// below it lies in the complete left half of the node where the paths of `index` and of the
/// last leaf part.
fn path_into<N: Nodes>(
    nodes: &N,
    index: u64,
    size: u64,
    from: u32,
    inner: u32,
    out: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    for level in from..inner {
        let sibling = (index >> level) ^ 1;
        let hash = if level + 1 == inner && size & low_mask(level) != 0 {
            let lo = sibling << level;
            nodes.range(lo, size - lo)?
        } else {
            nodes.perfect(level, sibling)?
        };
        out.push(hash);
    }
    Ok(())
}

/// Appends the left siblings met along the right edge above level `inner`.
fn border_into<N: Nodes>(
    nodes: &N,
    index: u64,
    inner: u32,
    out: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    let mut rest = index.checked_shr(inner).unwrap_or(0);
    while rest != 0 {
        let level = inner + rest.trailing_zeros();
        out.push(nodes.perfect(level, (index >> level) - 1)?);
        rest &= rest - 1;
    }
    Ok(())
}

/// SUBPROOF(size1, D[0:size2], true) bottom-up; see [`verify_consistency`] for its shape.
fn consistency_with<N: Nodes>(
    nodes: &N,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, ProveError<N::Error>> {
    if size1 > size2 {
        return Err(ProveError::SizeOrder {
            from: size1,
            to: size2,
        });
    }
    if size1 == 0 {
        return Err(ProveError::EmptyFromTree);
    }
    if size1 == size2 {
        return Ok(Vec::new());
    }
    let last1 = size1 - 1;
    let shift = size1.trailing_zeros();
    let (inner, border) = decompose(last1, size2);
    let start = usize::from(size1 != 1u64 << shift);
    let mut proof =
        Vec::with_capacity(start + inner.saturating_sub(shift) as usize + border as usize);
    if start == 1 {
        proof.push(
            nodes
                .perfect(shift, last1 >> shift)
                .map_err(ProveError::Source)?,
        );
    }
    path_into(nodes, last1, size2, shift, inner, &mut proof).map_err(ProveError::Source)?;
    border_into(nodes, last1, inner, &mut proof).map_err(ProveError::Source)?;
    Ok(proof)
}

/// The root of the first `size` leaves of `src`: one read per set bit of `size`.
pub fn root<S: SubtreeSource>(src: &S, size: u64) -> Result<Hash, ProveError<S::Error>> {
    root_with(&FromSource(src), size).map_err(ProveError::Source)
}

/// The inclusion proof (RFC 9162 PATH) for leaf `index` in the tree of `size`, bottom-up.
pub fn prove_inclusion<S: SubtreeSource>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    inclusion_with(&FromSource(src), index, size)
}

/// The consistency proof (RFC 9162 SUBPROOF) from the tree of `size1` to the tree of `size2`.
///
/// Equal sizes give an empty proof. `size1 == 0` is an error ([`ProveError::EmptyFromTree`]):
/// the RFC defines no proof from the empty tree and [`verify_consistency`] refuses one, so the
/// prover does not pretend to produce one.
pub fn prove_consistency<S: SubtreeSource>(
    src: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    consistency_with(&FromSource(src), size1, size2)
}

/// A [`MemoryTree`] (or other source) was asked for a subtree it does not hold in full.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
#[error("the tree holds no complete subtree at level {level}, index {index}")]
pub struct MissingSubtree {
    /// Height of the subtree (0 for a leaf).
    pub level: u8,
    /// Position of the subtree among those of its height.
    pub index: u64,
}

/// An in-memory tree keeping every level (for tests, benchmarks, the client-side auditor).
///
/// `levels[l]` holds the hashes of the complete subtrees at level `l`, so an append hashes only the
/// parents it completes (amortised one hash). Hashes of the incomplete right edge are computed on
/// the first root or proof request after an append and then reused until the next append.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    /// `edge[l]`: MTH of the leaves under the level-`l` ancestor of the last leaf, cut at `len()`.
    edge: OnceLock<Vec<Hash>>,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree with room for `leaves` leaves before any level reallocates.
    pub fn with_capacity(leaves: usize) -> Self {
        let mut levels = Vec::with_capacity(usize::BITS as usize);
        let mut n = leaves;
        while n > 0 {
            levels.push(Vec::with_capacity(n));
            n /= 2;
        }
        Self {
            levels,
            edge: OnceLock::new(),
        }
    }

    /// Appends a leaf by its hash (see [`leaf_hash`]).
    pub fn push_leaf_hash(&mut self, h: Hash) {
        if self.edge.get().is_some() {
            self.edge = OnceLock::new();
        }
        let mut carry = h;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(carry);
            // A node at an odd position is a right child: its parent just became complete.
            match row.as_slice() {
                [.., left, right] if row.len() & 1 == 0 => carry = node_hash(left, right),
                _ => break,
            }
            level += 1;
        }
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |row| row.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hashes, in order.
    pub fn leaf_hashes(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.edge().last().copied().unwrap_or(EMPTY_ROOT)
    }

    /// The root of the tree of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        let nodes = self.nodes(size)?;
        root_with(&nodes, size).map_err(|_| self.beyond(size))
    }

    /// The inclusion proof for leaf `index` in the tree of the first `size` leaves.
    pub fn prove_inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        let nodes = self.nodes(size)?;
        inclusion_with(&nodes, index, size).map_err(|e| self.prove_error(e, size))
    }

    /// The consistency proof from `size1` to `size2` leaves; `size1 == 0` is an error, as for
    /// [`prove_consistency`].
    pub fn prove_consistency(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, ProofError> {
        let nodes = self.nodes(size2)?;
        consistency_with(&nodes, size1, size2).map_err(|e| self.prove_error(e, size2))
    }

    fn nodes(&self, size: u64) -> Result<MemoryNodes<'_>, ProofError> {
        if size > self.len() {
            return Err(self.beyond(size));
        }
        Ok(MemoryNodes { tree: self, size })
    }

    fn beyond(&self, size: u64) -> ProofError {
        ProofError::SizeBeyondTree {
            size,
            len: self.len(),
        }
    }

    fn prove_error(&self, e: ProveError<MissingSubtree>, size: u64) -> ProofError {
        match e {
            ProveError::IndexOutOfRange { index, size } => {
                ProofError::IndexOutOfRange { index, size }
            }
            ProveError::SizeOrder { from, to } => ProofError::SizeOrder { from, to },
            ProveError::EmptyFromTree => ProofError::EmptyFromTree,
            ProveError::Source(_) => self.beyond(size),
        }
    }

    fn get(&self, level: u32, index: u64) -> Option<&Hash> {
        self.levels
            .get(usize::try_from(level).ok()?)?
            .get(usize::try_from(index).ok()?)
    }

    fn edge(&self) -> &[Hash] {
        self.edge.get_or_init(|| self.compute_edge())
    }

    /// Walks up from the last leaf: a complete ancestor is already stored, one with two children
    /// costs a hash, one with only a left child is its child.
    fn compute_edge(&self) -> Vec<Hash> {
        let n = self.len();
        let Some(last) = n.checked_sub(1) else {
            return Vec::new();
        };
        let Some(&leaf) = self.get(0, last) else {
            return Vec::new();
        };
        let top = u64::BITS - last.leading_zeros();
        let mut edge = Vec::with_capacity(top as usize + 1);
        let mut acc = leaf;
        edge.push(acc);
        for level in 1..=top {
            let ancestor = last >> level;
            if n & low_mask(level) == 0 {
                if let Some(&h) = self.get(level, ancestor) {
                    acc = h;
                }
            } else if (last >> (level - 1)) & 1 == 1 {
                if let Some(left) = self.get(level - 1, ancestor << 1) {
                    acc = node_hash(left, &acc);
                }
            }
            edge.push(acc);
        }
        edge
    }
}

impl SubtreeSource for MemoryTree {
    type Error = MissingSubtree;
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, MissingSubtree> {
        self.get(u32::from(level), index)
            .copied()
            .ok_or(MissingSubtree { level, index })
    }
}

/// A [`MemoryTree`] seen at `size` leaves; at the full size, edge ranges come from the cache.
struct MemoryNodes<'a> {
    tree: &'a MemoryTree,
    size: u64,
}

impl Nodes for MemoryNodes<'_> {
    type Error = MissingSubtree;

    #[inline]
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, MissingSubtree> {
        self.tree.get(level, index).copied().ok_or(MissingSubtree {
            level: level as u8,
            index,
        })
    }

    fn range(&self, lo: u64, len: u64) -> Result<Hash, MissingSubtree> {
        if self.size == self.tree.len() && lo.checked_add(len) == Some(self.size) && len > 0 {
            // The range is the last leaf's ancestor at the smallest level that covers `len`.
            let level = u64::BITS - (len - 1).leading_zeros();
            if let Some(h) = self.tree.edge().get(level as usize) {
                return Ok(*h);
            }
        }
        fold_range(self, lo, len)
    }
}

/// The right edge of a tree (hashes of its maximal complete subtrees, largest first): enough to
/// append and get the root without storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

impl CompactRange {
    /// The range of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a range from a size and its subtree hashes (largest subtree first); there must be
    /// exactly one hash per set bit of `size`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, ProofError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(ProofError::WrongRangeLength {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    /// Reads the range of the first `size` leaves from a source: one read per set bit of `size`.
    pub fn from_source<S: SubtreeSource>(src: &S, size: u64) -> Result<Self, S::Error> {
        let mut hashes = Vec::with_capacity(size.count_ones() as usize);
        let mut bits = size;
        while bits != 0 {
            let level = u64::BITS - 1 - bits.leading_zeros();
            hashes.push(src.subtree(level as u8, (size >> level) - 1)?);
            bits &= !(1u64 << level);
        }
        Ok(Self { size, hashes })
    }

    /// Number of leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The maximal complete subtree hashes, largest first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The size and the subtree hashes (largest first), as [`CompactRange::from_parts`] takes.
    pub fn into_parts(self) -> (u64, Vec<Hash>) {
        (self.size, self.hashes)
    }

    /// Appends a leaf by its hash.
    pub fn push(&mut self, leaf_hash: Hash) -> Result<(), ProofError> {
        self.push_with(leaf_hash, |_, _, _| {})
    }

    /// Appends a leaf by its hash and reports every subtree that became complete as
    /// `(level, index, hash)`, from the leaf itself (level 0) upwards: exactly the hashes storage
    /// must persist.
    pub fn push_with<F: FnMut(u8, u64, &Hash)>(
        &mut self,
        leaf_hash: Hash,
        mut completed: F,
    ) -> Result<(), ProofError> {
        let new_size = self.size.checked_add(1).ok_or(ProofError::SizeOverflow)?;
        let mut acc = leaf_hash;
        let mut level = 0u8;
        let mut index = self.size;
        completed(level, index, &acc);
        // Each trailing one bit of the old size is a subtree as tall as `acc` waiting for its
        // right sibling.
        for _ in 0..self.size.trailing_ones() {
            let Some(left) = self.hashes.pop() else { break };
            acc = node_hash(&left, &acc);
            level += 1;
            index >>= 1;
            completed(level, index, &acc);
        }
        self.hashes.push(acc);
        self.size = new_size;
        Ok(())
    }

    /// The root of the covered tree.
    pub fn root(&self) -> Hash {
        let mut rev = self.hashes.iter().rev();
        match rev.next() {
            None => EMPTY_ROOT,
            Some(&smallest) => rev.fold(smallest, |acc, h| node_hash(h, &acc)),
        }
    }
}

mod lanes;

#[cfg(test)]
mod tests;
