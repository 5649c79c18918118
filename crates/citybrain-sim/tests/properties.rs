//! The demand and additional-file readers never panic, whatever the text.

use proptest::prelude::*;

fn net() -> citybrain_net::Network {
    citybrain_net::sumo::read_net(format!("{}/tests/data/grid3.net.xml", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

const ROUTES: &str = r#"<routes>
    <vType id="car" accel="2.6" decel="4.5" sigma="0.5"/>
    <route id="r" edges="A0A1 A1A2"/>
    <vehicle id="v" type="car" depart="0" route="r" departLane="best" departSpeed="max"/>
    <trip id="t" depart="1" from="A0A1" to="C2C1"/>
    <flow id="f" begin="0" end="100" period="10" from="A0B0" to="C2C1"/>
</routes>"#;

const ADDITIONAL: &str = r#"<additional>
    <parkingArea id="p" lane="A0A1_0" startPos="10" endPos="50" roadsideCapacity="3"/>
    <rerouter id="rr" edges="A0A1"><interval begin="0" end="100"><parkingAreaReroute id="p" visible="true"/></interval></rerouter>
    <inductionLoop id="d" lane="A0A1_0" pos="20" period="60" file="d.xml"/>
</additional>"#;

fn mangle(text: &str, cut: usize, junk: &str) -> String {
    let cut = cut.min(text.len());
    let mut b = text.as_bytes()[..cut].to_vec();
    b.extend_from_slice(junk.as_bytes());
    b.extend_from_slice(&text.as_bytes()[cut..]);
    String::from_utf8_lossy(&b).into_owned()
}

proptest! {
    #[test]
    fn routes_reader_never_panics(cut in 0usize..400, junk in "[<>\"=/a-zA-Z0-9 .-]{0,24}") {
        let n = net();
        let _ = citybrain_sim::Demand::read_str(&n, "fuzz.rou.xml", &mangle(ROUTES, cut, &junk));
    }

    #[test]
    fn additional_reader_never_panics(cut in 0usize..400, junk in "[<>\"=/a-zA-Z0-9 .-]{0,24}") {
        let n = net();
        let _ = citybrain_sim::Additional::read_str(&n, "fuzz.add.xml", &mangle(ADDITIONAL, cut, &junk));
    }
}

#[test]
fn the_unmangled_inputs_are_valid() {
    let n = net();
    let d = citybrain_sim::Demand::read_str(&n, "r.xml", ROUTES).unwrap();
    assert_eq!(d.vehicles.len(), 12);
    let a = citybrain_sim::Additional::read_str(&n, "a.xml", ADDITIONAL).unwrap();
    assert_eq!((a.parking_areas.len(), a.rerouters.len(), a.detectors.len()), (1, 1, 1));
}
