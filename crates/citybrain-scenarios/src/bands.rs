//! The headline figures' documented bands (`scenarios/bands.json`), and the
//! check that holds each measured figure to its band: what `citybrain bench
//! scenarios` runs, and `.ci/run` with it, so that a change that moves a
//! reported figure out of its band fails instead of passing unnoticed.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ScenarioError;

const BANDS: &str = include_str!("../../../scenarios/bands.json");

/// figure → [low, high].
pub type FigureBands = BTreeMap<String, (f64, f64)>;

/// scenario → policy → figure → [low, high].
#[derive(Debug, Clone, Deserialize)]
pub struct Bands {
    pub scenarios: BTreeMap<String, BTreeMap<String, FigureBands>>,
}

/// One figure measured, against its band.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub scenario: String,
    pub policy: String,
    pub figure: String,
    pub value: Option<f64>,
    pub band: (f64, f64),
}

impl Checked {
    /// Inside its band (a figure that was not measured is not).
    pub fn holds(&self) -> bool {
        self.value.is_some_and(|v| v >= self.band.0 && v <= self.band.1)
    }
}

impl Bands {
    /// The bands shipped with the binary.
    pub fn embedded() -> Result<Bands, ScenarioError> {
        Bands::parse("scenarios/bands.json", BANDS)
    }

    pub fn parse(name: &str, text: &str) -> Result<Bands, ScenarioError> {
        let b: Bands = serde_json::from_str(text).map_err(|e| ScenarioError::Data(format!("{name}: {e}")))?;
        for (s, policies) in &b.scenarios {
            for (p, figures) in policies {
                for (f, (lo, hi)) in figures {
                    if lo.is_nan() || hi.is_nan() || lo > hi {
                        return Err(ScenarioError::Data(format!(
                            "{name}: {s} / {p} / {f}: the band [{lo}, {hi}] is empty"
                        )));
                    }
                }
            }
        }
        Ok(b)
    }

    /// Every band of `scenario`, with the value `measured` gives for it
    /// (policy, figure → value).
    pub fn check(&self, scenario: &str, measured: impl Fn(&str, &str) -> Option<f64>) -> Vec<Checked> {
        let Some(policies) = self.scenarios.get(scenario) else {
            return Vec::new();
        };
        policies
            .iter()
            .flat_map(|(p, figures)| {
                figures.iter().map(|(f, &band)| Checked {
                    scenario: scenario.to_string(),
                    policy: p.clone(),
                    figure: f.clone(),
                    value: measured(p, f),
                    band,
                })
            })
            .collect()
    }

    /// The policies a scenario's bands name.
    pub fn policies(&self, scenario: &str) -> Vec<String> {
        self.scenarios
            .get(scenario)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_bands_parse_and_name_both_scenarios() {
        let b = Bands::embedded().unwrap();
        assert!(b.policies("signal-corridor").contains(&"coordinated".to_string()));
        assert!(b.policies("hospital-district").contains(&"baseline".to_string()));
    }

    #[test]
    fn a_figure_outside_its_band_or_missing_fails() {
        let b = Bands::parse(
            "t",
            r#"{"scenarios": {"s": {"p": {"x": [1, 2], "y": [0, 10], "z": [0, 1]}}}}"#,
        )
        .unwrap();
        let got = b.check("s", |_, f| match f {
            "x" => Some(2.5),
            "y" => Some(10.0),
            _ => None,
        });
        let holds: Vec<(String, bool)> = got.iter().map(|c| (c.figure.clone(), c.holds())).collect();
        assert_eq!(
            holds,
            vec![("x".into(), false), ("y".into(), true), ("z".into(), false)]
        );
        assert!(b.check("other", |_, _| None).is_empty());
    }

    #[test]
    fn an_empty_band_is_refused_with_its_name() {
        let e = Bands::parse("t", r#"{"scenarios": {"s": {"p": {"x": [3, 2]}}}}"#).unwrap_err();
        assert!(e.to_string().contains("s / p / x"), "{e}");
    }
}
