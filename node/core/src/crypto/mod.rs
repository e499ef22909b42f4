//! Cryptography on BLS12-381: points and their checked encodings, drand's schemes, threshold
//! signatures and batch verification.

pub mod batch;
pub mod ecies;
pub mod identity;
pub mod point;
pub mod scheme;
pub mod schnorr;
pub mod threshold;

pub use batch::{verify_batch, BatchEntry};
pub use point::{CurveGroup, Point, PointError};
pub use scheme::{Scheme, SchemeError};
pub use threshold::{PartialSignature, PriPoly, PriShare, PubPoly, ThresholdError};

/// Scalars of BLS12-381's prime-order subgroup (secret keys, shares, polynomial coefficients).
pub use blstrs::Scalar;
