//! Reads a real netgenerate grid (see tests/data/sources.md), plain and gzip.

use citybrain_net::sumo::read_net;
use citybrain_net::EdgeFunction;

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn netgenerate_grid_is_read_completely() {
    let text = std::fs::read_to_string(data("grid3.net.xml")).unwrap();
    let net = read_net(data("grid3.net.xml")).unwrap();
    let s = net.stats();
    assert_eq!(s.connections, text.matches("<connection ").count());
    assert_eq!(s.traffic_lights, text.matches("<tlLogic ").count());
    assert_eq!(s.lanes, text.matches("<lane ").count());
    assert_eq!(s.normal_edges + s.internal_edges, text.matches("<edge ").count());
    assert_eq!(s.junctions, text.matches("<junction ").count());
    assert_eq!(s.traffic_lights, 9, "every junction of the 3x3 grid is signalled");
    // Every normal edge has two lanes and known endpoints; internal lanes are driven through.
    for e in net.edges.iter().filter(|e| e.function == EdgeFunction::Normal) {
        assert_eq!(e.lanes.len(), 2, "{}", e.id);
        assert!(e.from.is_some() && e.to.is_some());
    }
    for c in &net.connections {
        let from = net.edge(c.from);
        if from.function == EdgeFunction::Normal {
            let via = c.via.expect("netgenerate grids have internal links");
            assert_eq!(net.edge(net.lane(via).edge).function, EdgeFunction::Internal);
            assert!(c.tls.is_some() && c.link_index.is_some());
        }
    }
    for t in &net.tls {
        assert_eq!(t.cycle(), 90.0, "netgenerate's default program");
    }
}

#[test]
fn gzip_gives_the_same_network() {
    let a = read_net(data("grid3.net.xml")).unwrap();
    let b = read_net(data("grid3.net.xml.gz")).unwrap();
    assert_eq!(a.stats(), b.stats());
    assert_eq!(a.connections, b.connections);
    assert_eq!(a.lanes, b.lanes);
}

#[test]
fn missing_files_are_named() {
    let err = read_net("/nonexistent/x.net.xml").unwrap_err().to_string();
    assert!(err.starts_with("/nonexistent/x.net.xml: cannot open"), "{err}");
}
