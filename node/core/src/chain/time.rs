//! Round and time arithmetic, exactly as drand's `common/time.go`. Times are unix seconds.

/// What drand returns instead of overflowing in [`time_of_round`].
pub const TIME_OF_ROUND_ERROR: i64 = i64::MAX - (1 << 36);

/// Start time of `round`: genesis for rounds 0 and 1, then one period per round.
pub fn time_of_round(period: u32, genesis: i64, round: u64) -> i64 {
    if round == 0 {
        return genesis;
    }
    let period = i64::from(period);
    i64::try_from(round - 1)
        .ok()
        .and_then(|r| r.checked_mul(period))
        .and_then(|d| d.checked_add(genesis))
        .filter(|t| *t < TIME_OF_ROUND_ERROR)
        .unwrap_or(TIME_OF_ROUND_ERROR)
}

/// The next round after `now` and the time it starts. Before genesis: round 1 at genesis.
pub fn next_round(now: i64, period: u32, genesis: i64) -> (u64, i64) {
    if now < genesis || period == 0 {
        return (1, genesis);
    }
    // In i128: genesis comes from outside (chain info JSON) and may be anywhere in i64, so
    // `now - genesis` and the next round's start can overflow i64.
    let period = i128::from(period);
    let k = (i128::from(now) - i128::from(genesis)) / period;
    let round = u64::try_from(k + 2).unwrap_or(u64::MAX);
    let start = i64::try_from(i128::from(genesis) + (k + 1) * period).unwrap_or(i64::MAX);
    (round, start)
}

/// The round in progress at `now`; 1 before genesis (as drand's Go code, not its old spec).
pub fn current_round(now: i64, period: u32, genesis: i64) -> u64 {
    let (next, _) = next_round(now, period, genesis);
    if next <= 1 {
        1
    } else {
        next - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drand_vectors() {
        // mainnet default: round 1 at genesis, round 1,000,000 at 1625431020.
        assert_eq!(time_of_round(30, 1595431050, 1), 1595431050);
        assert_eq!(time_of_round(30, 1595431050, 1_000_000), 1625431020);
        assert_eq!(time_of_round(30, 1595431050, 0), 1595431050);
        // quicknet round 1000.
        assert_eq!(time_of_round(3, 1692803367, 1000), 1692806364);
        let (g, p) = (1692803367, 3);
        assert_eq!(current_round(g, p, g), 1);
        assert_eq!(current_round(g + 2, p, g), 1);
        assert_eq!(current_round(g + 3, p, g), 2);
        assert_eq!(current_round(g - 100, p, g), 1);
        assert_eq!(next_round(g - 100, p, g), (1, g));
        assert_eq!(next_round(g, p, g), (2, g + 3));
        assert_eq!(time_of_round(1, 0, u64::MAX), TIME_OF_ROUND_ERROR);
        // Extreme genesis times from untrusted chain info never overflow.
        assert_eq!(next_round(i64::MAX, 1, i64::MIN), (u64::MAX, i64::MAX));
        assert_eq!(current_round(i64::MIN, 30, i64::MAX), 1);
    }

    #[test]
    fn current_round_starts_at_or_before_now() {
        let (g, p) = (1_000_000, 7);
        for now in g..g + 100 {
            let r = current_round(now, p, g);
            assert!(time_of_round(p, g, r) <= now);
            assert!(time_of_round(p, g, r + 1) > now);
        }
    }
}
