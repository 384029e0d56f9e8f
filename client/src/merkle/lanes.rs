//! Several independent interior-node hashes computed together.
//!
//! Verifying one proof is a chain of node hashes, each waiting for the one before, so a
//! single chain runs at the *latency* of the CPU's SHA-256 instructions. On x86-64 with the
//! SHA extensions the unit can start a new round before the last one has finished: four
//! chains advanced in lockstep, their rounds interleaved, keep it busy. Measured on the
//! benchmark machine (BENCHMARKS.md): a 21-hash chain takes about 1.7 µs alone and about
//! 0.8 µs a chain when four run together. Calling [`node_hash`] for four chains in turn gains
//! nothing there (each call is too long for the CPU to overlap the next with it); the rounds
//! themselves must alternate, which is what [`node_hashes`] does.
//!
//! Without the SHA extensions (other CPUs, or x86-64 without them) the same function hashes
//! the four pairs one after another with [`node_hash`]: the answers are identical, only the
//! speed differs.

use super::{node_hash, Hash};

/// Node hashes computed together by [`node_hashes`].
pub(crate) const LANES: usize = 4;

/// `[node_hash(l, r) for (l, r) in pairs]`, the four computed together where the CPU allows.
#[inline]
pub(crate) fn node_hashes(pairs: [(&Hash, &Hash); LANES]) -> [Hash; LANES] {
    #[cfg(target_arch = "x86_64")]
    if shani::available() {
        // SAFETY: the CPU has every feature `shani::node_hashes` is compiled for (checked
        // just above), which is all its `unsafe` asks.
        return unsafe { shani::node_hashes(pairs) };
    }
    portable(pairs)
}

/// `(node_hash(a.0, a.1), node_hash(b.0, b.1))`, the two computed together where the CPU
/// allows: for the two roots a consistency proof rebuilds side by side.
#[inline]
pub(crate) fn node_hash_pair(a: (&Hash, &Hash), b: (&Hash, &Hash)) -> (Hash, Hash) {
    #[cfg(target_arch = "x86_64")]
    if shani::available() {
        // SAFETY: as in `node_hashes`.
        let [x, y] = unsafe { shani::node_hashes([a, b]) };
        return (x, y);
    }
    let [x, y] = portable([a, b]);
    (x, y)
}

/// The same answers, one hash after another: the fallback, and the reference in tests.
#[inline]
pub(crate) fn portable<const N: usize>(pairs: [(&Hash, &Hash); N]) -> [Hash; N] {
    pairs.map(|(left, right)| node_hash(left, right))
}

/// SHA-256 of `0x01 || left || right` with the x86 SHA extensions, the lanes' rounds
/// interleaved. The rounds follow Intel's published SHA-NI sequence (as in the `sha2`
/// crate's x86 backend): the state is held as the two vectors ABEF and CDGH, four message
/// words are scheduled at a time with `sha256msg1`/`sha256msg2`, and `sha256rnds2` runs two
/// rounds.
#[cfg(target_arch = "x86_64")]
mod shani {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_loadu_si128, _mm_set_epi32,
        _mm_set_epi64x, _mm_setzero_si128, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32,
        _mm_sha256rnds2_epu32, _mm_shuffle_epi32, _mm_shuffle_epi8, _mm_storeu_si128,
    };

    use super::Hash;

    /// Whether this CPU has what [`node_hashes`] needs (the answer is cached by std).
    #[inline]
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse4.1")
            && std::arch::is_x86_feature_detected!("ssse3")
    }

    /// The SHA-256 round constants K, four to a vector in round order.
    const K: [[u32; 4]; 16] = [
        [0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5],
        [0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5],
        [0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3],
        [0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174],
        [0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc],
        [0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da],
        [0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7],
        [0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967],
        [0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13],
        [0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85],
        [0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3],
        [0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070],
        [0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5],
        [0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3],
        [0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208],
        [0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2],
    ];

    /// The initial hash value H(0) as the vectors ABEF and CDGH, element 0 first: (f, e, b, a)
    /// and (h, g, d, c).
    const H0_ABEF: [u32; 4] = [0x9b05688c, 0x510e527f, 0xbb67ae85, 0x6a09e667];
    const H0_CDGH: [u32; 4] = [0x5be0cd19, 0x1f83d9ab, 0xa54ff53a, 0x3c6ef372];

    /// The node hash's message is 65 bytes: its padded second block is the last byte of
    /// `right`, 0x80, zeros, and the length in bits (520 = 0x208) in the last word.
    const LENGTH_BITS: i32 = 65 * 8;

    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn vector(words: [u32; 4]) -> __m128i {
        // Casts reinterpret the bits, as the intrinsic's signed arguments require.
        _mm_set_epi32(
            words[3] as i32,
            words[2] as i32,
            words[1] as i32,
            words[0] as i32,
        )
    }

    /// Reverses the bytes of each 32-bit element: big-endian message bytes to words.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn byte_swap(v: __m128i) -> __m128i {
        let mask = _mm_set_epi64x(0x0C0D_0E0F_0809_0A0B, 0x0405_0607_0001_0203);
        _mm_shuffle_epi8(v, mask)
    }

    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn schedule(w0: __m128i, w1: __m128i, w2: __m128i, w3: __m128i) -> __m128i {
        let t1 = _mm_sha256msg1_epu32(w0, w1);
        let t2 = _mm_alignr_epi8::<4>(w3, w2);
        _mm_sha256msg2_epu32(_mm_add_epi32(t1, t2), w3)
    }

    /// One compression per lane, the lanes' rounds interleaved. `w` holds each lane's
    /// message block as four vectors of big-endian words.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn compress<const N: usize>(
        abef: &mut [__m128i; N],
        cdgh: &mut [__m128i; N],
        mut w: [[__m128i; 4]; N],
    ) {
        let (abef_in, cdgh_in) = (*abef, *cdgh);
        for (i, k) in K.iter().enumerate() {
            let k = vector(*k);
            for lane in 0..N {
                let words = &mut w[lane];
                let message = if i < 4 {
                    words[i]
                } else {
                    let next = schedule(
                        words[i % 4],
                        words[(i + 1) % 4],
                        words[(i + 2) % 4],
                        words[(i + 3) % 4],
                    );
                    words[i % 4] = next;
                    next
                };
                let t = _mm_add_epi32(message, k);
                cdgh[lane] = _mm_sha256rnds2_epu32(cdgh[lane], abef[lane], t);
                abef[lane] =
                    _mm_sha256rnds2_epu32(abef[lane], cdgh[lane], _mm_shuffle_epi32::<0x0E>(t));
            }
        }
        for lane in 0..N {
            abef[lane] = _mm_add_epi32(abef[lane], abef_in[lane]);
            cdgh[lane] = _mm_add_epi32(cdgh[lane], cdgh_in[lane]);
        }
    }

    /// Loads 16 bytes of a hash.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn load(hash: &Hash, half: usize) -> __m128i {
        let bytes: &[u8; 16] = match half {
            0 => hash.first_chunk(),
            _ => hash.last_chunk(),
        }
        .unwrap_or(&[0; 16]);
        // SAFETY: `bytes` is 16 readable bytes, what an unaligned 128-bit load reads.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    }

    /// The node hashes of `N` pairs.
    ///
    /// # Safety
    /// The CPU must have the SHA extensions, SSSE3 and SSE4.1 ([`available`]).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn node_hashes<const N: usize>(pairs: [(&Hash, &Hash); N]) -> [Hash; N] {
        let zero = _mm_setzero_si128();
        // The byte 0x01 (the node prefix) in the top position, and 0x80 (the padding's first
        // byte) in the bottom one: `alignr` shifts them in front of the bytes that follow.
        let prefix = _mm_set_epi32(0x0100_0000, 0, 0, 0);
        let pad = _mm_set_epi32(0, 0, 0, 0x80);
        let length = _mm_set_epi32(LENGTH_BITS, 0, 0, 0);

        let mut first = [[zero; 4]; N];
        let mut second = [[zero; 4]; N];
        for (lane, (left, right)) in pairs.iter().enumerate() {
            let (l0, l1) = (load(left, 0), load(left, 1));
            let (r0, r1) = (load(right, 0), load(right, 1));
            // Block 1: 0x01, left[0..32], right[0..31]; block 2: right[31], 0x80, zeros,
            // the length.
            first[lane] = [
                byte_swap(_mm_alignr_epi8::<15>(l0, prefix)),
                byte_swap(_mm_alignr_epi8::<15>(l1, l0)),
                byte_swap(_mm_alignr_epi8::<15>(r0, l1)),
                byte_swap(_mm_alignr_epi8::<15>(r1, r0)),
            ];
            second[lane] = [
                byte_swap(_mm_alignr_epi8::<15>(pad, r1)),
                zero,
                zero,
                length,
            ];
        }

        let mut abef = [vector(H0_ABEF); N];
        let mut cdgh = [vector(H0_CDGH); N];
        compress(&mut abef, &mut cdgh, first);
        compress(&mut abef, &mut cdgh, second);

        let mut out = [[0u8; 32]; N];
        for lane in 0..N {
            // ABEF and CDGH back to (a, b, c, d) and (e, f, g, h), as big-endian bytes.
            let feba = _mm_shuffle_epi32::<0x1B>(abef[lane]);
            let dchg = _mm_shuffle_epi32::<0xB1>(cdgh[lane]);
            let dcba = _mm_blend_epi16::<0xF0>(feba, dchg);
            let hgef = _mm_alignr_epi8::<8>(dchg, feba);
            let (head, tail) = out[lane].split_at_mut(16);
            // SAFETY: each half of the 32-byte output is 16 writable bytes, what an
            // unaligned 128-bit store writes.
            unsafe {
                _mm_storeu_si128(head.as_mut_ptr().cast(), byte_swap(dcba));
                _mm_storeu_si128(tail.as_mut_ptr().cast(), byte_swap(hgef));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hashes(pairs: &[(Hash, Hash); LANES]) -> [(&Hash, &Hash); LANES] {
        [0, 1, 2, 3].map(|i| (&pairs[i].0, &pairs[i].1))
    }

    #[test]
    fn equal_to_one_at_a_time_on_edge_bytes() {
        // All zeros, all ones, and the byte values around the padding's 0x80 in the last
        // position of `right` (the one byte of the message in the second block).
        let edges: [[u8; 32]; 4] = [[0; 32], [0xff; 32], [0x80; 32], [0x7f; 32]];
        for left in edges {
            for right in edges {
                let pairs = [(left, right), (right, left), (left, left), (right, right)];
                assert_eq!(node_hashes(hashes(&pairs)), portable(hashes(&pairs)));
            }
        }
    }

    #[test]
    fn agrees_with_the_definition() {
        use sha2::{Digest, Sha256};
        let left = [0x11; 32];
        let right: Hash = std::array::from_fn(|i| i as u8);
        let want: Hash = Sha256::new()
            .chain_update([0x01])
            .chain_update(left)
            .chain_update(right)
            .finalize()
            .into();
        let got = node_hashes([(&left, &right); LANES]);
        assert!(got.iter().all(|h| *h == want));
    }

    /// The tests above go through [`node_hashes`], which takes the SHA-NI path only where
    /// the CPU has it: say so when it does not, rather than compare the fallback with itself.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_sha_ni_path_is_the_one_tested() {
        if !shani::available() {
            eprintln!("this CPU lacks the SHA extensions: only the portable path is tested");
            return;
        }
        let hashes: Vec<Hash> = (0u8..8).map(|i| [i.wrapping_mul(37); 32]).collect();
        let pairs: [(&Hash, &Hash); LANES] = std::array::from_fn(|i| (&hashes[i], &hashes[7 - i]));
        // SAFETY: `shani::available()` holds (checked above).
        let direct = unsafe { shani::node_hashes(pairs) };
        assert_eq!(direct, portable(pairs));
    }

    proptest! {
        #[test]
        fn equal_to_one_at_a_time(pairs in proptest::array::uniform4(any::<(Hash, Hash)>())) {
            prop_assert_eq!(node_hashes(hashes(&pairs)), portable(hashes(&pairs)));
            let (a, b) = node_hash_pair((&pairs[0].0, &pairs[0].1), (&pairs[1].0, &pairs[1].1));
            prop_assert_eq!(a, node_hash(&pairs[0].0, &pairs[0].1));
            prop_assert_eq!(b, node_hash(&pairs[1].0, &pairs[1].1));
        }
    }
}
