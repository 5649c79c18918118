#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| citybrain_fuzz::sumo_xml(data));
