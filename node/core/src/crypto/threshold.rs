//! Threshold BLS as drand does it (kyber `share` and `sign/tbls`): shares of a secret polynomial
//! evaluated at x = index + 1, partial signatures `u16_be(index) || sig`, verification of a
//! partial against the public polynomial, and Lagrange recovery of the group signature.

use blstrs::Scalar;
use ff::Field;
use rand_core::RngCore;

use super::point::{CurveGroup, Point, PointError};
use super::scheme::{Scheme, SchemeError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    #[error("need {need} partial signatures from distinct members to recover, have {have}")]
    NotEnoughPartials { have: usize, need: usize },
    #[error(
        "a partial signature is {expected} bytes (2-byte index and a {group} signature), got {got}"
    )]
    PartialLength {
        group: CurveGroup,
        expected: usize,
        got: usize,
    },
    #[error("partial signature of member {index}: {source}")]
    PartialPoint { index: u16, source: PointError },
    #[error("a public polynomial needs at least one commitment")]
    EmptyPolynomial,
    #[error("commitment {position} of the public polynomial: {source}")]
    Commitment { position: usize, source: PointError },
    #[error("share index {0} does not fit drand's 16-bit partial signature index")]
    IndexTooLarge(u32),
    #[error("the recovered signature does not verify even after dropping the invalid partials of members {invalid:?}")]
    RecoveredInvalid { invalid: Vec<u16> },
    #[error(transparent)]
    Scheme(#[from] SchemeError),
}

/// The x coordinate at which member `index` (0-based) evaluates polynomials.
pub fn x_of(index: u32) -> Scalar {
    Scalar::from(u64::from(index) + 1)
}

/// One member's share of a secret: f(index + 1).
#[derive(Clone, PartialEq, Eq)]
pub struct PriShare {
    pub index: u32,
    pub value: Scalar,
}

impl std::fmt::Debug for PriShare {
    // Never print secret material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PriShare {{ index: {}, value: <secret> }}", self.index)
    }
}

/// A secret polynomial of degree t - 1; f(0) is the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PriPoly {
    coefficients: Vec<Scalar>,
}

impl std::fmt::Debug for PriPoly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PriPoly {{ threshold: {}, <secret> }}",
            self.coefficients.len()
        )
    }
}

impl PriPoly {
    /// A random polynomial of `threshold` coefficients with the given secret (random if None).
    pub fn random(threshold: usize, secret: Option<Scalar>, rng: &mut impl RngCore) -> PriPoly {
        assert!(threshold >= 1, "threshold must be at least 1");
        let mut coefficients: Vec<Scalar> =
            (0..threshold).map(|_| Scalar::random(&mut *rng)).collect();
        if let Some(s) = secret {
            coefficients[0] = s;
        }
        PriPoly { coefficients }
    }

    pub fn from_coefficients(coefficients: Vec<Scalar>) -> Option<PriPoly> {
        (!coefficients.is_empty()).then_some(PriPoly { coefficients })
    }

    pub fn coefficients(&self) -> &[Scalar] {
        &self.coefficients
    }

    pub fn threshold(&self) -> usize {
        self.coefficients.len()
    }

    pub fn secret(&self) -> Scalar {
        self.coefficients[0]
    }

    /// f(index + 1), by Horner's rule.
    pub fn eval(&self, index: u32) -> PriShare {
        let x = x_of(index);
        let value = self
            .coefficients
            .iter()
            .rev()
            .fold(Scalar::ZERO, |acc, c| acc * x + c);
        PriShare { index, value }
    }

    /// The commitments a_i·G on `group`.
    pub fn commit(&self, group: CurveGroup) -> PubPoly {
        let g = Point::generator(group);
        PubPoly {
            commits: self.coefficients.iter().map(|c| g.mul(c)).collect(),
        }
    }
}

/// The public polynomial: commitments to the coefficients; commits[0] is the group public key.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PubPoly {
    commits: Vec<Point>,
}

impl PubPoly {
    pub fn new(commits: Vec<Point>) -> Result<PubPoly, ThresholdError> {
        let group = commits
            .first()
            .ok_or(ThresholdError::EmptyPolynomial)?
            .group();
        for (position, c) in commits.iter().enumerate() {
            c.expect_group(group)
                .map_err(|source| ThresholdError::Commitment { position, source })?;
        }
        Ok(PubPoly { commits })
    }

    /// Decodes drand's list of compressed commitments. Commitments other than the first may be
    /// any group element, the identity included (a random coefficient may be zero).
    pub fn decode(group: CurveGroup, commits: &[Vec<u8>]) -> Result<PubPoly, ThresholdError> {
        let points = commits
            .iter()
            .enumerate()
            .map(|(position, bytes)| match Point::decode(group, bytes) {
                Err(PointError::Identity { .. }) if position > 0 => Ok(Point::identity(group)),
                other => other.map_err(|source| ThresholdError::Commitment { position, source }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        PubPoly::new(points)
    }

    pub fn commits(&self) -> &[Point] {
        &self.commits
    }

    pub fn to_bytes(&self) -> Vec<Vec<u8>> {
        self.commits.iter().map(Point::to_bytes).collect()
    }

    pub fn group(&self) -> CurveGroup {
        self.commits[0].group()
    }

    pub fn threshold(&self) -> usize {
        self.commits.len()
    }

    pub fn public_key(&self) -> Point {
        self.commits[0]
    }

    /// The public key share of member `index`: Σ commits[j]·(index+1)^j.
    pub fn eval(&self, index: u32) -> Point {
        let x = x_of(index);
        let mut acc = Point::identity(self.group());
        for c in self.commits.iter().rev() {
            // Same group by construction, so add cannot fail.
            acc = acc.mul(&x).add(c).unwrap_or(acc);
        }
        acc
    }

    /// Coefficient-wise sum of two polynomials (the DKG adds its dealers' commitments).
    pub fn add(&self, other: &PubPoly) -> Result<PubPoly, ThresholdError> {
        let n = self.commits.len().max(other.commits.len());
        let zero = Point::identity(self.group());
        let commits = (0..n)
            .map(|i| {
                let a = self.commits.get(i).unwrap_or(&zero);
                let b = other.commits.get(i).unwrap_or(&zero);
                a.add(b).map_err(|source| ThresholdError::Commitment {
                    position: i,
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PubPoly { commits })
    }
}

/// Lagrange coefficients λ_i at x = 0 for the distinct points `xs`: λ_i = Π_{j≠i} x_j / (x_j − x_i).
pub fn lagrange_at_zero(xs: &[Scalar]) -> Vec<Scalar> {
    let mut numerators = Vec::with_capacity(xs.len());
    let mut denominators = Vec::with_capacity(xs.len());
    for (i, xi) in xs.iter().enumerate() {
        let mut num = Scalar::ONE;
        let mut den = Scalar::ONE;
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                num *= xj;
                den *= xj - xi;
            }
        }
        numerators.push(num);
        denominators.push(den);
    }
    batch_invert(&mut denominators);
    numerators
        .into_iter()
        .zip(denominators)
        .map(|(n, d)| n * d)
        .collect()
}

/// Inverts every element in place with one field inversion (Montgomery's trick). Elements must
/// be non-zero, which distinct x coordinates guarantee.
fn batch_invert(values: &mut [Scalar]) {
    let mut prefix = Vec::with_capacity(values.len());
    let mut acc = Scalar::ONE;
    for v in values.iter() {
        prefix.push(acc);
        acc *= v;
    }
    let mut inv = Option::<Scalar>::from(acc.invert()).unwrap_or(Scalar::ZERO);
    for (v, p) in values.iter_mut().zip(prefix).rev() {
        let next = inv * *v;
        *v = inv * p;
        inv = next;
    }
}

/// Recovers f(0) from `threshold` shares of distinct indices.
pub fn recover_secret(shares: &[PriShare], threshold: usize) -> Result<Scalar, ThresholdError> {
    let mut picked: Vec<&PriShare> = Vec::with_capacity(threshold);
    for s in shares {
        if picked.len() == threshold {
            break;
        }
        if !picked.iter().any(|p| p.index == s.index) {
            picked.push(s);
        }
    }
    if picked.len() < threshold {
        return Err(ThresholdError::NotEnoughPartials {
            have: picked.len(),
            need: threshold,
        });
    }
    let xs: Vec<Scalar> = picked.iter().map(|s| x_of(s.index)).collect();
    Ok(lagrange_at_zero(&xs)
        .iter()
        .zip(&picked)
        .map(|(l, s)| *l * s.value)
        .sum())
}

/// A member's signature share, on the wire as `u16_be(index) || signature`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PartialSignature {
    pub index: u16,
    pub signature: Point,
}

impl PartialSignature {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.index.to_be_bytes().to_vec();
        out.extend_from_slice(&self.signature.to_bytes());
        out
    }

    /// Decodes a partial of `scheme`, checking its length and its signature point.
    pub fn decode(scheme: Scheme, bytes: &[u8]) -> Result<PartialSignature, ThresholdError> {
        let group = scheme.sig_group();
        let expected = group.point_len() + 2;
        if bytes.len() != expected {
            return Err(ThresholdError::PartialLength {
                group,
                expected,
                got: bytes.len(),
            });
        }
        let index = u16::from_be_bytes([bytes[0], bytes[1]]);
        let signature = Point::decode(group, &bytes[2..])
            .map_err(|source| ThresholdError::PartialPoint { index, source })?;
        Ok(PartialSignature { index, signature })
    }

    /// Signs `msg` with a share.
    pub fn sign(
        scheme: Scheme,
        share: &PriShare,
        msg: &[u8],
    ) -> Result<PartialSignature, ThresholdError> {
        let index =
            u16::try_from(share.index).map_err(|_| ThresholdError::IndexTooLarge(share.index))?;
        Ok(PartialSignature {
            index,
            signature: scheme.sign(&share.value, msg)?,
        })
    }

    /// Verifies the partial against the member's key share taken from the public polynomial.
    pub fn verify(&self, scheme: Scheme, poly: &PubPoly, msg: &[u8]) -> bool {
        scheme.verify(&poly.eval(u32::from(self.index)), msg, &self.signature)
    }
}

/// Interpolates the group signature at 0 from the first `threshold` partials of distinct
/// indices, without verifying anything.
pub fn recover_signature(
    group: CurveGroup,
    partials: &[PartialSignature],
    threshold: usize,
) -> Result<Point, ThresholdError> {
    let mut picked: Vec<&PartialSignature> = Vec::with_capacity(threshold);
    for p in partials {
        if picked.len() == threshold {
            break;
        }
        if !picked.iter().any(|q| q.index == p.index) {
            picked.push(p);
        }
    }
    if picked.len() < threshold {
        return Err(ThresholdError::NotEnoughPartials {
            have: picked.len(),
            need: threshold,
        });
    }
    let xs: Vec<Scalar> = picked.iter().map(|p| x_of(u32::from(p.index))).collect();
    let points: Vec<Point> = picked.iter().map(|p| p.signature).collect();
    Point::multi_exp(group, &points, &lagrange_at_zero(&xs)).map_err(|source| {
        ThresholdError::PartialPoint {
            index: picked[0].index,
            source,
        }
    })
}

/// The outcome of [`recover_verified`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    pub signature: Point,
    /// Members whose partials were found invalid (only looked for when the optimistic recovery
    /// failed).
    pub invalid: Vec<u16>,
}

/// Optimistic recovery: interpolate from the first t partials and verify the result once
/// against the group key; only when that fails verify the partials one by one, drop the bad
/// ones and interpolate again. drand verifies every partial up front; with honest members this
/// costs one pairing check instead of t.
pub fn recover_verified(
    scheme: Scheme,
    poly: &PubPoly,
    msg: &[u8],
    partials: &[PartialSignature],
) -> Result<Recovered, ThresholdError> {
    let t = poly.threshold();
    let group = scheme.sig_group();
    let hashed = scheme.hash_to_sig_group(msg);
    let signature = recover_signature(group, partials, t)?;
    if scheme.verify_hashed(&poly.public_key(), &hashed, &signature) {
        return Ok(Recovered {
            signature,
            invalid: Vec::new(),
        });
    }
    let mut invalid = Vec::new();
    let mut valid = Vec::with_capacity(partials.len());
    for p in partials {
        if invalid.contains(&p.index) || valid.iter().any(|v: &PartialSignature| v.index == p.index)
        {
            continue;
        }
        if scheme.verify_hashed(&poly.eval(u32::from(p.index)), &hashed, &p.signature) {
            valid.push(*p);
        } else {
            invalid.push(p.index);
        }
    }
    if valid.len() < t {
        return Err(ThresholdError::NotEnoughPartials {
            have: valid.len(),
            need: t,
        });
    }
    let signature = recover_signature(group, &valid, t)?;
    if !scheme.verify_hashed(&poly.public_key(), &hashed, &signature) {
        return Err(ThresholdError::RecoveredInvalid { invalid });
    }
    Ok(Recovered { signature, invalid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn lagrange_recovers_secret() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let poly = PriPoly::random(3, None, &mut rng);
        let shares: Vec<_> = [4, 0, 9].iter().map(|&i| poly.eval(i)).collect();
        assert_eq!(recover_secret(&shares, 3).unwrap(), poly.secret());
        assert!(recover_secret(&shares[..2], 3).is_err());
    }

    #[test]
    fn pub_poly_eval_matches_private_share() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let poly = PriPoly::random(4, None, &mut rng);
        let pubp = poly.commit(CurveGroup::G1);
        for i in [0u32, 1, 7, 100] {
            assert_eq!(
                pubp.eval(i),
                Point::generator(CurveGroup::G1).mul(&poly.eval(i).value)
            );
        }
    }

    #[test]
    fn partial_wire_format() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let poly = PriPoly::random(2, None, &mut rng);
        let share = poly.eval(258);
        let p = PartialSignature::sign(Scheme::PedersenBlsChained, &share, b"m").unwrap();
        let bytes = p.to_bytes();
        assert_eq!(bytes.len(), 98);
        assert_eq!(&bytes[..2], &[1, 2]);
        assert_eq!(
            PartialSignature::decode(Scheme::PedersenBlsChained, &bytes).unwrap(),
            p
        );
        assert!(matches!(
            PartialSignature::decode(Scheme::BlsUnchainedG1Rfc9380, &bytes),
            Err(ThresholdError::PartialLength { expected: 50, .. })
        ));
    }
}
