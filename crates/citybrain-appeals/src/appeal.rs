//! An appeal's lifecycle.
//!
//! ```text
//!   filed ─▶ routed ─▶ in_progress ⇄ awaiting_citizen (SLA paused)
//!              │  ▲         │
//!              │  └ reroute │ answer
//!              ▼            ▼
//!           answered ─▶ closed  (confirmed, rated ≥ 3, or silent for `close_after`)
//!              │  ▲       │
//!              ▼  │       ▼
//!            reopened ◀── (reopened, or rated ≤ 2)
//!   any open ─▶ duplicate (merged into another; its followers follow that one)
//! ```
//!
//! Every change appends an [`Update`] with a public note (redacted) and,
//! for staff, an internal one. Timers: a warning at `warn_at` of the SLA,
//! escalation to the supervising department at the due time and one level
//! further each SLA span after, and the closing of a silent answer.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{AppealsConfig, Route};
use crate::redact::{blocked_word, redact};
use crate::text::Classification;
use crate::{Actor, ActorKind, AppealsError};

/// The longest description (Open311: 4,000 characters).
pub const MAX_DESCRIPTION: usize = 4000;
/// The longest note, answer or reason.
pub const MAX_NOTE: usize = 4000;
pub const MAX_ATTACHMENTS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Routed,
    InProgress,
    AwaitingCitizen,
    Answered,
    Reopened,
    Closed,
    Duplicate,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Routed => "routed",
            Status::InProgress => "in_progress",
            Status::AwaitingCitizen => "awaiting_citizen",
            Status::Answered => "answered",
            Status::Reopened => "reopened",
            Status::Closed => "closed",
            Status::Duplicate => "duplicate",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Routed,
            Status::InProgress,
            Status::AwaitingCitizen,
            Status::Answered,
            Status::Reopened,
            Status::Closed,
            Status::Duplicate,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Still with a department (the SLA clock runs, unless paused).
    pub fn is_handling(self) -> bool {
        matches!(
            self,
            Status::Routed | Status::InProgress | Status::AwaitingCitizen | Status::Reopened
        )
    }

    /// Open311's two states.
    pub fn open311(self) -> &'static str {
        if matches!(self, Status::Closed | Status::Duplicate) {
            "closed"
        } else {
            "open"
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateKind {
    Filed,
    Rerouted,
    Accepted,
    AskedCitizen,
    CitizenReplied,
    Answered,
    Confirmed,
    Reopened,
    Rated,
    Merged,
    Followed,
    Warned,
    Escalated,
    Hidden,
    Restored,
    AutoClosed,
}

/// One change of an appeal, as its history and its subscribers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub appeal: String,
    /// 1, 2, 3… per appeal.
    pub seq: u32,
    pub at: DateTime<Utc>,
    pub kind: UpdateKind,
    /// The status after the change.
    pub status: Status,
    /// What the public reads (redacted).
    pub public_note: String,
    /// Staff only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_note: Option<String>,
    /// Who: "citizen", "department", "system", "moderator".
    pub by: String,
    pub department: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// How an appeal came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Portal,
    Open311,
    Hotline,
    Api,
}

/// What a requester files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filing {
    /// None: the classifier chooses.
    #[serde(default)]
    pub category: Option<String>,
    pub description: String,
    #[serde(default)]
    pub location: Option<Location>,
    /// An area id, where the requester chose one (else from the location).
    #[serde(default)]
    pub area: Option<String>,
    /// Links to photos or documents already uploaded elsewhere.
    #[serde(default)]
    pub attachments: Vec<String>,
    /// Hidden from departments and the public (administrators still see who).
    #[serde(default)]
    pub anonymous: bool,
    #[serde(default)]
    pub name: Option<String>,
    /// Phone or e-mail, for the department to call back.
    #[serde(default)]
    pub contact: Option<String>,
    /// Answers to the category's attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    pub stars: u8,
    #[serde(default)]
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// An appeal (诉求).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Appeal {
    pub id: String,
    pub category: String,
    /// Set when the classifier chose the category.
    #[serde(default)]
    pub classified: Option<Classification>,
    pub description: String,
    /// The description as the public reads it.
    pub public_description: String,
    pub location: Option<Location>,
    pub area: Option<String>,
    pub attachments: Vec<String>,
    pub anonymous: bool,
    /// The person or enterprise who filed it, when signed in.
    pub requester: Option<String>,
    pub name: Option<String>,
    pub contact: Option<String>,
    pub attributes: BTreeMap<String, Vec<String>>,
    pub channel: Channel,
    pub department: String,
    pub route_reason: String,
    pub status: Status,
    pub filed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the current SLA clock started (filing, or the last reopening).
    pub sla_start: DateTime<Utc>,
    pub due: DateTime<Utc>,
    pub warn_at: DateTime<Utc>,
    pub warned: bool,
    /// 0: with its department; 1: its supervisor was called in; …
    pub escalation: u32,
    pub escalated_to: Vec<String>,
    pub paused_since: Option<DateTime<Utc>>,
    pub answer: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub rating: Option<Rating>,
    pub reopened: u32,
    pub duplicate_of: Option<String>,
    /// Subjects kept informed (the requester, followers, those of merged duplicates).
    pub followers: BTreeSet<String>,
    pub hidden: bool,
    pub hidden_reason: Option<String>,
    pub reports: u32,
    /// Who reported it (each counts once).
    #[serde(default)]
    pub reporters: BTreeSet<String>,
    /// Whether any answer came after the due time (for the on-time rate).
    pub late: bool,
    pub seq: u32,
    /// SHA-256 of the secret an anonymous requester follows it with.
    pub secret_sha256: Option<String>,
}

fn check_len(what: &str, s: &str, max: usize) -> Result<(), AppealsError> {
    if s.chars().count() > max {
        return Err(AppealsError::Invalid(format!("{what}: at most {max} characters")));
    }
    Ok(())
}

fn note(what: &str, s: &str) -> Result<String, AppealsError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(AppealsError::Invalid(format!("{what} is required")));
    }
    check_len(what, s, MAX_NOTE)?;
    Ok(s.to_string())
}

pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Filing {
    /// Checks what can be checked without the index: lengths, coordinates,
    /// links, the category's required attributes and list values.
    pub fn check(&self, config: &AppealsConfig) -> Result<(), AppealsError> {
        let d = self.description.trim();
        if d.is_empty() {
            return Err(AppealsError::Invalid("description is required".into()));
        }
        check_len("description", d, MAX_DESCRIPTION)?;
        if let Some(l) = &self.location {
            if !(-90.0..=90.0).contains(&l.lat) || !(-180.0..=180.0).contains(&l.lon) {
                return Err(AppealsError::Invalid(format!(
                    "location: lat {} long {} is not a WGS84 point",
                    l.lat, l.lon
                )));
            }
            if let Some(a) = &l.address {
                check_len("address", a, 500)?;
            }
        }
        if let Some(a) = &self.area {
            if !config.areas.iter().any(|x| &x.id == a) {
                return Err(AppealsError::Invalid(format!(
                    "area '{a}' is not one of the city's areas"
                )));
            }
        }
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err(AppealsError::Invalid(format!("at most {MAX_ATTACHMENTS} attachments")));
        }
        for a in &self.attachments {
            if !(a.starts_with("https://") || a.starts_with("http://"))
                || a.len() > 2000
                || a.contains(char::is_whitespace)
            {
                return Err(AppealsError::Invalid(format!(
                    "attachment '{a}' is not an http(s) link"
                )));
            }
        }
        for (what, v, max) in [("name", &self.name, 100), ("contact", &self.contact, 200)] {
            if let Some(v) = v {
                check_len(what, v, max)?;
            }
        }
        if let Some(code) = &self.category {
            let c = config.category(code).ok_or_else(|| {
                AppealsError::Invalid(format!("category '{code}' is not one of the appeal categories"))
            })?;
            for a in &c.attributes {
                let given = self
                    .attributes
                    .get(&a.code)
                    .filter(|v| v.iter().any(|x| !x.trim().is_empty()));
                if a.required && a.variable && given.is_none() {
                    return Err(AppealsError::Invalid(format!(
                        "attribute '{}' is required for {code}",
                        a.code
                    )));
                }
                if let Some(vals) = given {
                    if matches!(a.datatype, crate::config::Datatype::Singlevaluelist) && vals.len() > 1 {
                        return Err(AppealsError::Invalid(format!("attribute '{}' takes one value", a.code)));
                    }
                    if !a.values.is_empty() {
                        if let Some(bad) = vals.iter().find(|v| !a.values.iter().any(|x| &x.key == *v)) {
                            return Err(AppealsError::Invalid(format!(
                                "attribute '{}': '{bad}' is not one of its values",
                                a.code
                            )));
                        }
                    }
                    if matches!(a.datatype, crate::config::Datatype::Number)
                        && vals.iter().any(|v| v.trim().parse::<f64>().is_err())
                    {
                        return Err(AppealsError::Invalid(format!("attribute '{}' is a number", a.code)));
                    }
                }
            }
            if let Some(unknown) = self
                .attributes
                .keys()
                .find(|k| !c.attributes.iter().any(|a| &a.code == *k))
            {
                return Err(AppealsError::Invalid(format!("{code} has no attribute '{unknown}'")));
            }
        }
        Ok(())
    }
}

impl Appeal {
    /// A new appeal, routed. `category` is the filer's or the classifier's;
    /// `secret` is the anonymous requester's follow secret, if any.
    #[allow(clippy::too_many_arguments)]
    pub fn file(
        id: String,
        filing: Filing,
        category: String,
        classified: Option<Classification>,
        route: Route,
        by: &Actor,
        channel: Channel,
        secret: Option<&str>,
        config: &AppealsConfig,
        now: DateTime<Utc>,
    ) -> Result<(Appeal, Update), AppealsError> {
        filing.check(config)?;
        let cat = config.category(&category).ok_or_else(|| {
            AppealsError::Invalid(format!("category '{category}' is not one of the appeal categories"))
        })?;
        let requester = match by.kind {
            ActorKind::Citizen | ActorKind::Enterprise => by.subject.clone(),
            _ => None,
        };
        let names: Vec<&str> = filing.name.iter().map(String::as_str).collect();
        let description = filing.description.trim().to_string();
        let mut public_description = redact(&description, &names);
        let blocked = blocked_word(&description, &config.moderation.blocked_words).map(str::to_string);
        if blocked.is_some() {
            public_description = "[held for moderation]".into();
        }
        let due = config.calendar.due(now, cat.sla);
        let warn_at = now + Duration::milliseconds(((due - now).num_milliseconds() as f64 * cat.warn_at) as i64);
        let a = Appeal {
            id,
            category,
            classified,
            description,
            public_description,
            location: filing.location,
            area: route.area.clone(),
            attachments: filing.attachments,
            anonymous: filing.anonymous,
            followers: requester.iter().cloned().collect(),
            requester,
            name: filing.name,
            contact: filing.contact,
            attributes: filing.attributes,
            channel,
            department: route.department.clone(),
            route_reason: route.reason.clone(),
            status: Status::Routed,
            filed_at: now,
            updated_at: now,
            sla_start: now,
            due,
            warn_at,
            warned: false,
            escalation: 0,
            escalated_to: Vec::new(),
            paused_since: None,
            answer: None,
            answered_at: None,
            closed_at: None,
            rating: None,
            reopened: 0,
            duplicate_of: None,
            hidden: blocked.is_some(),
            hidden_reason: blocked.map(|w| format!("blocked word '{w}'")),
            reports: 0,
            reporters: BTreeSet::new(),
            late: false,
            seq: 0,
            secret_sha256: secret.map(sha256_hex),
        };
        let mut a = a;
        let department = config
            .department(&a.department)
            .map_or(a.department.clone(), |d| d.name.clone());
        let u = a.push(
            UpdateKind::Filed,
            format!(
                "Received and sent to {department}; an answer is due by {} ({}).",
                a.due_local(config),
                cat.sla
            ),
            Some(route.reason),
            "citizen",
            now,
        );
        Ok((a, u))
    }

    fn due_local(&self, config: &AppealsConfig) -> String {
        self.due
            .with_timezone(&config.calendar.offset)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }

    fn push(
        &mut self,
        kind: UpdateKind,
        public: String,
        internal: Option<String>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Update {
        self.seq += 1;
        self.updated_at = now;
        let names: Vec<&str> = self.name.iter().map(String::as_str).collect();
        Update {
            appeal: self.id.clone(),
            seq: self.seq,
            at: now,
            kind,
            status: self.status,
            public_note: redact(&public, &names),
            internal_note: internal,
            by: by.into(),
            department: self.department.clone(),
        }
    }

    /// The requester: the signed-in subject who filed it, or whoever holds its secret.
    pub fn is_requester(&self, by: &Actor, secret: Option<&str>) -> bool {
        let subject = matches!(by.kind, ActorKind::Citizen | ActorKind::Enterprise)
            && by.subject.is_some()
            && by.subject == self.requester;
        let secret = matches!((secret, &self.secret_sha256), (Some(s), Some(h)) if &sha256_hex(s) == h);
        subject || secret
    }

    /// Staff of the department handling it, of a department above it, or an administrator.
    pub fn may_handle(&self, by: &Actor, config: &AppealsConfig) -> bool {
        match by.kind {
            ActorKind::Administrator | ActorKind::System => true,
            ActorKind::Officer => by
                .departments
                .iter()
                .any(|d| d == "*" || config.supervises(d, &self.department) || self.escalated_to.contains(d)),
            _ => false,
        }
    }

    fn staff(&self, by: &Actor, config: &AppealsConfig, what: &str) -> Result<(), AppealsError> {
        if self.may_handle(by, config) {
            Ok(())
        } else {
            Err(AppealsError::Forbidden(format!(
                "only {} (or a department above it) may {what} appeal {}",
                self.department, self.id
            )))
        }
    }

    fn requester_only(&self, by: &Actor, secret: Option<&str>, what: &str) -> Result<(), AppealsError> {
        if self.is_requester(by, secret) || matches!(by.kind, ActorKind::Administrator) {
            Ok(())
        } else {
            Err(AppealsError::Forbidden(format!(
                "only the requester may {what} appeal {}",
                self.id
            )))
        }
    }

    fn expect(&self, allowed: &[Status], what: &str) -> Result<(), AppealsError> {
        if allowed.contains(&self.status) {
            Ok(())
        } else {
            Err(AppealsError::Conflict(format!(
                "appeal {} is {}: it cannot be {what}",
                self.id,
                self.status.as_str()
            )))
        }
    }

    /// Sends it to another department, with a reason; the SLA clock runs on.
    pub fn reroute(
        &mut self,
        by: &Actor,
        department: &str,
        reason: &str,
        config: &AppealsConfig,
        now: DateTime<Utc>,
    ) -> Result<Update, AppealsError> {
        self.staff(by, config, "re-route")?;
        self.expect(&[Status::Routed, Status::InProgress, Status::Reopened], "re-routed")?;
        let reason = note("reason", reason)?;
        let to = config
            .department(department)
            .ok_or_else(|| AppealsError::Invalid(format!("department '{department}' is not in the routing table")))?;
        if to.id == self.department {
            return Err(AppealsError::Conflict(format!(
                "appeal {} is already with {department}",
                self.id
            )));
        }
        let from = std::mem::replace(&mut self.department, to.id.clone());
        self.route_reason = format!("re-routed from {from}: {reason}");
        self.status = Status::Routed;
        Ok(self.push(
            UpdateKind::Rerouted,
            format!("Passed to {}: {reason}", to.name),
            Some(format!("from {from} by {}", by.id)),
            "department",
            now,
        ))
    }

    pub fn accept(&mut self, by: &Actor, config: &AppealsConfig, now: DateTime<Utc>) -> Result<Update, AppealsError> {
        self.staff(by, config, "accept")?;
        self.expect(&[Status::Routed, Status::Reopened], "accepted")?;
        self.status = Status::InProgress;
        Ok(self.push(
            UpdateKind::Accepted,
            "The department is working on it.".into(),
            None,
            "department",
            now,
        ))
    }

    /// Asks the requester for more; the SLA clock stops until they reply.
    pub fn ask_citizen(
        &mut self,
        by: &Actor,
        question: &str,
        config: &AppealsConfig,
        now: DateTime<Utc>,
    ) -> Result<Update, AppealsError> {
        self.staff(by, config, "question")?;
        self.expect(&[Status::Routed, Status::InProgress, Status::Reopened], "put on hold")?;
        let q = note("question", question)?;
        self.status = Status::AwaitingCitizen;
        self.paused_since = Some(now);
        Ok(self.push(
            UpdateKind::AskedCitizen,
            format!("Waiting for the requester: {q}"),
            None,
            "department",
            now,
        ))
    }

    /// The requester answers; the clock goes on where it stopped.
    pub fn citizen_reply(
        &mut self,
        by: &Actor,
        secret: Option<&str>,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Update, AppealsError> {
        self.requester_only(by, secret, "reply to")?;
        self.expect(&[Status::AwaitingCitizen], "replied to")?;
        let t = note("reply", text)?;
        if let Some(since) = self.paused_since.take() {
            let paused = now - since;
            self.due += paused;
            self.warn_at += paused;
        }
        self.status = Status::InProgress;
        Ok(self.push(
            UpdateKind::CitizenReplied,
            format!("The requester replied: {t}"),
            None,
            "citizen",
            now,
        ))
    }

    pub fn answer(
        &mut self,
        by: &Actor,
        answer: &str,
        config: &AppealsConfig,
        now: DateTime<Utc>,
    ) -> Result<Update, AppealsError> {
        self.staff(by, config, "answer")?;
        self.expect(&[Status::Routed, Status::InProgress, Status::Reopened], "answered")?;
        let a = note("answer", answer)?;
        self.late |= now > self.due;
        self.status = Status::Answered;
        self.answer = Some(a.clone());
        self.answered_at = Some(now);
        Ok(self.push(UpdateKind::Answered, a, None, "department", now))
    }

    pub fn confirm(&mut self, by: &Actor, secret: Option<&str>, now: DateTime<Utc>) -> Result<Update, AppealsError> {
        self.requester_only(by, secret, "confirm")?;
        self.expect(&[Status::Answered], "confirmed")?;
        self.status = Status::Closed;
        self.closed_at = Some(now);
        Ok(self.push(
            UpdateKind::Confirmed,
            "The requester confirmed it is resolved.".into(),
            None,
            "citizen",
            now,
        ))
    }

    fn restart_clock(&mut self, config: &AppealsConfig, now: DateTime<Utc>) {
        let sla = config.category(&self.category).map(|c| (c.sla, c.warn_at));
        if let Some((sla, warn)) = sla {
            self.sla_start = now;
            self.due = config.calendar.due(now, sla);
            self.warn_at = now + Duration::milliseconds(((self.due - now).num_milliseconds() as f64 * warn) as i64);
            self.warned = false;
            self.escalation = 0;
        }
    }

    /// The requester is not satisfied: back to the department, with a new SLA.
    pub fn reopen(
        &mut self,
        by: &Actor,
        secret: Option<&str>,
        reason: &str,
        config: &AppealsConfig,
        now: DateTime<Utc>,
    ) -> Result<Update, AppealsError> {
        self.requester_only(by, secret, "reopen")?;
        self.expect(&[Status::Answered, Status::Closed], "reopened")?;
        let r = note("reason", reason)?;
        Ok(self.reopen_inner(format!("Reopened by the requester: {r}"), config, now))
    }

    fn reopen_inner(&mut self, public: String, config: &AppealsConfig, now: DateTime<Utc>) -> Update {
        self.status = Status::Reopened;
        self.reopened += 1;
        self.closed_at = None;
        self.restart_clock(config, now);
        let due = self.due_local(config);
        self.push(
            UpdateKind::Reopened,
            format!("{public} A new answer is due by {due}."),
            None,
            "citizen",
            now,
        )
    }

    /// 1–5 stars once answered; 1 or 2 reopens it, 3 or more closes it.
    pub fn rate(
        &mut self,
        by: &Actor,
        secret: Option<&str>,
        stars: u8,
        comment: Option<&str>,
        config: &AppealsConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<Update>, AppealsError> {
        self.requester_only(by, secret, "rate")?;
        self.expect(&[Status::Answered, Status::Closed], "rated")?;
        if !(1..=5).contains(&stars) {
            return Err(AppealsError::Invalid(format!("stars: 1 to 5, not {stars}")));
        }
        if self
            .rating
            .as_ref()
            .is_some_and(|r| r.at >= self.answered_at.unwrap_or(r.at))
        {
            return Err(AppealsError::Conflict(format!(
                "appeal {} is rated already for this answer",
                self.id
            )));
        }
        let comment = comment.map(str::trim).filter(|c| !c.is_empty()).map(str::to_string);
        if let Some(c) = &comment {
            check_len("comment", c, MAX_NOTE)?;
        }
        self.rating = Some(Rating {
            stars,
            comment: comment.clone(),
            at: now,
        });
        let mut out = vec![self.push(
            UpdateKind::Rated,
            format!(
                "Rated {stars}/5{}",
                comment.map(|c| format!(": {c}")).unwrap_or_default()
            ),
            None,
            "citizen",
            now,
        )];
        if stars <= 2 {
            out.push(self.reopen_inner(format!("Rated {stars}/5: handled again."), config, now));
        } else if self.status == Status::Answered {
            self.status = Status::Closed;
            self.closed_at = Some(now);
            out.push(self.push(
                UpdateKind::Confirmed,
                "Closed with the requester's rating.".into(),
                None,
                "citizen",
                now,
            ));
        }
        Ok(out)
    }

    /// Merges it into `master` (which must be open): it is closed as a
    /// duplicate; returns the followers the master takes over.
    pub fn merge_into(
        &mut self,
        by: &Actor,
        master: &Appeal,
        config: &AppealsConfig,
        now: DateTime<Utc>,
    ) -> Result<(Update, BTreeSet<String>), AppealsError> {
        self.staff(by, config, "merge")?;
        self.expect(
            &[
                Status::Routed,
                Status::InProgress,
                Status::Reopened,
                Status::AwaitingCitizen,
            ],
            "merged",
        )?;
        if master.id == self.id {
            return Err(AppealsError::Invalid(
                "an appeal cannot be a duplicate of itself".into(),
            ));
        }
        if !master.status.is_handling() && master.status != Status::Answered {
            return Err(AppealsError::Conflict(format!(
                "appeal {} is {}: merge into an open one",
                master.id,
                master.status.as_str()
            )));
        }
        self.status = Status::Duplicate;
        self.duplicate_of = Some(master.id.clone());
        self.closed_at = Some(now);
        self.paused_since = None;
        let u = self.push(
            UpdateKind::Merged,
            format!(
                "The same as appeal {}: followed there, and you are kept informed.",
                master.id
            ),
            None,
            "department",
            now,
        );
        Ok((u, self.followers.clone()))
    }

    /// The master of a merge takes the duplicate's followers.
    pub fn absorb(&mut self, duplicate: &str, followers: BTreeSet<String>, now: DateTime<Utc>) -> Update {
        self.followers.extend(followers);
        self.push(
            UpdateKind::Followed,
            format!("Appeal {duplicate} was merged into this one."),
            None,
            "department",
            now,
        )
    }

    pub fn follow(&mut self, subject: &str, now: DateTime<Utc>) -> Option<Update> {
        if self.followers.insert(subject.to_string()) {
            Some(self.push(
                UpdateKind::Followed,
                "Someone else follows this appeal.".into(),
                None,
                "citizen",
                now,
            ))
        } else {
            None
        }
    }

    /// A report by the public; hidden once there are enough.
    /// A report by a signed-in member of the public; each counts once, and
    /// enough distinct reporters hide it.
    pub fn report(
        &mut self,
        by: &Actor,
        config: &AppealsConfig,
        now: DateTime<Utc>,
    ) -> Result<Option<Update>, AppealsError> {
        let who = by.subject.clone().unwrap_or_else(|| by.id.clone());
        if by.subject.is_none() && !matches!(by.kind, ActorKind::Officer | ActorKind::Administrator) {
            return Err(AppealsError::Forbidden("sign in to report an appeal".into()));
        }
        if !self.reporters.insert(who) {
            return Ok(None);
        }
        self.reports = self.reporters.len() as u32;
        Ok(self.hide_if_reported(config, now))
    }

    fn hide_if_reported(&mut self, config: &AppealsConfig, now: DateTime<Utc>) -> Option<Update> {
        if !self.hidden && self.reports >= config.moderation.hide_after_reports {
            self.hidden = true;
            self.hidden_reason = Some(format!("{} reports", self.reports));
            return Some(self.push(
                UpdateKind::Hidden,
                "Hidden from the public board until a moderator looks at it.".into(),
                None,
                "moderator",
                now,
            ));
        }
        None
    }

    /// A moderator hides it from the public or shows it again (with a
    /// corrected public text, where the original held what must not show).
    pub fn moderate(
        &mut self,
        by: &Actor,
        hide: bool,
        reason: &str,
        public_description: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Update, AppealsError> {
        if !matches!(by.kind, ActorKind::Administrator | ActorKind::Officer) {
            return Err(AppealsError::Forbidden(
                "only moderators may hide or show appeals".into(),
            ));
        }
        let reason = note("reason", reason)?;
        if let Some(p) = public_description {
            check_len("public description", p, MAX_DESCRIPTION)?;
            let names: Vec<&str> = self.name.iter().map(String::as_str).collect();
            self.public_description = redact(p.trim(), &names);
        }
        self.hidden = hide;
        self.hidden_reason = hide.then(|| reason.clone());
        if !hide {
            self.reports = 0;
            self.reporters.clear();
        }
        Ok(self.push(
            if hide { UpdateKind::Hidden } else { UpdateKind::Restored },
            if hide {
                "Hidden from the public board by a moderator.".into()
            } else {
                "Shown on the public board again.".into()
            },
            Some(reason),
            "moderator",
            now,
        ))
    }

    /// The next instant something is due for it, if any.
    pub fn next_timer(&self, config: &AppealsConfig) -> Option<DateTime<Utc>> {
        match self.status {
            Status::Answered => Some(self.answered_at? + Duration::from_std(config.moderation.close_after).ok()?),
            Status::AwaitingCitizen => None,
            s if s.is_handling() => {
                if !self.warned {
                    Some(self.warn_at)
                } else {
                    let span = (self.due - self.sla_start).max(Duration::hours(1));
                    // Escalation level k falls due at due + (k - 1) spans,
                    // while there is a department above the last one called.
                    let top = self
                        .escalated_to
                        .last()
                        .map_or(self.department.as_str(), String::as_str);
                    config
                        .supervisor_of(top)
                        .map(|_| self.due + span * self.escalation as i32)
                }
            }
            _ => None,
        }
    }

    /// What the timers do at `now`: warn, escalate a level, close a silent answer.
    pub fn on_timer(&mut self, config: &AppealsConfig, now: DateTime<Utc>) -> Vec<Update> {
        let mut out = Vec::new();
        // A server that was down for a while catches up in one call.
        for _ in 0..16 {
            let Some(at) = self.next_timer(config) else { break };
            if at > now {
                break;
            }
            match self.status {
                Status::Answered => {
                    self.status = Status::Closed;
                    self.closed_at = Some(now);
                    out.push(self.push(
                        UpdateKind::AutoClosed,
                        "Closed: the requester did not reply to the answer.".into(),
                        None,
                        "system",
                        now,
                    ));
                }
                _ if !self.warned => {
                    self.warned = true;
                    let due = self.due_local(config);
                    out.push(self.push(
                        UpdateKind::Warned,
                        format!("Reminder to the department: the answer is due by {due}."),
                        None,
                        "system",
                        now,
                    ));
                }
                _ => {
                    let top = self
                        .escalated_to
                        .last()
                        .cloned()
                        .unwrap_or_else(|| self.department.clone());
                    let Some(up) = config.supervisor_of(&top).map(str::to_string) else {
                        break;
                    };
                    self.escalation += 1;
                    self.escalated_to.push(up.clone());
                    let name = config.department(&up).map_or(up.clone(), |d| d.name.clone());
                    out.push(self.push(
                        UpdateKind::Escalated,
                        format!("Late: {name} supervises it now (level {}).", self.escalation),
                        None,
                        "system",
                        now,
                    ));
                }
            }
        }
        out
    }

    /// What the public board and Open311 may show.
    pub fn public(&self) -> PublicAppeal {
        PublicAppeal {
            id: self.id.clone(),
            category: self.category.clone(),
            description: self.public_description.clone(),
            status: self.status,
            department: self.department.clone(),
            area: self.area.clone(),
            location: self.location.clone().map(|l| Location {
                address: l.address.map(|a| redact(&a, &[])),
                ..l
            }),
            attachments: self.attachments.clone(),
            filed_at: self.filed_at,
            updated_at: self.updated_at,
            due: self.due,
            answer: self
                .answer
                .as_ref()
                .map(|a| redact(a, &self.name.iter().map(String::as_str).collect::<Vec<_>>())),
            answered_at: self.answered_at,
            closed_at: self.closed_at,
            rating: self.rating.as_ref().map(|r| r.stars),
            reopened: self.reopened,
            duplicate_of: self.duplicate_of.clone(),
            escalation: self.escalation,
            followers: self.followers.len(),
        }
    }
}

/// An appeal as the public sees it: no names, contacts or internal notes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicAppeal {
    pub id: String,
    pub category: String,
    pub description: String,
    pub status: Status,
    pub department: String,
    pub area: Option<String>,
    pub location: Option<Location>,
    pub attachments: Vec<String>,
    pub filed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub due: DateTime<Utc>,
    pub answer: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub rating: Option<u8>,
    pub reopened: u32,
    pub duplicate_of: Option<String>,
    pub escalation: u32,
    pub followers: usize,
}
