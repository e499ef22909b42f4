//! drand beacon JSON: `beacon_node::fuzz::fuzz_beacon_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    beacon_node::fuzz::fuzz_beacon_json(data);
});
