#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| citybrain_fuzz::ngsild_subscription(data));
