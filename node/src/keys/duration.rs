//! Go's `time.Duration` text form, as drand writes `Period` and `CatchupPeriod` ("3s", "1m0s").

use std::time::Duration;

/// Parses Go's duration syntax (`time.ParseDuration`): a sequence of decimal numbers, each with
/// an optional fraction and a unit of `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, such as "30s",
/// "1m30s", "1.5s" or "0". Negative durations are refused: no period is negative.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; write it as Go does, e.g. \"30s\"".into());
    }
    if s.starts_with('-') {
        return Err(format!("{text:?} is negative"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(format!(
                "{text:?} is not a Go duration: expected a number at {rest:?}"
            ));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("{text:?} lacks a unit (ns, us, ms, s, m, h)")),
            other => return Err(format!("{text:?} has an unknown unit {other:?}")),
        };
        let too_long = || format!("{text:?} is too long a duration");
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| too_long())?
        };
        let mut nanos = int.checked_mul(per_unit).ok_or_else(too_long)?;
        // The fraction's digits past nanosecond precision are dropped, as Go does.
        let mut scale = per_unit;
        for d in frac_part.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or_else(too_long)?;
        rest = next;
    }
    // Go's Duration is an int64 of nanoseconds.
    if total > i64::MAX as u128 {
        return Err(format!("{text:?} is too long a duration"));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Formats like Go's `Duration.String()`: "0s", "3s", "1m0s", "1h0m0s", "1.5s", "500ms".
pub fn format_go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (unit, div) = if ns < 1_000 {
            ("ns", 1)
        } else if ns < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", decimal(ns, div));
    }
    let hours = ns / 3_600_000_000_000;
    let rest = ns % 3_600_000_000_000;
    let minutes = rest / 60_000_000_000;
    let rest = rest % 60_000_000_000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&decimal(rest, 1_000_000_000));
    out.push('s');
    out
}

/// `value / div` in decimal, with the fraction's trailing zeros dropped.
fn decimal(value: u128, div: u128) -> String {
    let int = value / div;
    let frac = value % div;
    if frac == 0 {
        return int.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_strings_roundtrip() {
        for (text, secs, nanos) in [
            ("0s", 0, 0),
            ("1s", 1, 0),
            ("3s", 3, 0),
            ("30s", 30, 0),
            ("1m0s", 60, 0),
            ("1m30s", 90, 0),
            ("1h0m0s", 3600, 0),
            ("1h0m1s", 3601, 0),
            ("1.5s", 1, 500_000_000),
            ("500ms", 0, 500_000_000),
            ("1.5µs", 0, 1_500),
            ("7ns", 0, 7),
        ] {
            let d = Duration::new(secs, nanos);
            assert_eq!(format_go_duration(d), text);
            assert_eq!(parse_go_duration(text), Ok(d), "{text}");
        }
    }

    #[test]
    fn parses_other_go_forms_and_refuses_bad_ones() {
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_go_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1us"), Ok(Duration::from_micros(1)));
        for bad in ["", "3", "-3s", "3x", "s", "3 s", "."] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }
}
