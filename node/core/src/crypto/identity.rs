//! A node's long-term identity: its public key and the self-signature that binds it to a scheme.
//!
//! drand v2 signs `ascii(scheme_name) || blake2b256(public_key_bytes)` with BLS on the scheme's
//! signature group; v1 signed `blake2b256(public_key_bytes)` alone, which is why identities
//! from v1 files must be re-signed before they can take part in a v2 ceremony.

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};

use super::point::Point;
use super::scheme::{Scheme, SchemeError};
use super::Scalar;

type Blake2b256 = Blake2b<U32>;

/// blake2b-256 of the key's compressed bytes (drand's `Identity.Hash()` ignores the address).
pub fn key_hash(public_key: &Point) -> [u8; 32] {
    Blake2b256::digest(public_key.to_bytes()).into()
}

/// The message a v2 identity self-signature covers.
pub fn self_signature_message(scheme: Scheme, public_key: &Point) -> Vec<u8> {
    let mut msg = scheme.id().as_bytes().to_vec();
    msg.extend_from_slice(&key_hash(public_key));
    msg
}

/// The v2 self-signature of a key pair.
pub fn self_sign(scheme: Scheme, secret: &Scalar) -> Result<Point, SchemeError> {
    let public = scheme.public_key(secret);
    scheme.sign(secret, &self_signature_message(scheme, &public))
}

/// Whether `signature` is a valid v2 self-signature of `public_key` under `scheme`.
pub fn verify_self_signature(scheme: Scheme, public_key: &Point, signature: &Point) -> bool {
    scheme.verify(
        public_key,
        &self_signature_message(scheme, public_key),
        signature,
    )
}

/// Whether `signature` is a v1-era self-signature (no scheme prefix).
pub fn verify_v1_self_signature(scheme: Scheme, public_key: &Point, signature: &Point) -> bool {
    scheme.verify(public_key, &key_hash(public_key), signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    // drand v2 demo group (reference §7.2, §9.5): drand_id.private / drand_id.public.
    const SECRET: &str = "4dee50f69880dce2b793ed2bad9966bc1d333c0ab28f2eff2794753e65202747";
    const PUBLIC: &str = "ab37151b401ba77a9a5bf002d8381b7a9b45f789dc4c3dc40faf0421b7d409c1496e487626ae45482517fffa3de12741";
    const SIGNATURE: &str = "a28ad77f42e540230a475412f860cdc2ff35a98a8ccd93c01f3e1652fd8dcc4c50def4c81718b007e7876f387e45308017b7bbeb69ef658a851b9328178aed2be06a38197d795d709d5a89f247bc698a051866c293714b718576eaccfd8b069d";

    fn decode_hex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test vector is hex")
    }

    #[test]
    fn drand_v2_identity_vector() {
        let scheme = Scheme::PedersenBlsChained;
        let mut be = [0u8; 32];
        be.copy_from_slice(&decode_hex(SECRET));
        let secret = Option::<Scalar>::from(Scalar::from_bytes_be(&be)).expect("scalar");
        let public = scheme.decode_public_key(&decode_hex(PUBLIC)).expect("key");
        assert_eq!(scheme.public_key(&secret), public);
        let sig = scheme
            .decode_signature(&decode_hex(SIGNATURE))
            .expect("sig");
        assert!(verify_self_signature(scheme, &public, &sig));
        assert!(!verify_v1_self_signature(scheme, &public, &sig));
        // BLS is deterministic: our signature is byte for byte drand's.
        assert_eq!(self_sign(scheme, &secret).expect("sign"), sig);
        assert!(!verify_self_signature(
            Scheme::PedersenBlsUnchained,
            &public,
            &sig
        ));
    }
}
