//! Durations in the custom resources: Go-style strings of whole hours, minutes and seconds
//! (`"3s"`, `"30s"`, `"10m"`, `"1h30m"`, `"48h"`), the way drand writes its period and
//! timeouts (`--period 30s`, `Period = "30s"` in the group file).
//!
//! Why strings and not integer seconds: a ceremony window of days or a progress deadline of
//! minutes reads better as `"48h"` / `"10m"`, and the same form serves every duration field,
//! the beacon period included. Why only whole seconds: drand's wire carries every one of these
//! as `uint32 …_seconds`, so fractions (`"1.5s"`, `"300ms"`) could not reach the nodes.
//!
//! The value stays a plain string through serde, so an object with a malformed duration still
//! deserialises (the controller can then name the field in its error instead of failing the
//! whole watch); [`Duration::seconds`] parses it.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The schema pattern: hours, minutes, seconds, each optional, in that order. Digit counts are
/// bounded so that CEL's `duration()` (which the API server evaluates on some of these fields)
/// never overflows; `minLength: 2` rules out the empty string (every non-empty match has a
/// digit and a unit).
pub const PATTERN: &str = "^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$";

/// A duration as written in a spec, e.g. `"30s"`. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration(pub String);

/// Why a duration string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is empty; write whole hours, minutes and seconds such as \"30s\", \"10m\" or \"1h30m\"")]
    Empty(String),
    #[error("{0:?} is not a duration of whole hours, minutes and seconds (h, m, s in that order, e.g. \"30s\", \"10m\", \"1h30m\"); fractions and ms/us/ns are not supported because the nodes take whole seconds")]
    Malformed(String),
    #[error("{0:?} is too long a duration; it must fit 4294967295 seconds")]
    TooLong(String),
}

impl Duration {
    /// A duration from a string (not checked; see [`Duration::seconds`]).
    pub fn new(text: impl Into<String>) -> Self {
        Duration(text.into())
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whole seconds, bounded by `u32` because drand's messages carry them as `uint32`.
    pub fn seconds(&self) -> Result<u32, DurationError> {
        parse_seconds(&self.0)
    }

    /// As a standard duration.
    pub fn to_std(&self) -> Result<std::time::Duration, DurationError> {
        self.seconds()
            .map(|s| std::time::Duration::from_secs(u64::from(s)))
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Duration {
    fn from(text: &str) -> Self {
        Duration(text.to_owned())
    }
}

/// Parses `[<h>h][<m>m][<s>s]` (at least one part, units in that order) into seconds.
pub fn parse_seconds(text: &str) -> Result<u32, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty(text.to_owned()));
    }
    let malformed = || DurationError::Malformed(text.to_owned());
    let mut total: u64 = 0;
    // Units must appear in this order, each at most once.
    let mut units = [('h', 3600u64), ('m', 60), ('s', 1)].into_iter();
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits == rest.len() {
            return Err(malformed());
        }
        let (number, tail) = rest.split_at(digits);
        let mut tail_chars = tail.chars();
        let unit = tail_chars.next().ok_or_else(malformed)?;
        let scale = loop {
            match units.next() {
                Some((u, scale)) if u == unit => break scale,
                Some(_) => continue,
                None => return Err(malformed()),
            }
        };
        let value: u64 = number
            .parse()
            .map_err(|_| DurationError::TooLong(text.to_owned()))?;
        total = value
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| DurationError::TooLong(text.to_owned()))?;
        rest = tail_chars.as_str();
    }
    u32::try_from(total).map_err(|_| DurationError::TooLong(text.to_owned()))
}

impl JsonSchema for Duration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": PATTERN,
            "minLength": 2,
            "maxLength": 24,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_units_in_order() {
        for (text, secs) in [
            ("0s", 0),
            ("3s", 3),
            ("30s", 30),
            ("10m", 600),
            ("1h", 3600),
            ("1h30m", 5400),
            ("1h0m1s", 3601),
            ("48h", 172_800),
            ("90s", 90),
        ] {
            assert_eq!(parse_seconds(text), Ok(secs), "{text}");
        }
    }

    #[test]
    fn rejects_what_the_nodes_cannot_take() {
        for text in [
            "s", "30", "1.5s", "300ms", "1s1m", "1m1m", "-1s", " 3s", "3s ", "3d", "h1",
        ] {
            assert_eq!(
                parse_seconds(text),
                Err(DurationError::Malformed(text.into())),
                "{text}"
            );
        }
        assert_eq!(parse_seconds(""), Err(DurationError::Empty(String::new())));
    }

    #[test]
    fn rejects_overflow_instead_of_wrapping() {
        assert!(matches!(
            parse_seconds("4294967296s"),
            Err(DurationError::TooLong(_))
        ));
        assert_eq!(parse_seconds("4294967295s"), Ok(u32::MAX));
        assert!(matches!(
            parse_seconds("99999999999999999999h"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            parse_seconds("1193047h"),
            Err(DurationError::TooLong(_))
        ));
    }

    #[test]
    fn every_string_the_schema_pattern_allows_fits_u32() {
        // The pattern bounds each part's digits; the largest value it lets through must still
        // parse, or the API server would store a period the operator cannot use.
        assert_eq!(
            parse_seconds("99999h9999999m999999999s"),
            Ok(99_999 * 3600 + 9_999_999 * 60 + 999_999_999)
        );
    }
}
