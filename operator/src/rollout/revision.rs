//! The rollout's target revision: one digest of every local member's desired revision.

/// FNV-1a, 64 bits: stable across Rust versions and platforms (unlike the standard library's
/// hasher), which a value stored in the status needs; nothing here must resist an attacker.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The digest of `(member, desired revision)` pairs, independent of their order: reordering
/// `spec.members` is not a new rollout.
pub fn target_revision<'a>(mut members: Vec<(&'a str, &'a str)>) -> String {
    members.sort_unstable();
    let mut hash = FNV_OFFSET;
    for (name, revision) in members {
        // Lengths first, so that ("ab", "c") and ("a", "bc") differ.
        for part in [name, revision] {
            for byte in (part.len() as u64)
                .to_le_bytes()
                .iter()
                .chain(part.as_bytes())
            {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(FNV_PRIME);
            }
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_depends_on_pairs_not_on_their_order() {
        let a = target_revision(vec![("a", "r1"), ("b", "r2")]);
        assert_eq!(a, target_revision(vec![("b", "r2"), ("a", "r1")]));
        assert_ne!(a, target_revision(vec![("a", "r1"), ("b", "r3")]));
        assert_ne!(a, target_revision(vec![("a", "r2"), ("b", "r1")]));
        assert_ne!(
            target_revision(vec![("ab", "c")]),
            target_revision(vec![("a", "bc")])
        );
        assert_eq!(a.len(), 16);
        // A fixed value: a stored target must mean the same after an operator upgrade.
        assert_eq!(target_revision(vec![]), "cbf29ce484222325");
    }
}
