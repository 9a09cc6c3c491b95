//! SHA-256 and SHA-512 with their state in the open, so that an upload's hash can be saved
//! after one request and taken up by the next, on any instance, without reading back what
//! was already received.
//!
//! The rounds are `sha2`'s own compression functions (which use the CPU's SHA extensions);
//! only the block buffering and the final padding are ours. A saved state is written the
//! way Go's `crypto/sha256` and `crypto/sha512` marshal theirs (`encoding.BinaryMarshaler`),
//! which is what registry:2 stores under `_uploads/<id>/hashstates/<alg>/<offset>`: an
//! upload either of us began can be continued by the other.

use sha2::digest::generic_array::typenum::U64;
use sha2::digest::generic_array::GenericArray;

/// The SHA-2 variants, by the sizes that differ between them.
pub(crate) trait Variant: Clone {
    type Word: Copy;
    const BLOCK: usize;
    const OUT: usize;
    /// Go's marshalling prefix for the variant.
    const MAGIC: &'static [u8; 4];
    const INITIAL: [Self::Word; 8];
    /// Runs the rounds over whole blocks.
    fn compress(state: &mut [Self::Word; 8], blocks: &[u8]);
    fn word_bytes(w: Self::Word, out: &mut Vec<u8>);
    fn word_from(b: &[u8]) -> Self::Word;
    /// Bytes of the message length in the padding (8 for SHA-256, 16 for SHA-512).
    const LEN_BYTES: usize;
}

#[derive(Clone, Debug)]
pub(crate) struct Sha256;
#[derive(Clone, Debug)]
pub(crate) struct Sha512;

impl Variant for Sha256 {
    type Word = u32;
    const BLOCK: usize = 64;
    const OUT: usize = 32;
    const MAGIC: &'static [u8; 4] = b"sha\x03";
    const INITIAL: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    fn compress(state: &mut [u32; 8], blocks: &[u8]) {
        // All the blocks in one call, read where they are: one call per block costs a fifth
        // more, and copying them into an array of blocks first cost 4 % of a push's CPU.
        sha2::compress256(state, as_blocks(blocks));
    }
    fn word_bytes(w: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&w.to_be_bytes());
    }
    fn word_from(b: &[u8]) -> u32 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&b[..4]);
        u32::from_be_bytes(a)
    }
    const LEN_BYTES: usize = 8;
}

impl Variant for Sha512 {
    type Word = u64;
    const BLOCK: usize = 128;
    const OUT: usize = 64;
    const MAGIC: &'static [u8; 4] = b"sha\x07";
    const INITIAL: [u64; 8] = [
        0x6a09e667f3bcc908,
        0xbb67ae8584caa73b,
        0x3c6ef372fe94f82b,
        0xa54ff53a5f1d36f1,
        0x510e527fade682d1,
        0x9b05688c2b3e6c1f,
        0x1f83d9abfb41bd6b,
        0x5be0cd19137e2179,
    ];
    fn compress(state: &mut [u64; 8], blocks: &[u8]) {
        // One call per block: the rounds cost enough more than SHA-256's to hide the call.
        for b in blocks.chunks_exact(128) {
            sha2::compress512(state, std::slice::from_ref(GenericArray::from_slice(b)));
        }
    }
    fn word_bytes(w: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&w.to_be_bytes());
    }
    fn word_from(b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        u64::from_be_bytes(a)
    }
    const LEN_BYTES: usize = 16;
}

/// `bytes` (whole 64-byte blocks; a partial block at the end is left out) as the blocks
/// `sha2` takes, without copying them.
fn as_blocks(bytes: &[u8]) -> &[GenericArray<u8, U64>] {
    // A block is 64 bytes with no alignment of its own (an array of arrays of u8).
    const _: () = assert!(std::mem::size_of::<GenericArray<u8, U64>>() == 64);
    const _: () = assert!(std::mem::align_of::<GenericArray<u8, U64>>() == 1);
    let n = bytes.len() / 64;
    // SAFETY: `GenericArray<u8, U64>` is 64 bytes of u8 with alignment 1 (checked above),
    // so `n * 64` bytes of `bytes` are `n` valid blocks, borrowed for as long as `bytes`.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<GenericArray<u8, U64>>(), n) }
}

/// A running hash: the chaining state, the bytes of a block not yet complete, and how many
/// bytes were hashed in all.
#[derive(Clone)]
pub(crate) struct Sha2<V: Variant> {
    state: [V::Word; 8],
    /// Only the first `buffered` bytes count; sized for the larger block.
    block: [u8; 128],
    buffered: usize,
    len: u64,
}

impl<V: Variant> Default for Sha2<V> {
    fn default() -> Self {
        Sha2 {
            state: V::INITIAL,
            block: [0; 128],
            buffered: 0,
            len: 0,
        }
    }
}

impl<V: Variant> Sha2<V> {
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.buffered > 0 {
            let take = (V::BLOCK - self.buffered).min(data.len());
            self.block[self.buffered..self.buffered + take].copy_from_slice(&data[..take]);
            self.buffered += take;
            data = &data[take..];
            if self.buffered < V::BLOCK {
                return;
            }
            V::compress(&mut self.state, &self.block[..V::BLOCK]);
            self.buffered = 0;
        }
        let whole = data.len() - data.len() % V::BLOCK;
        V::compress(&mut self.state, &data[..whole]);
        let rest = &data[whole..];
        self.block[..rest.len()].copy_from_slice(rest);
        self.buffered = rest.len();
    }

    /// The digest's bytes.
    pub fn finalize(mut self) -> Vec<u8> {
        let bits = u128::from(self.len) * 8;
        let mut tail = [0u8; 256];
        let n = self.buffered;
        tail[..n].copy_from_slice(&self.block[..n]);
        tail[n] = 0x80;
        let total = if n + 1 + V::LEN_BYTES <= V::BLOCK {
            V::BLOCK
        } else {
            2 * V::BLOCK
        };
        let len_bytes = bits.to_be_bytes();
        tail[total - V::LEN_BYTES..total].copy_from_slice(&len_bytes[16 - V::LEN_BYTES..]);
        V::compress(&mut self.state, &tail[..total]);
        let mut out = Vec::with_capacity(V::OUT);
        for w in self.state {
            V::word_bytes(w, &mut out);
        }
        out
    }

    /// The state as Go marshals it: magic, chaining words, the block buffer (zero padded),
    /// and the byte count, all big-endian.
    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + V::OUT + V::BLOCK + 8);
        out.extend_from_slice(V::MAGIC);
        for w in self.state {
            V::word_bytes(w, &mut out);
        }
        out.extend_from_slice(&self.block[..self.buffered]);
        out.resize(4 + V::OUT + V::BLOCK, 0);
        out.extend_from_slice(&self.len.to_be_bytes());
        out
    }

    /// A state [`Sha2::save`] wrote (or Go's `MarshalBinary`); `None` if it is not one.
    pub fn load(saved: &[u8]) -> Option<Self> {
        if saved.len() != 4 + V::OUT + V::BLOCK + 8 || &saved[..4] != V::MAGIC {
            return None;
        }
        let word = V::OUT / 8;
        let mut state = V::INITIAL;
        for (i, w) in state.iter_mut().enumerate() {
            *w = V::word_from(&saved[4 + i * word..]);
        }
        let at = 4 + V::OUT;
        let mut len = [0u8; 8];
        len.copy_from_slice(&saved[at + V::BLOCK..]);
        let len = u64::from_be_bytes(len);
        let buffered = (len % V::BLOCK as u64) as usize;
        let mut block = [0u8; 128];
        block[..buffered].copy_from_slice(&saved[at..at + buffered]);
        Some(Sha2 {
            state,
            block,
            buffered,
            len,
        })
    }

    /// Bytes hashed so far.
    pub fn hashed(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn agrees_with_sha2_at_every_length_and_split() {
        for n in [
            0,
            1,
            55,
            56,
            63,
            64,
            65,
            111,
            112,
            127,
            128,
            129,
            1000,
            4096 + 17,
        ] {
            let d = data(n);
            for cut in [0, n / 3, n] {
                let mut a = Sha2::<Sha256>::default();
                a.update(&d[..cut]);
                // Saved and loaded in the middle, as between two requests.
                let mut a = Sha2::<Sha256>::load(&a.save()).expect("load");
                a.update(&d[cut..]);
                assert_eq!(a.finalize(), sha2::Sha256::digest(&d).to_vec(), "{n}/{cut}");
                let mut b = Sha2::<Sha512>::default();
                b.update(&d[..cut]);
                let mut b = Sha2::<Sha512>::load(&b.save()).expect("load");
                b.update(&d[cut..]);
                assert_eq!(b.finalize(), sha2::Sha512::digest(&d).to_vec(), "{n}/{cut}");
            }
        }
    }

    /// Go's `sha256.New()` after writing "abc", as `MarshalBinary` returns it: the format
    /// registry:2 keeps in the bucket.
    #[test]
    fn saves_the_way_go_marshals() {
        let mut h = Sha2::<Sha256>::default();
        h.update(b"abc");
        let s = h.save();
        assert_eq!(s.len(), 108);
        assert_eq!(&s[..4], b"sha\x03");
        assert_eq!(&s[4..8], &0x6a09e667u32.to_be_bytes());
        assert_eq!(&s[36..39], b"abc");
        assert!(s[39..100].iter().all(|b| *b == 0));
        assert_eq!(&s[100..], &3u64.to_be_bytes());
        assert!(Sha2::<Sha512>::load(&s).is_none());
        assert_eq!(Sha2::<Sha512>::default().save().len(), 4 + 64 + 128 + 8);
    }
}
