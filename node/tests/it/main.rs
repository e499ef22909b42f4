//! beacon-node's integration tests: the real binary, run as a user runs it.

mod verify_cli;
