//! Public consultations on draft policies (征求意见).
//!
//! A department publishes a draft for a period (the State Council's rule
//! for major administrative decisions: generally no less than 30 days).
//! While it is open, signed-in members of the public comment on the whole
//! draft or on one section, and support each other's comments. The
//! department answers every comment, saying whether it was adopted
//! (采纳情况), and once the period is over concludes with what changed.
//! Comments are redacted and moderated like appeals: personal data never
//! shows, blocked words hold a comment until a moderator looks, enough
//! distinct reporters hide it.
//!
//! ```text
//!   upcoming ─▶ open (comments, supports, answers) ─▶ closed (answers) ─▶ concluded
//! ```

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::config::AppealsConfig;
use crate::redact::{blocked_word, redact};
use crate::{Actor, ActorKind, AppealsError};

/// The longest comment.
pub const MAX_COMMENT: usize = 2000;
/// The longest section of a draft, and the longest outcome.
pub const MAX_SECTION: usize = 20_000;
pub const MAX_SECTIONS: usize = 200;
pub const MAX_TITLE: usize = 200;
pub const MAX_SUMMARY: usize = 4000;
/// The most comments one person leaves on one consultation.
pub const MAX_COMMENTS_EACH: u32 = 20;

/// One part of a draft that comments can point at (an article, a clause).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    pub id: String,
    pub title: String,
    pub text: String,
}

/// What a department puts up for consultation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    pub title: String,
    pub summary: String,
    /// The department consulting (and answering).
    pub department: String,
    /// The policy (rules as code) the draft would create or change, if any.
    #[serde(default)]
    pub policy: Option<String>,
    pub sections: Vec<Section>,
    pub opens: DateTime<Utc>,
    pub closes: DateTime<Utc>,
}

/// A draft shipped as a file (`appeals/consultations/*.yaml`): published
/// on the first start, open from then for `period`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftFile {
    pub id: String,
    pub title: String,
    pub summary: String,
    pub department: String,
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(with = "crate::config::duration_text")]
    pub period: std::time::Duration,
    pub sections: Vec<Section>,
}

impl DraftFile {
    /// The draft as published at `now`.
    pub fn draft(&self, now: DateTime<Utc>) -> Draft {
        Draft {
            title: self.title.clone(),
            summary: self.summary.clone(),
            department: self.department.clone(),
            policy: self.policy.clone(),
            sections: self.sections.clone(),
            opens: now,
            closes: now + Duration::from_std(self.period).unwrap_or(Duration::days(30)),
        }
    }
}

fn check_len(what: &str, s: &str, min: usize, max: usize) -> Result<(), AppealsError> {
    let n = s.trim().chars().count();
    if n < min {
        return Err(AppealsError::Invalid(format!("{what} is empty")));
    }
    if n > max {
        return Err(AppealsError::Invalid(format!("{what}: {n} characters; at most {max}")));
    }
    Ok(())
}

/// An id of a consultation or a section: letters, digits, `-`, `_` and `.`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Draft {
    /// Checks lengths, the department, unique sections and the period.
    pub fn check(&self, config: &AppealsConfig) -> Result<(), AppealsError> {
        check_len("title", &self.title, 1, MAX_TITLE)?;
        check_len("summary", &self.summary, 1, MAX_SUMMARY)?;
        if config.department(&self.department).is_none() {
            return Err(AppealsError::Invalid(format!(
                "department '{}' is not in routing.yaml",
                self.department
            )));
        }
        if self.sections.is_empty() || self.sections.len() > MAX_SECTIONS {
            return Err(AppealsError::Invalid(format!(
                "sections: 1 to {MAX_SECTIONS}, not {}",
                self.sections.len()
            )));
        }
        let mut ids = BTreeSet::new();
        for s in &self.sections {
            if !valid_id(&s.id) {
                return Err(AppealsError::Invalid(format!(
                    "section id '{}': letters, digits, '-', '_' or '.', at most 64",
                    s.id
                )));
            }
            if !ids.insert(&s.id) {
                return Err(AppealsError::Invalid(format!("section '{}' twice", s.id)));
            }
            check_len(&format!("section '{}': title", s.id), &s.title, 1, MAX_TITLE)?;
            check_len(&format!("section '{}': text", s.id), &s.text, 1, MAX_SECTION)?;
        }
        let min = Duration::from_std(config.moderation.consultation_min_period).unwrap_or(Duration::days(30));
        if self.closes - self.opens < min {
            return Err(AppealsError::Invalid(format!(
                "the consultation is open {} days; at least {} (moderation.yaml: consultation_min_period)",
                (self.closes - self.opens).num_days(),
                min.num_days()
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Upcoming,
    Open,
    Closed,
    Concluded,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Upcoming => "upcoming",
            Stage::Open => "open",
            Stage::Closed => "closed",
            Stage::Concluded => "concluded",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Some(match s {
            "upcoming" => Stage::Upcoming,
            "open" => Stage::Open,
            "closed" => Stage::Closed,
            "concluded" => Stage::Concluded,
            _ => return None,
        })
    }
}

/// Whether a comment changed the draft (the adoption published with the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Adoption {
    Adopted,
    PartlyAdopted,
    NotAdopted,
    /// A question or remark that asked for no change.
    Noted,
}

/// The department's conclusion, after the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conclusion {
    pub outcome: String,
    pub by: String,
    pub at: DateTime<Utc>,
    pub tally: Tally,
}

/// How many comments, answered, adopted…: what a conclusion reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub comments: u32,
    pub hidden: u32,
    pub unanswered: u32,
    pub adopted: u32,
    pub partly_adopted: u32,
    pub not_adopted: u32,
    pub noted: u32,
}

impl Tally {
    pub fn count(comments: &[Comment]) -> Tally {
        let mut t = Tally::default();
        for c in comments {
            t.comments += 1;
            if c.hidden {
                t.hidden += 1;
                continue;
            }
            match c.answer.as_ref().map(|a| a.adoption) {
                None => t.unanswered += 1,
                Some(Adoption::Adopted) => t.adopted += 1,
                Some(Adoption::PartlyAdopted) => t.partly_adopted += 1,
                Some(Adoption::NotAdopted) => t.not_adopted += 1,
                Some(Adoption::Noted) => t.noted += 1,
            }
        }
        t
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consultation {
    pub id: String,
    pub draft: Draft,
    pub published_by: String,
    pub published_at: DateTime<Utc>,
    /// Comments left so far (the next comment's number).
    pub comments: u32,
    pub conclusion: Option<Conclusion>,
}

/// The department's answer to a comment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub text: String,
    pub adoption: Adoption,
    pub department: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub consultation: String,
    pub seq: u32,
    pub section: Option<String>,
    /// Who wrote it (never public).
    pub author: String,
    pub author_kind: ActorKind,
    pub text: String,
    /// What the public reads: redacted, or held for moderation.
    pub public_text: String,
    /// Holds a blocked word: shown once a moderator has looked.
    pub held: bool,
    pub hidden: bool,
    pub hidden_reason: Option<String>,
    pub reporters: BTreeSet<String>,
    pub supporters: BTreeSet<String>,
    pub at: DateTime<Utc>,
    pub answer: Option<Answer>,
}

/// A comment as the public sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicComment {
    pub seq: u32,
    pub section: Option<String>,
    /// "citizen" or "enterprise": never who.
    pub author_kind: &'static str,
    pub text: String,
    pub supports: usize,
    pub at: DateTime<Utc>,
    pub answer: Option<Answer>,
}

fn signed_in(by: &Actor, what: &str) -> Result<String, AppealsError> {
    by.subject
        .clone()
        .ok_or_else(|| AppealsError::Forbidden(format!("sign in to {what}")))
}

fn department_staff(by: &Actor, department: &str, config: &AppealsConfig) -> bool {
    match by.kind {
        ActorKind::Administrator | ActorKind::System => true,
        ActorKind::Officer => by
            .departments
            .iter()
            .any(|d| d == "*" || config.supervises(d, department)),
        _ => false,
    }
}

impl Consultation {
    /// A department (or one above it) publishes a draft.
    pub fn publish(
        id: &str,
        draft: Draft,
        by: &Actor,
        config: &AppealsConfig,
        now: DateTime<Utc>,
    ) -> Result<Consultation, AppealsError> {
        if !valid_id(id) {
            return Err(AppealsError::Invalid(format!(
                "consultation id '{id}': letters, digits, '-', '_' or '.', at most 64"
            )));
        }
        draft.check(config)?;
        if !department_staff(by, &draft.department, config) {
            return Err(AppealsError::Forbidden(format!(
                "only {} (or a department above it) may consult on its drafts",
                draft.department
            )));
        }
        Ok(Consultation {
            id: id.to_string(),
            draft,
            published_by: by.id.clone(),
            published_at: now,
            comments: 0,
            conclusion: None,
        })
    }

    pub fn stage(&self, now: DateTime<Utc>) -> Stage {
        if self.conclusion.is_some() {
            Stage::Concluded
        } else if now < self.draft.opens {
            Stage::Upcoming
        } else if now < self.draft.closes {
            Stage::Open
        } else {
            Stage::Closed
        }
    }

    pub fn may_answer(&self, by: &Actor, config: &AppealsConfig) -> bool {
        department_staff(by, &self.draft.department, config)
    }

    /// A comment while the consultation is open; `mine` is how many the
    /// author has left on it already.
    pub fn comment(
        &mut self,
        by: &Actor,
        section: Option<&str>,
        text: &str,
        mine: u32,
        config: &AppealsConfig,
        now: DateTime<Utc>,
    ) -> Result<Comment, AppealsError> {
        let author = signed_in(by, "comment on a draft")?;
        if self.stage(now) != Stage::Open {
            return Err(AppealsError::Conflict(format!(
                "consultation {} is {}: comments are taken from {} to {}",
                self.id,
                self.stage(now).as_str(),
                self.draft.opens.to_rfc3339(),
                self.draft.closes.to_rfc3339()
            )));
        }
        if let Some(s) = section {
            if !self.draft.sections.iter().any(|x| x.id == s) {
                return Err(AppealsError::Invalid(format!("the draft has no section '{s}'")));
            }
        }
        check_len("the comment", text, 1, MAX_COMMENT)?;
        if mine >= MAX_COMMENTS_EACH {
            return Err(AppealsError::Conflict(format!(
                "at most {MAX_COMMENTS_EACH} comments each on one consultation"
            )));
        }
        let text = text.trim().to_string();
        let held = blocked_word(&text, &config.moderation.blocked_words).is_some();
        let public_text = if held {
            "[held for moderation]".into()
        } else {
            redact(&text, &[])
        };
        self.comments += 1;
        Ok(Comment {
            consultation: self.id.clone(),
            seq: self.comments,
            section: section.map(str::to_string),
            author,
            author_kind: by.kind,
            text,
            public_text,
            held,
            hidden: false,
            hidden_reason: None,
            reporters: BTreeSet::new(),
            supporters: BTreeSet::new(),
            at: now,
            answer: None,
        })
    }

    /// After the period, with every visible comment answered.
    pub fn conclude(
        &mut self,
        by: &Actor,
        outcome: &str,
        tally: Tally,
        config: &AppealsConfig,
        now: DateTime<Utc>,
    ) -> Result<(), AppealsError> {
        if !self.may_answer(by, config) {
            return Err(AppealsError::Forbidden(format!(
                "only {} (or a department above it) may conclude this consultation",
                self.draft.department
            )));
        }
        match self.stage(now) {
            Stage::Closed => {}
            s => {
                return Err(AppealsError::Conflict(format!(
                    "consultation {} is {}: it is concluded after it closes",
                    self.id,
                    s.as_str()
                )))
            }
        }
        if tally.unanswered > 0 {
            return Err(AppealsError::Conflict(format!(
                "{} comments have no answer yet: every comment is answered before the conclusion",
                tally.unanswered
            )));
        }
        check_len("the outcome", outcome, 1, MAX_SECTION)?;
        self.conclusion = Some(Conclusion {
            outcome: redact(outcome.trim(), &[]),
            by: by.id.clone(),
            at: now,
            tally,
        });
        Ok(())
    }
}

impl Comment {
    /// The department answers (or corrects its answer) until the conclusion.
    pub fn answer(
        &mut self,
        by: &Actor,
        consultation: &Consultation,
        text: &str,
        adoption: Adoption,
        config: &AppealsConfig,
        now: DateTime<Utc>,
    ) -> Result<(), AppealsError> {
        if !consultation.may_answer(by, config) {
            return Err(AppealsError::Forbidden(format!(
                "only {} (or a department above it) may answer comments on this draft",
                consultation.draft.department
            )));
        }
        if consultation.conclusion.is_some() {
            return Err(AppealsError::Conflict(format!(
                "consultation {} is concluded: its answers are final",
                consultation.id
            )));
        }
        check_len("the answer", text, 1, MAX_COMMENT * 2)?;
        self.answer = Some(Answer {
            text: redact(text.trim(), &[]),
            adoption,
            department: consultation.draft.department.clone(),
            at: now,
        });
        Ok(())
    }

    /// A signed-in member of the public supports it; once each, not one's own.
    /// Returns whether anything changed.
    pub fn support(
        &mut self,
        by: &Actor,
        consultation: &Consultation,
        now: DateTime<Utc>,
    ) -> Result<bool, AppealsError> {
        let who = signed_in(by, "support a comment")?;
        if consultation.stage(now) != Stage::Open {
            return Err(AppealsError::Conflict(format!(
                "consultation {} is {}: support is given while it is open",
                consultation.id,
                consultation.stage(now).as_str()
            )));
        }
        if who == self.author {
            return Err(AppealsError::Conflict("one does not support one's own comment".into()));
        }
        Ok(self.supporters.insert(who))
    }

    /// A report; each reporter counts once, and enough hide the comment.
    pub fn report(&mut self, by: &Actor, config: &AppealsConfig) -> Result<bool, AppealsError> {
        let who = signed_in(by, "report a comment")?;
        if !self.reporters.insert(who) {
            return Ok(false);
        }
        if !self.hidden && self.reporters.len() as u32 >= config.moderation.hide_after_reports {
            self.hidden = true;
            self.hidden_reason = Some(format!("{} reports", self.reporters.len()));
        }
        Ok(true)
    }

    /// A moderator hides it, or shows it (releasing a held one).
    pub fn moderate(&mut self, by: &Actor, hide: bool, reason: &str) -> Result<(), AppealsError> {
        if !matches!(by.kind, ActorKind::Administrator | ActorKind::Officer) {
            return Err(AppealsError::Forbidden(
                "only moderators may hide or show comments".into(),
            ));
        }
        check_len("the reason", reason, 1, MAX_COMMENT)?;
        self.hidden = hide;
        self.hidden_reason = hide.then(|| reason.trim().to_string());
        if !hide {
            self.reporters.clear();
            if self.held {
                self.held = false;
                self.public_text = redact(&self.text, &[]);
            }
        }
        Ok(())
    }

    pub fn is_public(&self) -> bool {
        !self.hidden
    }

    pub fn public(&self) -> PublicComment {
        PublicComment {
            seq: self.seq,
            section: self.section.clone(),
            author_kind: match self.author_kind {
                ActorKind::Enterprise => "enterprise",
                ActorKind::Officer | ActorKind::Administrator | ActorKind::System => "official",
                _ => "citizen",
            },
            text: self.public_text.clone(),
            supports: self.supporters.len(),
            at: self.at,
            answer: self.answer.clone(),
        }
    }
}
