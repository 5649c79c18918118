//! What happens to a filing before it becomes an appeal: its category (the
//! filer's, or the classifier's when confident enough, else the dispatch
//! centre's `other`), its area and route, and the open appeals like it
//! nearby. The hub and the benchmark file through these, so they route alike.

use chrono::{DateTime, Utc};

use crate::appeal::{Filing, Location};
use crate::config::{AppealsConfig, Route};
use crate::text::{Around, Classification, Similar, TextIndex};
use crate::AppealsError;

/// The category chosen when the classifier is not sure: the triage desk routes it.
pub const UNSURE: &str = "other";

/// The category, the classifier's answer (when it chose) and the route of a filing.
pub fn triage(
    filing: &Filing,
    config: &AppealsConfig,
    index: &TextIndex,
) -> Result<(String, Option<Classification>, Route), AppealsError> {
    let (category, classified) = match &filing.category {
        Some(c) => (c.clone(), None),
        None => match index.classify(&filing.description)? {
            Some(c) if c.confidence >= config.moderation.classify_min_confidence => (c.category.clone(), Some(c)),
            // Not sure: the dispatch centre decides.
            Some(c) => (UNSURE.to_string(), Some(c)),
            None => (UNSURE.to_string(), None),
        },
    };
    if config.category(&category).is_none() {
        return Err(AppealsError::Invalid(format!(
            "category '{category}' is not one of the appeal categories"
        )));
    }
    let area = filing.area.clone().or_else(|| {
        filing
            .location
            .as_ref()
            .and_then(|l| config.area_at(l.lat, l.lon))
            .map(|a| a.id.clone())
    });
    let mut route = config.route(&category, area.as_deref());
    if let Some(c) = &classified {
        route.reason = format!(
            "{}; category {} chosen by the classifier (confidence {:.2})",
            route.reason, c.category, c.confidence
        );
    }
    Ok((category, classified, route))
}

/// Open appeals of `category` like `text` near `at`, filed within the
/// configured window before `filed`, within the radius and overlap.
pub fn duplicates(
    index: &TextIndex,
    config: &AppealsConfig,
    text: &str,
    category: &str,
    at: &Location,
    filed: DateTime<Utc>,
    except: Option<&str>,
) -> Result<Vec<Similar>, AppealsError> {
    let m = &config.moderation;
    let window = chrono::Duration::from_std(m.duplicate_window).unwrap_or_default();
    index.similar(&Around {
        text,
        category,
        lat: at.lat,
        lon: at.lon,
        radius_m: m.duplicate_radius_m,
        since: (filed - window).timestamp(),
        min_similarity: m.duplicate_min_similarity,
        except,
    })
}
