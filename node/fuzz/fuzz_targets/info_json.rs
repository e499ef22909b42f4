//! drand chain info JSON (both shapes): `beacon_node::fuzz::fuzz_info_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    beacon_node::fuzz::fuzz_info_json(data);
});
