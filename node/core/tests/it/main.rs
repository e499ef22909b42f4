//! beacon-core's integration tests, one binary (see the design notes: one test binary per crate).

mod dkg_ceremony;
mod dkg_go_vectors;
mod dkg_protocol;
mod dkg_sim;
mod dkg_vectors;
mod threshold_props;
mod vectors;
