//! drand protobuf wire messages, decoded and converted as the node does:
//! `beacon_node::fuzz::fuzz_wire_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    beacon_node::fuzz::fuzz_wire_message(data);
});
