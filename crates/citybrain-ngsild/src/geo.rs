//! GeoJSON geometries and the NGSI-LD geo-query relations (clause 4.10).
//!
//! Coordinates are `[longitude, latitude]` in WGS84. Topological relations
//! (within, contains, intersects, equals, disjoint, overlaps) use the DE-9IM
//! matrix from the `geo` crate on planar lon/lat; `near` uses great-circle
//! (haversine) distance in metres to the closest point of the entity's geometry.

use geo::{Closest, Distance, Haversine, HaversineClosestPoint, Relate};
use geo::{Coord, Geometry, LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon};
use serde_json::Value;

use crate::error::{NgsiError, Result};

pub use geo::Geometry as GeoGeometry;

/// Parses a GeoJSON geometry object, checking ranges, ring closure and size.
pub fn parse_geometry(v: &Value, max_points: usize) -> Result<Geometry<f64>> {
    let obj = v
        .as_object()
        .ok_or_else(|| NgsiError::bad_data("a geometry must be a GeoJSON object"))?;
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| NgsiError::bad_data("a geometry needs a 'type'"))?;
    let coords = obj
        .get("coordinates")
        .ok_or_else(|| NgsiError::bad_data(format!("{ty} geometry needs 'coordinates'")))?;
    build(ty, coords, max_points)
}

/// Builds a geometry from a type name and a coordinates array (used for the
/// `geometry=` and `coordinates=` query parameters too).
pub fn build(ty: &str, coords: &Value, max_points: usize) -> Result<Geometry<f64>> {
    let mut budget = max_points;
    let g = match ty {
        "Point" => Geometry::Point(Point(coord(coords, &mut budget)?)),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint(
            array(coords, "MultiPoint")?
                .iter()
                .map(|c| coord(c, &mut budget).map(Point))
                .collect::<Result<_>>()?,
        )),
        "LineString" => Geometry::LineString(line(coords, &mut budget)?),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString(
            array(coords, "MultiLineString")?
                .iter()
                .map(|l| line(l, &mut budget))
                .collect::<Result<_>>()?,
        )),
        "Polygon" => Geometry::Polygon(polygon(coords, &mut budget)?),
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon(
            array(coords, "MultiPolygon")?
                .iter()
                .map(|p| polygon(p, &mut budget))
                .collect::<Result<_>>()?,
        )),
        other => {
            return Err(NgsiError::bad_data(format!(
                "unsupported geometry type '{other}' (expected Point, MultiPoint, LineString, MultiLineString, Polygon or MultiPolygon)"
            )))
        }
    };
    Ok(g)
}

fn array<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>> {
    v.as_array()
        .ok_or_else(|| NgsiError::bad_data(format!("{what} coordinates must be an array")))
}

fn coord(v: &Value, budget: &mut usize) -> Result<Coord<f64>> {
    if *budget == 0 {
        return Err(NgsiError::too_complex("geometry has too many coordinates"));
    }
    *budget -= 1;
    let a = v
        .as_array()
        .filter(|a| a.len() == 2 || a.len() == 3)
        .ok_or_else(|| NgsiError::bad_data("a position must be [longitude, latitude]"))?;
    let lon = a[0]
        .as_f64()
        .ok_or_else(|| NgsiError::bad_data("longitude must be a number"))?;
    let lat = a[1]
        .as_f64()
        .ok_or_else(|| NgsiError::bad_data("latitude must be a number"))?;
    if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
        return Err(NgsiError::bad_data(format!(
            "position [{lon}, {lat}] is outside WGS84 ranges (longitude first)"
        )));
    }
    Ok(Coord { x: lon, y: lat })
}

fn line(v: &Value, budget: &mut usize) -> Result<LineString<f64>> {
    let pts = array(v, "LineString")?
        .iter()
        .map(|c| coord(c, budget))
        .collect::<Result<Vec<_>>>()?;
    if pts.len() < 2 {
        return Err(NgsiError::bad_data("a LineString needs at least 2 positions"));
    }
    Ok(LineString(pts))
}

fn polygon(v: &Value, budget: &mut usize) -> Result<Polygon<f64>> {
    let rings = array(v, "Polygon")?;
    if rings.is_empty() {
        return Err(NgsiError::bad_data("a Polygon needs at least one ring"));
    }
    let mut out = Vec::with_capacity(rings.len());
    for r in rings {
        let ring = line(r, budget)?;
        if ring.0.len() < 4 || ring.0.first() != ring.0.last() {
            return Err(NgsiError::bad_data(
                "a Polygon ring needs at least 4 positions and must be closed (first = last)",
            ));
        }
        out.push(ring);
    }
    let exterior = out.remove(0);
    Ok(Polygon::new(exterior, out))
}

/// A geo-query relation.
#[derive(Debug, Clone, PartialEq)]
pub enum GeoRel {
    Near {
        max_distance: Option<f64>,
        min_distance: Option<f64>,
    },
    Within,
    Contains,
    Intersects,
    Equals,
    Disjoint,
    Overlaps,
}

impl GeoRel {
    /// Parses `near;maxDistance==2000`, `within`, ...
    pub fn parse(s: &str) -> Result<GeoRel> {
        let mut parts = s.split(';');
        let head = parts.next().unwrap_or_default();
        let rel = match head {
            "near" => {
                let (mut max_distance, mut min_distance) = (None, None);
                for p in parts {
                    // One modifier, a positive number: `near;maxDistance==N`
                    // or `near;minDistance==N` (GS CIM 009 V1.8.1, 4.10).
                    if max_distance.is_some() || min_distance.is_some() {
                        return Err(NgsiError::bad_data("georel near takes one distance modifier"));
                    }
                    let (k, v) = p.split_once("==").ok_or_else(|| {
                        NgsiError::bad_data(format!("georel: '{p}' is not maxDistance==N or minDistance==N"))
                    })?;
                    let n: f64 = v
                        .parse()
                        .ok()
                        .filter(|n: &f64| n.is_finite() && *n > 0.0)
                        .ok_or_else(|| NgsiError::bad_data(format!("georel: '{v}' is not a distance in metres")))?;
                    match k {
                        "maxDistance" => max_distance = Some(n),
                        "minDistance" => min_distance = Some(n),
                        _ => return Err(NgsiError::bad_data(format!("georel: unknown modifier '{k}'"))),
                    }
                }
                if max_distance.is_none() && min_distance.is_none() {
                    return Err(NgsiError::bad_data("georel near needs maxDistance or minDistance"));
                }
                return Ok(GeoRel::Near {
                    max_distance,
                    min_distance,
                });
            }
            "within" => GeoRel::Within,
            "contains" => GeoRel::Contains,
            "intersects" => GeoRel::Intersects,
            "equals" => GeoRel::Equals,
            "disjoint" => GeoRel::Disjoint,
            "overlaps" => GeoRel::Overlaps,
            other => {
                return Err(NgsiError::bad_data(format!(
                "georel: unknown relation '{other}' (near, within, contains, intersects, equals, disjoint, overlaps)"
            )))
            }
        };
        if parts.next().is_some() {
            return Err(NgsiError::bad_data(format!("georel: '{head}' takes no modifiers")));
        }
        Ok(rel)
    }
}

/// A parsed geo-query: the relation, the reference geometry, and the
/// (expanded) GeoProperty it applies to.
#[derive(Debug, Clone)]
pub struct GeoQuery {
    pub rel: GeoRel,
    pub geometry: Geometry<f64>,
    pub property: String,
}

impl GeoQuery {
    pub fn new(rel: GeoRel, geometry: Geometry<f64>, property: String) -> Result<GeoQuery> {
        if matches!(rel, GeoRel::Near { .. }) && !matches!(geometry, Geometry::Point(_)) {
            return Err(NgsiError::bad_data("georel near needs a Point geometry"));
        }
        Ok(GeoQuery {
            rel,
            geometry,
            property,
        })
    }

    /// Tests the relation between an entity geometry (`a`) and the query's.
    pub fn test(&self, a: &Geometry<f64>) -> bool {
        let b = &self.geometry;
        match &self.rel {
            GeoRel::Near {
                max_distance,
                min_distance,
            } => {
                let Geometry::Point(p) = b else { return false };
                let d = distance_m(a, p);
                max_distance.is_none_or(|m| d <= m) && min_distance.is_none_or(|m| d >= m)
            }
            rel => {
                let m = a.relate(b);
                match rel {
                    GeoRel::Within => m.is_within(),
                    GeoRel::Contains => m.is_contains(),
                    GeoRel::Intersects => m.is_intersects(),
                    GeoRel::Equals => m.is_equal_topo(),
                    GeoRel::Disjoint => m.is_disjoint(),
                    GeoRel::Overlaps => m.is_overlaps(),
                    GeoRel::Near { .. } => unreachable!("handled above"),
                }
            }
        }
    }
}

/// Great-circle distance in metres from a point to the closest part of a geometry.
pub fn distance_m(g: &Geometry<f64>, p: &Point<f64>) -> f64 {
    match g.haversine_closest_point(p) {
        Closest::Intersection(_) => 0.0,
        Closest::SinglePoint(q) => Haversine::distance(*p, q),
        // Indeterminate happens for empty or degenerate shapes: fall back to
        // the nearest vertex so the answer stays finite and deterministic.
        Closest::Indeterminate => {
            use geo::CoordsIter;
            g.coords_iter()
                .map(|c| Haversine::distance(*p, Point(c)))
                .fold(f64::INFINITY, f64::min)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn g(v: Value) -> Geometry<f64> {
        parse_geometry(&v, 1000).unwrap()
    }

    #[test]
    fn relations() {
        let square = g(json!({"type":"Polygon","coordinates":[[[0,0],[0,1],[1,1],[1,0],[0,0]]]}));
        let inside = g(json!({"type":"Point","coordinates":[0.5,0.5]}));
        let outside = g(json!({"type":"Point","coordinates":[2,2]}));
        let q = |rel| GeoQuery::new(rel, square.clone(), "loc".into()).unwrap();
        assert!(q(GeoRel::Within).test(&inside));
        assert!(!q(GeoRel::Within).test(&outside));
        assert!(q(GeoRel::Disjoint).test(&outside));
        assert!(q(GeoRel::Intersects).test(&inside));
        assert!(q(GeoRel::Equals).test(&square));
        let big = g(json!({"type":"Polygon","coordinates":[[[-1,-1],[-1,2],[2,2],[2,-1],[-1,-1]]]}));
        assert!(q(GeoRel::Contains).test(&big));
        let shifted = g(json!({"type":"Polygon","coordinates":[[[0.5,0.5],[0.5,1.5],[1.5,1.5],[1.5,0.5],[0.5,0.5]]]}));
        assert!(q(GeoRel::Overlaps).test(&shifted));
    }

    #[test]
    fn near_in_metres() {
        // Two points 0.01 degrees of latitude apart: about 1112 m.
        let p = g(json!({"type":"Point","coordinates":[120.17,30.26]}));
        let e = g(json!({"type":"Point","coordinates":[120.17,30.27]}));
        let near = |spec: &str| GeoQuery::new(GeoRel::parse(spec).unwrap(), p.clone(), "l".into()).unwrap();
        assert!(near("near;maxDistance==1200").test(&e));
        assert!(!near("near;maxDistance==1000").test(&e));
        assert!(near("near;minDistance==1000").test(&e));
        assert!(GeoRel::parse("near").is_err());
        assert!(GeoRel::parse("near;maxDistance==-1").is_err());
        assert!(GeoRel::parse("within;x==1").is_err());
    }

    #[test]
    fn invalid_geometries_rejected() {
        assert!(parse_geometry(&json!({"type":"Point","coordinates":[200,0]}), 10).is_err());
        assert!(parse_geometry(&json!({"type":"Polygon","coordinates":[[[0,0],[1,1],[0,1]]]}), 10).is_err());
        assert!(parse_geometry(&json!({"type":"Circle","coordinates":[0,0]}), 10).is_err());
        let many = json!({"type":"LineString","coordinates":[[0,0],[1,1],[2,2]]});
        assert!(parse_geometry(&many, 2).is_err());
    }
}
