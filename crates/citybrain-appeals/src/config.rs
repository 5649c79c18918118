//! The appeals configuration, a folder of YAML files an operator edits:
//!
//! - `categories.yaml`: what can be appealed, each with its SLA, its warning
//!   point and its Open311 attributes;
//! - `routing.yaml`: departments (each with its supervisor), areas (WGS84
//!   polygons), and the table category × area → department, with the
//!   triage desk for what matches nothing;
//! - `calendar.yaml`: the city's offset, holidays and make-up working days;
//! - `moderation.yaml`: blocked words, reports before hiding, the duplicate
//!   radius and window, when an answered appeal closes by itself, the
//!   shortest consultation;
//! - `consultations/*.yaml` (optional): drafts put up for public comment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use chrono::{FixedOffset, NaiveDate};
use geo::{Contains, Coord, LineString, Point, Polygon};
use serde::{Deserialize, Serialize};

use crate::calendar::{Sla, WorkCalendar};
use crate::consultation::DraftFile;
use crate::AppealsError;

/// The most bytes a configuration file may hold.
const MAX_FILE: u64 = 4 << 20;

/// An Open311 attribute datatype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Datatype {
    String,
    Number,
    Datetime,
    Text,
    Singlevaluelist,
    Multivaluelist,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeValue {
    pub key: String,
    pub name: String,
}

/// A question a category asks besides the description (an Open311 attribute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribute {
    pub code: String,
    pub datatype: Datatype,
    #[serde(default)]
    pub required: bool,
    pub description: String,
    /// False: shown to the user as information only.
    #[serde(default = "yes")]
    pub variable: bool,
    #[serde(default)]
    pub datatype_description: Option<String>,
    #[serde(default)]
    pub values: Vec<AttributeValue>,
}

fn yes() -> bool {
    true
}

fn warn_default() -> f64 {
    0.8
}

/// Something that can be appealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub code: String,
    pub name: String,
    /// A group of categories (Open311 `group`).
    pub group: String,
    pub description: String,
    /// Words people use for it: the classifier learns from them.
    #[serde(default)]
    pub keywords: Vec<String>,
    pub sla: Sla,
    /// The share of the SLA after which the department is warned.
    #[serde(default = "warn_default")]
    pub warn_at: f64,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    pub id: String,
    pub name: String,
    /// Where a late appeal escalates to (上级).
    #[serde(default)]
    pub supervisor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Area {
    pub id: String,
    pub name: String,
    /// The outline, `[longitude, latitude]` pairs (WGS84).
    pub polygon: Vec<[f64; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    pub category: String,
    /// None: any area.
    #[serde(default)]
    pub area: Option<String>,
    pub department: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutingFile {
    /// The Open311 jurisdiction_id this city answers to.
    #[serde(default)]
    jurisdiction: Option<String>,
    triage: String,
    departments: Vec<Department>,
    #[serde(default)]
    areas: Vec<Area>,
    rules: Vec<RoutingRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    offset: String,
    years: Vec<i32>,
    #[serde(default)]
    holidays: Vec<NaiveDate>,
    #[serde(default)]
    workdays: Vec<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoriesFile {
    categories: Vec<Category>,
}

/// Moderation and housekeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Moderation {
    /// Text holding one of these (case-insensitive) is hidden from the
    /// public until a moderator looks at it; the department still handles it.
    #[serde(default)]
    pub blocked_words: Vec<String>,
    /// Reports by the public after which an appeal is hidden (Decidim: 3).
    pub hide_after_reports: u32,
    /// An answered appeal the requester neither confirms nor reopens closes after this.
    #[serde(with = "duration_text")]
    pub close_after: Duration,
    /// Duplicates: open appeals of the same category within this distance…
    pub duplicate_radius_m: f64,
    /// …filed within this long before.
    #[serde(with = "duration_text")]
    pub duplicate_window: Duration,
    /// …whose text is at least this similar (0–1, token overlap).
    pub duplicate_min_similarity: f64,
    /// Below this confidence the classifier's category is not used: the
    /// appeal goes to the triage desk.
    pub classify_min_confidence: f64,
    /// The shortest public consultation on a draft (the State Council's
    /// rule for major administrative decisions: generally 30 days).
    #[serde(with = "duration_text", default = "thirty_days")]
    pub consultation_min_period: Duration,
}

fn thirty_days() -> Duration {
    Duration::from_secs(30 * 86_400)
}

/// Durations written as text (`30days`, `7days 12h`), for serde.
pub mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("'{s}': {e}")))
    }
}

/// Where an appeal goes, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub department: String,
    pub area: Option<String>,
    /// The rule that matched, in words (kept with the appeal).
    pub reason: String,
}

/// Everything the appeals read from `appeals/`.
#[derive(Debug, Clone)]
pub struct AppealsConfig {
    pub categories: Vec<Category>,
    pub departments: Vec<Department>,
    pub areas: Vec<Area>,
    pub rules: Vec<RoutingRule>,
    pub triage: String,
    pub calendar: WorkCalendar,
    pub moderation: Moderation,
    /// The Open311 jurisdiction_id (None: requests need not name one).
    pub jurisdiction: Option<String>,
    /// Drafts shipped in `consultations/`, published on the first start.
    pub drafts: Vec<DraftFile>,
    by_code: HashMap<String, usize>,
    outlines: Vec<Polygon<f64>>,
}

fn read(dir: &Path, name: &str) -> Result<String, AppealsError> {
    let path = dir.join(name);
    let err = |message: String| AppealsError::Config {
        file: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(&path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_FILE {
        return Err(err(format!("{} bytes; at most {MAX_FILE}", meta.len())));
    }
    std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))
}

fn parse<T: serde::de::DeserializeOwned>(dir: &Path, name: &str, text: &str) -> Result<T, AppealsError> {
    serde_yaml_ng::from_str(text).map_err(|e| AppealsError::Config {
        file: dir.join(name).display().to_string(),
        message: match e.location() {
            Some(l) => format!("line {}, column {}: {e}", l.line(), l.column()),
            None => e.to_string(),
        },
    })
}

/// The drafts of `dir/consultations/*.yaml` (none when the folder is
/// missing), each checked as it would be when published.
fn load_drafts(dir: &Path, config: &AppealsConfig) -> Result<Vec<DraftFile>, AppealsError> {
    let folder = dir.join("consultations");
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    let mut out: Vec<DraftFile> = Vec::new();
    for n in names {
        let name = format!("consultations/{n}");
        let d: DraftFile = parse(dir, &name, &read(dir, &name)?)?;
        let err = |message: String| AppealsError::Config {
            file: dir.join(&name).display().to_string(),
            message,
        };
        if out.iter().any(|o| o.id == d.id) {
            return Err(err(format!("consultation '{}' twice", d.id)));
        }
        if !crate::consultation::valid_id(&d.id) {
            return Err(err(format!("id '{}': letters, digits, '-', '_' or '.'", d.id)));
        }
        let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        d.draft(epoch).check(config).map_err(|e| err(e.to_string()))?;
        out.push(d);
    }
    Ok(out)
}

impl AppealsConfig {
    /// Reads and checks the four files of `dir`, and its drafts.
    pub fn load(dir: &Path) -> Result<AppealsConfig, AppealsError> {
        let categories: CategoriesFile = parse(dir, "categories.yaml", &read(dir, "categories.yaml")?)?;
        let routing: RoutingFile = parse(dir, "routing.yaml", &read(dir, "routing.yaml")?)?;
        let calendar: CalendarFile = parse(dir, "calendar.yaml", &read(dir, "calendar.yaml")?)?;
        let moderation: Moderation = parse(dir, "moderation.yaml", &read(dir, "moderation.yaml")?)?;
        let offset: FixedOffset = calendar.offset.parse().map_err(|_| AppealsError::Config {
            file: dir.join("calendar.yaml").display().to_string(),
            message: format!("offset '{}' is not like +08:00", calendar.offset),
        })?;
        let calendar = WorkCalendar {
            offset,
            holidays: calendar.holidays.into_iter().collect(),
            workdays: calendar.workdays.into_iter().collect(),
            years: calendar.years.into_iter().collect(),
        };
        let jurisdiction = routing.jurisdiction.clone();
        let mut c = Self::new(
            categories.categories,
            routing.departments,
            routing.areas,
            routing.rules,
            routing.triage,
            calendar,
            moderation,
        )
        .map_err(|message| AppealsError::Config {
            file: dir.display().to_string(),
            message,
        })?;
        c.jurisdiction = jurisdiction;
        c.drafts = load_drafts(dir, &c)?;
        Ok(c)
    }

    /// Checks a configuration: unique codes, known departments and areas,
    /// supervisors without cycles, areas with an outline, SLAs above zero.
    pub fn new(
        categories: Vec<Category>,
        departments: Vec<Department>,
        areas: Vec<Area>,
        rules: Vec<RoutingRule>,
        triage: String,
        calendar: WorkCalendar,
        moderation: Moderation,
    ) -> Result<AppealsConfig, String> {
        let mut by_code = HashMap::new();
        for (i, c) in categories.iter().enumerate() {
            if by_code.insert(c.code.clone(), i).is_some() {
                return Err(format!("categories.yaml: category '{}' twice", c.code));
            }
            if !(0.0..1.0).contains(&c.warn_at) {
                return Err(format!(
                    "categories.yaml: '{}': warn_at {} is not in [0, 1)",
                    c.code, c.warn_at
                ));
            }
            if matches!(c.sla, Sla::Hours(0) | Sla::WorkingDays(0)) {
                return Err(format!("categories.yaml: '{}': an SLA of zero", c.code));
            }
            let mut codes = BTreeSet::new();
            for a in &c.attributes {
                if !codes.insert(&a.code) {
                    return Err(format!("categories.yaml: '{}': attribute '{}' twice", c.code, a.code));
                }
                let list = matches!(a.datatype, Datatype::Singlevaluelist | Datatype::Multivaluelist);
                if list == a.values.is_empty() {
                    return Err(format!(
                        "categories.yaml: '{}': attribute '{}': values are for list datatypes, and lists need them",
                        c.code, a.code
                    ));
                }
            }
        }
        let depts: BTreeMap<&str, &Department> = departments.iter().map(|d| (d.id.as_str(), d)).collect();
        if depts.len() != departments.len() {
            return Err("routing.yaml: a department id twice".into());
        }
        let known = |d: &str, what: &str| {
            if depts.contains_key(d) {
                Ok(())
            } else {
                Err(format!(
                    "routing.yaml: {what} names department '{d}', which is not listed"
                ))
            }
        };
        known(&triage, "triage")?;
        for d in &departments {
            if let Some(s) = &d.supervisor {
                known(s, &format!("the supervisor of '{}'", d.id))?;
            }
            // Supervisors form a tree: follow the chain, it must end.
            let mut seen = BTreeSet::new();
            let mut at = Some(d.id.as_str());
            while let Some(x) = at {
                if !seen.insert(x) {
                    return Err(format!("routing.yaml: the supervisors of '{}' run in a circle", d.id));
                }
                at = depts.get(x).and_then(|d| d.supervisor.as_deref());
            }
        }
        let mut outlines = Vec::new();
        for a in &areas {
            if a.polygon.len() < 3 {
                return Err(format!("routing.yaml: area '{}' needs at least 3 points", a.id));
            }
            if a.polygon
                .iter()
                .any(|[x, y]| !(-180.0..=180.0).contains(x) || !(-90.0..=90.0).contains(y))
            {
                return Err(format!(
                    "routing.yaml: area '{}': a point is not [longitude, latitude]",
                    a.id
                ));
            }
            outlines.push(Polygon::new(
                LineString::from(
                    a.polygon
                        .iter()
                        .map(|[x, y]| Coord { x: *x, y: *y })
                        .collect::<Vec<_>>(),
                ),
                vec![],
            ));
        }
        for r in &rules {
            if !by_code.contains_key(&r.category) {
                return Err(format!(
                    "routing.yaml: a rule names category '{}', which is not listed",
                    r.category
                ));
            }
            if let Some(a) = &r.area {
                if !areas.iter().any(|x| &x.id == a) {
                    return Err(format!("routing.yaml: a rule names area '{a}', which is not listed"));
                }
            }
            known(&r.department, &format!("the rule for '{}'", r.category))?;
        }
        if !(0.0..=1.0).contains(&moderation.duplicate_min_similarity)
            || !(0.0..=1.0).contains(&moderation.classify_min_confidence)
        {
            return Err("moderation.yaml: similarities and confidences are between 0 and 1".into());
        }
        Ok(AppealsConfig {
            categories,
            departments,
            areas,
            rules,
            triage,
            calendar,
            moderation,
            jurisdiction: None,
            drafts: Vec::new(),
            by_code,
            outlines,
        })
    }

    pub fn category(&self, code: &str) -> Option<&Category> {
        self.by_code.get(code).map(|i| &self.categories[*i])
    }

    pub fn department(&self, id: &str) -> Option<&Department> {
        self.departments.iter().find(|d| d.id == id)
    }

    /// The area a point lies in (the first listed, where outlines overlap).
    pub fn area_at(&self, lat: f64, lon: f64) -> Option<&Area> {
        let p = Point::new(lon, lat);
        self.outlines
            .iter()
            .position(|o| o.contains(&p))
            .map(|i| &self.areas[i])
    }

    /// Routes a category in an area: the rule for both, else the rule for
    /// the category anywhere, else the triage desk.
    pub fn route(&self, category: &str, area: Option<&str>) -> Route {
        let rule = area
            .and_then(|a| {
                self.rules
                    .iter()
                    .find(|r| r.category == category && r.area.as_deref() == Some(a))
            })
            .or_else(|| self.rules.iter().find(|r| r.category == category && r.area.is_none()));
        match rule {
            Some(r) => Route {
                department: r.department.clone(),
                area: area.map(str::to_string),
                reason: match &r.area {
                    Some(a) => format!("routing table: {category} in {a}"),
                    None => format!("routing table: {category}, any area"),
                },
            },
            None => Route {
                department: self.triage.clone(),
                area: area.map(str::to_string),
                reason: format!("no rule for {category}: the triage desk"),
            },
        }
    }

    /// The supervisor above `department`, if any.
    pub fn supervisor_of(&self, department: &str) -> Option<&str> {
        self.department(department).and_then(|d| d.supervisor.as_deref())
    }

    /// Whether `department` is `of` or above it in the supervisor chain.
    pub fn supervises(&self, department: &str, of: &str) -> bool {
        let mut at = Some(of);
        let mut hops = 0;
        while let Some(x) = at {
            if x == department {
                return true;
            }
            at = self.supervisor_of(x);
            hops += 1;
            if hops > self.departments.len() {
                break;
            }
        }
        false
    }
}
