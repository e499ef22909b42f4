//! Points of BLS12-381's two source groups behind one type, with drand's encodings.
//!
//! Keys and signatures live on G1 or on G2 depending on the scheme, so most of the protocol
//! handles a [`Point`] and asks the scheme which group it must be on. Every point that comes from
//! outside the process is decoded through [`Point::decode`], which refuses anything not on the
//! curve, outside the prime-order subgroup, or the identity: blstrs accepts the identity on
//! decompression, and an identity key or signature would make verification vacuous.

use std::fmt;

use blstrs::{Bls12, G1Affine, G1Projective, G2Affine, G2Prepared, G2Projective, Scalar};
use group::{Curve, Group};
use pairing::{MillerLoopResult, MultiMillerLoop};

/// Which source group of the pairing a point lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CurveGroup {
    G1,
    G2,
}

impl CurveGroup {
    /// Length of a compressed point of this group (ZCash encoding, as drand writes them).
    pub const fn point_len(self) -> usize {
        match self {
            CurveGroup::G1 => 48,
            CurveGroup::G2 => 96,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            CurveGroup::G1 => "G1",
            CurveGroup::G2 => "G2",
        }
    }

    /// The other group of the pairing.
    pub const fn dual(self) -> CurveGroup {
        match self {
            CurveGroup::G1 => CurveGroup::G2,
            CurveGroup::G2 => CurveGroup::G1,
        }
    }
}

impl fmt::Display for CurveGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why bytes are not an acceptable point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointError {
    #[error("a compressed {group} point is {expected} bytes, got {got} bytes")]
    Length {
        group: CurveGroup,
        expected: usize,
        got: usize,
    },
    #[error("not a {group} point: the bytes are not a valid compressed encoding of a point on the curve")]
    NotOnCurve { group: CurveGroup },
    #[error("the {group} point is not in the prime-order subgroup")]
    NotInSubgroup { group: CurveGroup },
    #[error("the {group} point is the identity (point at infinity), which is never a valid key or signature")]
    Identity { group: CurveGroup },
    #[error("expected a {expected} point, got a {got} point")]
    WrongGroup {
        expected: CurveGroup,
        got: CurveGroup,
    },
}

/// A point of G1 or G2.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Point {
    G1(G1Projective),
    G2(G2Projective),
}

impl fmt::Debug for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.group(), hex::encode(self.to_bytes()))
    }
}

impl Point {
    pub fn group(&self) -> CurveGroup {
        match self {
            Point::G1(_) => CurveGroup::G1,
            Point::G2(_) => CurveGroup::G2,
        }
    }

    pub fn generator(group: CurveGroup) -> Point {
        match group {
            CurveGroup::G1 => Point::G1(G1Projective::generator()),
            CurveGroup::G2 => Point::G2(G2Projective::generator()),
        }
    }

    pub fn identity(group: CurveGroup) -> Point {
        match group {
            CurveGroup::G1 => Point::G1(G1Projective::identity()),
            CurveGroup::G2 => Point::G2(G2Projective::identity()),
        }
    }

    pub fn is_identity(&self) -> bool {
        match self {
            Point::G1(p) => bool::from(p.is_identity()),
            Point::G2(p) => bool::from(p.is_identity()),
        }
    }

    /// Decodes a compressed point of `group`, checking the encoding, that the point is on the
    /// curve and in the prime-order subgroup, and that it is not the identity.
    pub fn decode(group: CurveGroup, bytes: &[u8]) -> Result<Point, PointError> {
        let expected = group.point_len();
        if bytes.len() != expected {
            return Err(PointError::Length {
                group,
                expected,
                got: bytes.len(),
            });
        }
        let point = match group {
            CurveGroup::G1 => {
                let mut raw = [0u8; 48];
                raw.copy_from_slice(bytes);
                let p = Option::<G1Affine>::from(G1Affine::from_compressed_unchecked(&raw))
                    .ok_or(PointError::NotOnCurve { group })?;
                if !bool::from(p.is_on_curve()) {
                    return Err(PointError::NotOnCurve { group });
                }
                if !bool::from(p.is_torsion_free()) {
                    return Err(PointError::NotInSubgroup { group });
                }
                Point::G1(p.into())
            }
            CurveGroup::G2 => {
                let mut raw = [0u8; 96];
                raw.copy_from_slice(bytes);
                let p = Option::<G2Affine>::from(G2Affine::from_compressed_unchecked(&raw))
                    .ok_or(PointError::NotOnCurve { group })?;
                if !bool::from(p.is_on_curve()) {
                    return Err(PointError::NotOnCurve { group });
                }
                if !bool::from(p.is_torsion_free()) {
                    return Err(PointError::NotInSubgroup { group });
                }
                Point::G2(p.into())
            }
        };
        if point.is_identity() {
            return Err(PointError::Identity { group });
        }
        Ok(point)
    }

    /// The compressed encoding (48 bytes on G1, 96 on G2).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Point::G1(p) => p.to_affine().to_compressed().to_vec(),
            Point::G2(p) => p.to_affine().to_compressed().to_vec(),
        }
    }

    /// Hashes `msg` onto `group` (RFC 9380 hash_to_curve with SHA-256 and SSWU) with `dst`.
    pub fn hash_to_curve(group: CurveGroup, msg: &[u8], dst: &[u8]) -> Point {
        match group {
            CurveGroup::G1 => Point::G1(G1Projective::hash_to_curve(msg, dst, &[])),
            CurveGroup::G2 => Point::G2(G2Projective::hash_to_curve(msg, dst, &[])),
        }
    }

    pub fn mul(&self, scalar: &Scalar) -> Point {
        match self {
            Point::G1(p) => Point::G1(p * scalar),
            Point::G2(p) => Point::G2(p * scalar),
        }
    }

    pub fn neg(&self) -> Point {
        match self {
            Point::G1(p) => Point::G1(-p),
            Point::G2(p) => Point::G2(-p),
        }
    }

    /// The sum of two points of the same group.
    pub fn add(&self, other: &Point) -> Result<Point, PointError> {
        match (self, other) {
            (Point::G1(a), Point::G1(b)) => Ok(Point::G1(a + b)),
            (Point::G2(a), Point::G2(b)) => Ok(Point::G2(a + b)),
            _ => Err(PointError::WrongGroup {
                expected: self.group(),
                got: other.group(),
            }),
        }
    }

    /// Σ scalars[i]·points[i] over `group` (Pippenger, from blst). All points must be on `group`.
    pub fn multi_exp(
        group: CurveGroup,
        points: &[Point],
        scalars: &[Scalar],
    ) -> Result<Point, PointError> {
        debug_assert_eq!(points.len(), scalars.len());
        match group {
            CurveGroup::G1 => {
                let ps = points
                    .iter()
                    .map(|p| match p {
                        Point::G1(p) => Ok(*p),
                        Point::G2(_) => Err(PointError::WrongGroup {
                            expected: group,
                            got: CurveGroup::G2,
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Point::G1(msm_g1(&ps, scalars)))
            }
            CurveGroup::G2 => {
                let ps = points
                    .iter()
                    .map(|p| match p {
                        Point::G2(p) => Ok(*p),
                        Point::G1(_) => Err(PointError::WrongGroup {
                            expected: group,
                            got: CurveGroup::G1,
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Point::G2(msm_g2(&ps, scalars)))
            }
        }
    }

    /// Σ scalars[i]·points[i] with 128-bit scalars: the random weights of batch verification
    /// need no more, and Pippenger's cost grows with the scalar width.
    pub fn multi_exp_u128(
        group: CurveGroup,
        points: &[Point],
        scalars: &[u128],
    ) -> Result<Point, PointError> {
        debug_assert_eq!(points.len(), scalars.len());
        if points.is_empty() {
            return Ok(Point::identity(group));
        }
        let scalar_bytes: Vec<u8> = scalars.iter().flat_map(|s| s.to_le_bytes()).collect();
        let wrong = |p: &Point| PointError::WrongGroup {
            expected: group,
            got: p.group(),
        };
        match group {
            CurveGroup::G1 => {
                let raw = points
                    .iter()
                    .map(|p| match p {
                        Point::G1(q) => Ok(*q.as_ref()),
                        other => Err(wrong(other)),
                    })
                    .collect::<Result<Vec<blst::blst_p1>, _>>()?;
                let mut sum = G1Projective::identity();
                *sum.as_mut() = blst::p1_affines::from(&raw).mult(&scalar_bytes, 128);
                Ok(Point::G1(sum))
            }
            CurveGroup::G2 => {
                let raw = points
                    .iter()
                    .map(|p| match p {
                        Point::G2(q) => Ok(*q.as_ref()),
                        other => Err(wrong(other)),
                    })
                    .collect::<Result<Vec<blst::blst_p2>, _>>()?;
                let mut sum = G2Projective::identity();
                *sum.as_mut() = blst::p2_affines::from(&raw).mult(&scalar_bytes, 128);
                Ok(Point::G2(sum))
            }
        }
    }

    pub fn expect_group(&self, group: CurveGroup) -> Result<(), PointError> {
        if self.group() == group {
            Ok(())
        } else {
            Err(PointError::WrongGroup {
                expected: group,
                got: self.group(),
            })
        }
    }
}

// blst's Pippenger pays a fixed set-up cost that loses to plain double-and-add for a handful of
// points (threshold recovery at small t); below this size the loop is faster.
const MSM_MIN: usize = 8;

fn msm_g1(points: &[G1Projective], scalars: &[Scalar]) -> G1Projective {
    if points.len() < MSM_MIN {
        return points.iter().zip(scalars).map(|(p, s)| p * s).sum();
    }
    G1Projective::multi_exp(points, scalars)
}

fn msm_g2(points: &[G2Projective], scalars: &[Scalar]) -> G2Projective {
    if points.len() < MSM_MIN {
        return points.iter().zip(scalars).map(|(p, s)| p * s).sum();
    }
    G2Projective::multi_exp(points, scalars)
}

/// Whether Π e(a_i, b_i) == 1, where each pair holds one G1 and one G2 point, in either order.
/// One multi-Miller loop and one final exponentiation, however many pairs. A pair of two points
/// of the same group makes the check fail.
pub fn pairing_product_is_one(pairs: &[(Point, Point)]) -> bool {
    let mut g1s = Vec::with_capacity(pairs.len());
    let mut g2s = Vec::with_capacity(pairs.len());
    for (a, b) in pairs {
        match (a, b) {
            (Point::G1(p), Point::G2(q)) | (Point::G2(q), Point::G1(p)) => {
                g1s.push(p.to_affine());
                g2s.push(G2Prepared::from(q.to_affine()));
            }
            _ => return false,
        }
    }
    let terms: Vec<(&G1Affine, &G2Prepared)> = g1s.iter().zip(g2s.iter()).collect();
    bool::from(
        Bls12::multi_miller_loop(&terms)
            .final_exponentiation()
            .is_identity(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ff::PrimeField;

    #[test]
    fn identity_is_refused_on_both_groups() {
        for group in [CurveGroup::G1, CurveGroup::G2] {
            let bytes = Point::identity(group).to_bytes();
            assert_eq!(
                Point::decode(group, &bytes),
                Err(PointError::Identity { group })
            );
        }
    }

    #[test]
    fn wrong_length_names_both_lengths() {
        let err = Point::decode(CurveGroup::G2, &[0u8; 48]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a compressed G2 point is 96 bytes, got 48 bytes"
        );
    }

    #[test]
    fn garbage_is_not_on_curve() {
        let mut bytes = Point::generator(CurveGroup::G1).to_bytes();
        bytes[47] ^= 1;
        assert!(matches!(
            Point::decode(CurveGroup::G1, &bytes),
            Err(PointError::NotOnCurve { .. }) | Err(PointError::NotInSubgroup { .. })
        ));
    }

    #[test]
    fn point_outside_subgroup_is_refused() {
        // Find an x whose curve point (y^2 = x^3 + 4) exists but, multiplied by the cofactor-free
        // check, falls outside the r-torsion: nearly every point of E(Fp) does, as the cofactor
        // of G1 is large. Try small x values until blst decodes one that is on the curve.
        let mut found = false;
        for x in 1u8..=255 {
            let mut raw = [0u8; 48];
            raw[0] = 0x80; // compressed flag, sign bit clear
            raw[47] = x;
            if let Some(p) = Option::<G1Affine>::from(G1Affine::from_compressed_unchecked(&raw)) {
                if bool::from(p.is_on_curve()) && !bool::from(p.is_torsion_free()) {
                    assert_eq!(
                        Point::decode(CurveGroup::G1, &raw),
                        Err(PointError::NotInSubgroup {
                            group: CurveGroup::G1
                        })
                    );
                    found = true;
                    break;
                }
            }
        }
        assert!(found, "no small-x point outside the subgroup found");
    }

    #[test]
    fn short_multi_exp_matches_naive() {
        for group in [CurveGroup::G1, CurveGroup::G2] {
            let points: Vec<Point> = (1..20u64)
                .map(|i| Point::generator(group).mul(&Scalar::from(i * 31)))
                .collect();
            let scalars: Vec<u128> = (0..19u128).map(|i| (i + 3) << 100 | i).collect();
            let mut naive = Point::identity(group);
            for (p, s) in points.iter().zip(&scalars) {
                let sc = Scalar::from_u128(*s);
                naive = naive.add(&p.mul(&sc)).unwrap();
            }
            assert_eq!(
                Point::multi_exp_u128(group, &points, &scalars).unwrap(),
                naive
            );
        }
    }

    #[test]
    fn roundtrip_and_pairing() {
        let s = Scalar::from(7u64);
        for group in [CurveGroup::G1, CurveGroup::G2] {
            let p = Point::generator(group).mul(&s);
            assert_eq!(Point::decode(group, &p.to_bytes()), Ok(p));
        }
        let a = Point::generator(CurveGroup::G1).mul(&s);
        let b = Point::generator(CurveGroup::G2);
        let c = Point::generator(CurveGroup::G1).neg();
        let d = Point::generator(CurveGroup::G2).mul(&s);
        assert!(pairing_product_is_one(&[(a, b), (d, c)]));
        assert!(!pairing_product_is_one(&[(a, b), (b, c)]));
    }
}
