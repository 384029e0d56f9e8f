//! RFC 9162 proof verification on hostile evidence, and a differential check of the prover.
//!
//! The input is a `fairtrail_fuzz::MerkleInput` (derived with `arbitrary`):
//! - the hostile half (any sizes and index, hashes and proof elements of any length) goes
//!   through `hashes_from_bytes`, `root_from_inclusion_proof`, `verify_inclusion` and
//!   `verify_consistency`, which must never panic and must agree with each other;
//! - the differential half builds a `MemoryTree` of up to 129 leaves and checks, at the
//!   sizes and index it picks, that the tree's roots and proofs equal those of a naive
//!   recursive implementation of RFC 9162 section 2.1 written here, that they verify, and
//!   that flipping any bit of a proof makes it fail.
#![no_main]

use fairtrail_client::merkle::{
    hash_from_bytes, hashes_from_bytes, leaf_hash, node_hash, root_from_inclusion_proof,
    verify_consistency, verify_inclusion, Hash, MemoryTree, ProofError,
};
use fairtrail_fuzz::MerkleInput;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: MerkleInput| {
    hostile(&input);
    differential(&input);
});

fn hostile(input: &MerkleInput) {
    let proof = match hashes_from_bytes(&input.proof) {
        Ok(p) => p,
        Err(ProofError::BadHashLength { len }) => {
            assert!(input.proof.iter().any(|h| h.len() == len && len != 32));
            return;
        }
        Err(e) => panic!("hashes_from_bytes gave {e:?}"),
    };
    assert_eq!(proof.len(), input.proof.len());
    let (Ok(leaf), Ok(root1), Ok(root2)) = (
        hash_from_bytes(&input.leaf_hash),
        hash_from_bytes(&input.root1),
        hash_from_bytes(&input.root2),
    ) else {
        return;
    };
    let implied = root_from_inclusion_proof(&leaf, input.index, input.size2, &proof);
    let verified = verify_inclusion(&leaf, input.index, input.size2, &proof, &root2);
    match &implied {
        Ok(r) if *r == root2 => assert_eq!(verified, Ok(())),
        Ok(_) => assert_eq!(verified, Err(ProofError::RootMismatch)),
        Err(e) => {
            assert_eq!(verified.as_ref(), Err(e));
            if input.index < input.size2 {
                assert!(matches!(e, ProofError::WrongProofLength { .. }), "{e:?}");
            }
        }
    }
    // A proof has at most one hash per level of a 2^64-leaf tree.
    if implied.is_ok() {
        assert!(proof.len() <= 64);
    }
    let consistent = verify_consistency(input.size1, input.size2, &proof, &root1, &root2);
    if consistent.is_ok() {
        assert!(0 < input.size1 && input.size1 <= input.size2 && proof.len() <= 128);
        if input.size1 == input.size2 {
            assert!(proof.is_empty() && root1 == root2);
        }
    }
}

/// MTH of `leaves` (RFC 9162 section 2.1.1), the slow recursive way.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => fairtrail_client::merkle::empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// PATH(m, D[n]) of RFC 9162 section 2.1.3.1.
fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    let mut p = if m < k {
        path(m, &leaves[..k])
    } else {
        path(m - k, &leaves[k..])
    };
    p.push(if m < k {
        mth(&leaves[k..])
    } else {
        mth(&leaves[..k])
    });
    p
}

/// SUBPROOF(m, D[n], b) of RFC 9162 section 2.1.4.1.
fn subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], b);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

fn flipped(proof: &[Hash], which: u8, bit: u8) -> Vec<Hash> {
    let mut p = proof.to_vec();
    let i = usize::from(which) % p.len();
    p[i][usize::from(bit / 8) % 32] ^= 1 << (bit % 8);
    p
}

fn differential(input: &MerkleInput) {
    let n = usize::from(input.leaves) % 130;
    let hashes: Vec<Hash> = (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut tree = MemoryTree::new();
    for h in &hashes {
        tree.push_leaf_hash(*h);
    }
    assert_eq!(tree.len(), n as u64);
    assert_eq!(tree.root(), mth(&hashes));
    let size2 = usize::from(input.at_size2) % (n + 1);
    let size1 = usize::from(input.at_size1) % (size2 + 1);
    let root2 = tree.root_at(size2 as u64).expect("a root inside the tree");
    assert_eq!(root2, mth(&hashes[..size2]));
    assert!(tree.root_at(n as u64 + 1).is_err());

    if size2 > 0 {
        let index = usize::from(input.at_index) % size2;
        let proof = tree
            .prove_inclusion(index as u64, size2 as u64)
            .expect("an inclusion proof inside the tree");
        assert_eq!(
            proof,
            path(index, &hashes[..size2]),
            "PATH({index}, {size2})"
        );
        let leaf = hashes[index];
        assert_eq!(
            verify_inclusion(&leaf, index as u64, size2 as u64, &proof, &root2),
            Ok(())
        );
        assert_eq!(
            root_from_inclusion_proof(&leaf, index as u64, size2 as u64, &proof),
            Ok(root2)
        );
        if !proof.is_empty() {
            let bad = flipped(&proof, input.corrupt, input.bit);
            assert!(verify_inclusion(&leaf, index as u64, size2 as u64, &bad, &root2).is_err());
        }
        // Another leaf does not verify at this index.
        let other = hashes[(index + 1) % size2];
        if other != leaf {
            assert!(verify_inclusion(&other, index as u64, size2 as u64, &proof, &root2).is_err());
        }
        assert!(tree.prove_inclusion(size2 as u64, size2 as u64).is_err());
    }

    if size1 > 0 {
        let root1 = tree.root_at(size1 as u64).expect("a root inside the tree");
        let proof = tree
            .prove_consistency(size1 as u64, size2 as u64)
            .expect("a consistency proof inside the tree");
        let expected = if size1 == size2 {
            Vec::new()
        } else {
            subproof(size1, &hashes[..size2], true)
        };
        assert_eq!(proof, expected, "PROOF({size1}, {size2})");
        assert_eq!(
            verify_consistency(size1 as u64, size2 as u64, &proof, &root1, &root2),
            Ok(())
        );
        if !proof.is_empty() {
            let bad = flipped(&proof, input.corrupt, input.bit);
            assert!(verify_consistency(size1 as u64, size2 as u64, &bad, &root1, &root2).is_err());
        }
        if size1 < size2 {
            // Roots swapped: the proof does not show the new tree extending the old one.
            assert!(
                verify_consistency(size1 as u64, size2 as u64, &proof, &root2, &root1).is_err()
            );
        }
    } else {
        assert!(tree.prove_consistency(0, size2 as u64).is_err());
    }
}
