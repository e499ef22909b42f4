//! ECIES exactly as drand's kyber (`encrypt/ecies`, hash SHA-256) does it; the DKG encrypts each
//! deal's share to its holder's long-term key with it.
//!
//! `R = r·G`, `DH = r·Pub`, `okm = HKDF-SHA256(ikm = compressed(DH), salt = none, info = none,
//! L = 44)`, key = okm[0..32], nonce = okm[32..44], `ct = AES-256-GCM(key, nonce, msg, aad =
//! none)` (tag appended); the ciphertext is `R ‖ ct`. A fresh ephemeral key per message makes the
//! derived nonce safe to use, which is why kyber derives it instead of drawing it.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use blstrs::Scalar;
use ff::Field;
use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;

use super::point::{CurveGroup, Point, PointError};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
/// AES-GCM's authentication tag, appended to the ciphertext.
pub const TAG_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EciesError {
    #[error("an ECIES ciphertext on {group} needs at least {min} bytes (ephemeral point and tag), got {got}")]
    TooShort {
        group: CurveGroup,
        min: usize,
        got: usize,
    },
    #[error("the ephemeral point of the ECIES ciphertext is not valid: {0}")]
    Ephemeral(PointError),
    #[error("the ECIES ciphertext does not decrypt: it was not made for this key or was altered")]
    Decrypt,
}

/// Encrypts `plaintext` to `public` (a point of the key group).
pub fn encrypt<R: RngCore + CryptoRng>(public: &Point, plaintext: &[u8], rng: &mut R) -> Vec<u8> {
    let group = public.group();
    let r = Scalar::random(&mut *rng);
    let ephemeral = Point::generator(group).mul(&r);
    let dh = public.mul(&r);
    let (nonce, cipher) = cipher_for(&dh);
    // Encryption with a valid key and nonce cannot fail for inputs this size (AES-GCM only
    // refuses plaintexts above 64 GiB); an empty body would fail the holder's decryption
    // loudly rather than pass silently.
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .unwrap_or_default();
    let mut out = ephemeral.to_bytes();
    out.extend_from_slice(&ct);
    out
}

/// Decrypts a ciphertext made by [`encrypt`] (or by kyber) for the key `secret` on `group`.
pub fn decrypt(
    group: CurveGroup,
    secret: &Scalar,
    ciphertext: &[u8],
) -> Result<Vec<u8>, EciesError> {
    let point_len = group.point_len();
    let min = point_len + TAG_LEN;
    if ciphertext.len() < min {
        return Err(EciesError::TooShort {
            group,
            min,
            got: ciphertext.len(),
        });
    }
    let (r_bytes, ct) = ciphertext.split_at(point_len);
    let ephemeral = Point::decode(group, r_bytes).map_err(EciesError::Ephemeral)?;
    let dh = ephemeral.mul(secret);
    let (nonce, cipher) = cipher_for(&dh);
    cipher
        .decrypt(Nonce::from_slice(&nonce), ct)
        .map_err(|_| EciesError::Decrypt)
}

/// The AES-256-GCM cipher and nonce derived from the shared point.
fn cipher_for(dh: &Point) -> ([u8; NONCE_LEN], Aes256Gcm) {
    let hk = Hkdf::<Sha256>::new(None, &dh.to_bytes());
    let mut okm = [0u8; KEY_LEN + NONCE_LEN];
    // 44 bytes is far below HKDF-SHA256's limit of 255·32, so expand cannot fail.
    let _ = hk.expand(&[], &mut okm);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&okm[KEY_LEN..]);
    let cipher = Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(&okm[..KEY_LEN]));
    (nonce, cipher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn roundtrip_both_groups_and_wrong_key_fails() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        for group in [CurveGroup::G1, CurveGroup::G2] {
            let sk = Scalar::random(&mut rng);
            let pk = Point::generator(group).mul(&sk);
            let msg = sk.to_bytes_be();
            let ct = encrypt(&pk, &msg, &mut rng);
            assert_eq!(ct.len(), group.point_len() + 32 + TAG_LEN);
            assert_eq!(decrypt(group, &sk, &ct).unwrap(), msg.to_vec());
            let other = Scalar::random(&mut rng);
            assert_eq!(decrypt(group, &other, &ct), Err(EciesError::Decrypt));
            let mut altered = ct.clone();
            let last = altered.len() - 1;
            altered[last] ^= 0x80;
            assert_eq!(decrypt(group, &sk, &altered), Err(EciesError::Decrypt));
            assert!(matches!(
                decrypt(group, &sk, &ct[..group.point_len() + 3]),
                Err(EciesError::TooShort { .. })
            ));
        }
    }
}
