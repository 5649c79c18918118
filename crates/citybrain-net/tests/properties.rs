//! The reader never panics, whatever the bytes.

use proptest::prelude::*;

proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in ".{0,300}") {
        let _ = citybrain_net::sumo::read_net_str("fuzz.net.xml", &s);
    }

    #[test]
    fn mangled_networks_never_panic(cut in 0usize..4000, junk in "[<>\"=/a-z0-9 ]{0,20}") {
        let text = std::fs::read_to_string(format!("{}/tests/data/grid3.net.xml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let cut = cut.min(text.len());
        let mut mangled = text.as_bytes()[..cut].to_vec();
        mangled.extend_from_slice(junk.as_bytes());
        mangled.extend_from_slice(&text.as_bytes()[cut..]);
        let s = String::from_utf8_lossy(&mangled);
        let _ = citybrain_net::sumo::read_net_str("fuzz.net.xml", &s);
    }
}
