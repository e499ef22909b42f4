//! Batch verification of many signatures under one public key.
//!
//! With random weights r_i, all n signatures hold iff (with overwhelming probability)
//! e(pk, Σ r_i·H(m_i)) == e(g, Σ r_i·σ_i): two multi-scalar multiplications and one
//! multi-pairing instead of n pairing checks. The weights are 128-bit, so a forger who does not
//! know them passes a bad batch with probability 2^-128. When the batch fails, halves are
//! checked recursively (with the same weights and hashes) to name the bad entries.

use rand_core::{CryptoRng, RngCore};

use super::point::{pairing_product_is_one, Point};
use super::scheme::Scheme;

/// One signature to check: the message it signs and the decoded signature point.
#[derive(Clone, Debug)]
pub struct BatchEntry {
    pub message: Vec<u8>,
    pub signature: Point,
}

/// Below this many entries, a failing group is checked one signature at a time: bisecting
/// further would cost more pairings than it saves.
const SINGLE_CHECK_BELOW: usize = 4;

/// Verifies every entry under `public_key`. Returns the positions (in `entries`) of the
/// signatures that do not verify, in increasing order; empty when all verify.
pub fn verify_batch<R: RngCore + CryptoRng>(
    scheme: Scheme,
    public_key: &Point,
    entries: &[BatchEntry],
    rng: &mut R,
) -> Vec<usize> {
    if entries.is_empty() {
        return Vec::new();
    }
    let wrong_group = |p: &Point, want| p.group() != want;
    if wrong_group(public_key, scheme.key_group()) {
        return (0..entries.len()).collect();
    }
    let hashes: Vec<Point> = entries
        .iter()
        .map(|e| scheme.hash_to_sig_group(&e.message))
        .collect();
    let weights: Vec<u128> = entries
        .iter()
        .map(|_| {
            let mut b = [0u8; 16];
            rng.fill_bytes(&mut b);
            // A zero weight would drop its entry from the check.
            u128::from_le_bytes(b).max(1)
        })
        .collect();
    let ctx = Ctx {
        scheme,
        public_key,
        neg_generator: Point::generator(scheme.key_group()).neg(),
        entries,
        hashes: &hashes,
        weights: &weights,
    };
    let all: Vec<usize> = (0..entries.len())
        .filter(|&i| !wrong_group(&entries[i].signature, scheme.sig_group()))
        .collect();
    let mut bad: Vec<usize> = (0..entries.len())
        .filter(|&i| wrong_group(&entries[i].signature, scheme.sig_group()))
        .collect();
    ctx.locate(&all, &mut bad);
    bad.sort_unstable();
    bad
}

struct Ctx<'a> {
    scheme: Scheme,
    public_key: &'a Point,
    neg_generator: Point,
    entries: &'a [BatchEntry],
    hashes: &'a [Point],
    weights: &'a [u128],
}

impl Ctx<'_> {
    fn check(&self, idx: &[usize]) -> bool {
        let sigs: Vec<Point> = idx.iter().map(|&i| self.entries[i].signature).collect();
        let hashes: Vec<Point> = idx.iter().map(|&i| self.hashes[i]).collect();
        let weights: Vec<u128> = idx.iter().map(|&i| self.weights[i]).collect();
        let group = self.scheme.sig_group();
        match (
            Point::multi_exp_u128(group, &sigs, &weights),
            Point::multi_exp_u128(group, &hashes, &weights),
        ) {
            (Ok(s), Ok(h)) => {
                pairing_product_is_one(&[(*self.public_key, h), (self.neg_generator, s)])
            }
            _ => false,
        }
    }

    fn locate(&self, idx: &[usize], bad: &mut Vec<usize>) {
        if idx.is_empty() {
            return;
        }
        if idx.len() < SINGLE_CHECK_BELOW {
            for &i in idx {
                if !self.scheme.verify_hashed(
                    self.public_key,
                    &self.hashes[i],
                    &self.entries[i].signature,
                ) {
                    bad.push(i);
                }
            }
            return;
        }
        if self.check(idx) {
            return;
        }
        let (left, right) = idx.split_at(idx.len() / 2);
        self.locate(left, bad);
        self.locate(right, bad);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blstrs::Scalar;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn entries(scheme: Scheme, sk: &Scalar, n: u64) -> Vec<BatchEntry> {
        (1..=n)
            .map(|round| {
                let message = scheme.digest(round, &[]).to_vec();
                let signature = scheme.sign(sk, &message).unwrap();
                BatchEntry { message, signature }
            })
            .collect()
    }

    #[test]
    fn finds_exactly_the_bad_entries() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        for scheme in [Scheme::PedersenBlsUnchained, Scheme::BlsUnchainedG1Rfc9380] {
            let sk = Scalar::from(99u64);
            let pk = scheme.public_key(&sk);
            let mut es = entries(scheme, &sk, 40);
            assert!(verify_batch(scheme, &pk, &es, &mut rng).is_empty());
            // Swap two signatures: each is valid for the other's message only.
            let s3 = es[3].signature;
            es[3].signature = es[17].signature;
            es[17].signature = s3;
            es[39].message = scheme.digest(1000, &[]).to_vec();
            assert_eq!(verify_batch(scheme, &pk, &es, &mut rng), vec![3, 17, 39]);
        }
    }

    #[test]
    fn wrong_group_signature_is_bad_not_a_panic() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let scheme = Scheme::PedersenBlsUnchained;
        let sk = Scalar::from(5u64);
        let pk = scheme.public_key(&sk);
        let mut es = entries(scheme, &sk, 6);
        es[2].signature = Point::generator(scheme.key_group());
        assert_eq!(verify_batch(scheme, &pk, &es, &mut rng), vec![2]);
    }
}
