//! beacon-core's integration tests, one binary (see the design notes: one test binary per crate).

mod threshold_props;
mod vectors;
