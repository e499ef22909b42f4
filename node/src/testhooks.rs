//! Switches for the operator's upgrade tests (issue 8): one binary that can stand for another
//! build (a different reported version), a build that stops following the chain, or one that
//! crashes at start. They exist only with the cargo feature `test-hooks`, which the e2e test
//! kubelet enables for its images and the release images never do: without it every function
//! here is a constant and the environment is not read.

/// Reported build version instead of the crate's (`status`, the control API).
pub const VERSION_ENV: &str = "BEACON_TEST_BUILD_VERSION";
/// `lag`: generate no beacons and sync nothing after start; `crash`: exit 1 at start.
pub const FAULT_ENV: &str = "BEACON_TEST_FAULT";

/// A fault a test build has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Serves its API but never stores another beacon: its lag grows by one every period.
    Lag,
    /// Exits with status 1 right after parsing its arguments (a crash loop under a kubelet).
    Crash,
}

impl Fault {
    /// The fault a `BEACON_TEST_FAULT` value names; anything else is a mistake in a test.
    pub fn parse(value: &str) -> Option<Fault> {
        match value {
            "lag" => Some(Fault::Lag),
            "crash" => Some(Fault::Crash),
            _ => None,
        }
    }
}

/// What a build with the hooks says at start, so that no one mistakes it for a release build.
pub const ANNOUNCEMENT: &str =
    "this beacon-node build has the test hooks (BEACON_TEST_BUILD_VERSION, BEACON_TEST_FAULT): a test build, not for production";

/// Logs [`ANNOUNCEMENT`] if the build has the hooks.
pub fn announce() {
    if cfg!(feature = "test-hooks") {
        tracing::warn!("{ANNOUNCEMENT}");
    }
}

/// The fault of this process, if the build has the hooks and the environment asks for one.
pub fn fault() -> Option<Fault> {
    if !cfg!(feature = "test-hooks") {
        return None;
    }
    let value = std::env::var(FAULT_ENV).ok()?;
    let fault = Fault::parse(&value);
    if fault.is_none() {
        tracing::warn!(value, "unknown {FAULT_ENV} (known: lag, crash); ignored");
    }
    fault
}

/// The version to report instead of the crate's, if the build has the hooks.
pub fn version_override() -> Option<String> {
    if !cfg!(feature = "test-hooks") {
        return None;
    }
    std::env::var(VERSION_ENV).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_by_name() {
        assert_eq!(Fault::parse("lag"), Some(Fault::Lag));
        assert_eq!(Fault::parse("crash"), Some(Fault::Crash));
        assert_eq!(Fault::parse("Lag"), None);
        assert_eq!(Fault::parse(""), None);
    }
}
