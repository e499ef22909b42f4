//! Schnorr signatures exactly as drand's kyber (`sign/schnorr`) makes them; drand authenticates
//! every DKG bundle (deal, response, justification) with them, on the scheme's key group and
//! with the node's long-term key.
//!
//! `R = k·G`, `h = int_be(sha512(R ‖ pub ‖ msg)) mod r`, `s = k + h·sk`, signature `R ‖ s_be32`
//! (48 + 32 = 80 bytes on G1, 96 + 32 = 128 bytes on G2). Verification checks `s·G == R + h·pub`.
//! kyber reduces the 64-byte digest as one big-endian integer (`mod.Int.SetBytes`: big-endian,
//! then `mod r`); blstrs 0.7 has no wide reduction, so [`scalar_from_be_bytes_reduced`] does it.

use blstrs::Scalar;
use ff::Field;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};

use super::point::{CurveGroup, Point, PointError};

/// Length of a scalar on the wire (kyber marshals scalars as 32 big-endian bytes).
pub const SCALAR_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchnorrError {
    #[error("a Schnorr signature on {group} is {expected} bytes (point and scalar), got {got}")]
    Length {
        group: CurveGroup,
        expected: usize,
        got: usize,
    },
    #[error("the commitment R of the Schnorr signature is not a valid point: {0}")]
    Commitment(PointError),
    #[error("the scalar s of the Schnorr signature is not below the group order (not a canonical encoding)")]
    NonCanonicalScalar,
    #[error("the Schnorr signature does not verify under the given public key")]
    Invalid,
}

/// Length of a signature whose key (and commitment) lives on `group`.
pub const fn signature_len(group: CurveGroup) -> usize {
    group.point_len() + SCALAR_LEN
}

/// Signs `msg` with `secret` on `group` (the scheme's key group).
pub fn sign<R: RngCore + CryptoRng>(
    group: CurveGroup,
    secret: &Scalar,
    msg: &[u8],
    rng: &mut R,
) -> Vec<u8> {
    let g = Point::generator(group);
    let k = Scalar::random(&mut *rng);
    let r = g.mul(&k);
    let public = g.mul(secret);
    let r_bytes = r.to_bytes();
    let h = challenge(&r_bytes, &public, msg);
    let s = k + h * secret;
    let mut out = r_bytes;
    out.extend_from_slice(&s.to_bytes_be());
    out
}

/// Verifies a signature of `msg` under `public` (its group decides the signature's layout).
pub fn verify(public: &Point, msg: &[u8], signature: &[u8]) -> Result<(), SchnorrError> {
    let group = public.group();
    let point_len = group.point_len();
    let expected = signature_len(group);
    if signature.len() != expected {
        return Err(SchnorrError::Length {
            group,
            expected,
            got: signature.len(),
        });
    }
    let (r_bytes, s_bytes) = signature.split_at(point_len);
    // Point::decode checks the subgroup, as kyber's verifier does for R.
    let r = Point::decode(group, r_bytes).map_err(SchnorrError::Commitment)?;
    let mut s_raw = [0u8; SCALAR_LEN];
    s_raw.copy_from_slice(s_bytes);
    let s = Option::<Scalar>::from(Scalar::from_bytes_be(&s_raw))
        .ok_or(SchnorrError::NonCanonicalScalar)?;
    let h = challenge(r_bytes, public, msg);
    let lhs = Point::generator(group).mul(&s);
    // Same group on both sides by construction, so add cannot fail; a failure would be a bug
    // and is reported as an invalid signature rather than a panic.
    let rhs = r.add(&public.mul(&h)).map_err(|_| SchnorrError::Invalid)?;
    if lhs == rhs {
        Ok(())
    } else {
        Err(SchnorrError::Invalid)
    }
}

/// h = sha512(R ‖ pub ‖ msg) read as a big-endian integer, reduced mod r.
fn challenge(r_bytes: &[u8], public: &Point, msg: &[u8]) -> Scalar {
    let mut hasher = Sha512::new();
    hasher.update(r_bytes);
    hasher.update(public.to_bytes());
    hasher.update(msg);
    scalar_from_be_bytes_reduced(&hasher.finalize())
}

/// Interprets `bytes` (any length) as a big-endian unsigned integer and reduces it mod r, like
/// kyber's `mod.Int.SetBytes`. Horner's rule over 64-bit limbs: acc = acc·2^64 + limb.
pub fn scalar_from_be_bytes_reduced(bytes: &[u8]) -> Scalar {
    let two_64 = Scalar::from(1u64 << 32).square();
    let pad = (8 - bytes.len() % 8) % 8;
    let mut padded = vec![0u8; pad];
    padded.extend_from_slice(bytes);
    padded.chunks_exact(8).fold(Scalar::ZERO, |acc, chunk| {
        let mut limb = [0u8; 8];
        limb.copy_from_slice(chunk);
        acc * two_64 + Scalar::from(u64::from_be_bytes(limb))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn sign_verify_both_groups_and_tamper() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        for group in [CurveGroup::G1, CurveGroup::G2] {
            let sk = Scalar::random(&mut rng);
            let pk = Point::generator(group).mul(&sk);
            let sig = sign(group, &sk, b"bundle hash", &mut rng);
            assert_eq!(sig.len(), signature_len(group));
            assert_eq!(verify(&pk, b"bundle hash", &sig), Ok(()));
            assert_eq!(
                verify(&pk, b"bundle hasH", &sig),
                Err(SchnorrError::Invalid)
            );
            let mut bad = sig.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_eq!(
                verify(&pk, b"bundle hash", &bad),
                Err(SchnorrError::Invalid)
            );
            let other = Point::generator(group).mul(&Scalar::random(&mut rng));
            assert_eq!(
                verify(&other, b"bundle hash", &sig),
                Err(SchnorrError::Invalid)
            );
            assert!(matches!(
                verify(&pk, b"bundle hash", &sig[1..]),
                Err(SchnorrError::Length { .. })
            ));
        }
    }

    #[test]
    fn non_canonical_s_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let sk = Scalar::random(&mut rng);
        let pk = Point::generator(CurveGroup::G1).mul(&sk);
        let mut sig = sign(CurveGroup::G1, &sk, b"m", &mut rng);
        for b in &mut sig[48..] {
            *b = 0xff;
        }
        assert_eq!(
            verify(&pk, b"m", &sig),
            Err(SchnorrError::NonCanonicalScalar)
        );
    }

    #[test]
    fn wide_reduction_matches_big_integer_arithmetic() {
        // Expected values computed independently (Python: int.from_bytes(b, "big") % r).
        let all_ff = [0xffu8; 64];
        assert_eq!(
            hex::encode(scalar_from_be_bytes_reduced(&all_ff).to_bytes_be()),
            "0748d9d99f59ff1105d314967254398f2b6cedcb87925c23c999e990f3f29c6c"
        );
        let mut two_256 = [0u8; 33];
        two_256[0] = 1;
        assert_eq!(
            hex::encode(scalar_from_be_bytes_reduced(&two_256).to_bytes_be()),
            "1824b159acc5056f998c4fefecbc4ff55884b7fa0003480200000001fffffffe"
        );
        // Below r, the reduction is the identity on the value.
        let small = Scalar::from(0x0102_0304u64);
        assert_eq!(scalar_from_be_bytes_reduced(&small.to_bytes_be()), small);
        let mut wide = [0u8; 64];
        wide[63] = 7;
        assert_eq!(scalar_from_be_bytes_reduced(&wide), Scalar::from(7u64));
    }
}
