//! Public consultations in the hub: every consultation a `Consultation`
//! entity, every comment a `ConsultationComment` entity (its author a
//! relationship the data-sharing policy keeps personal), so subscriptions
//! see comments and answers as they come.

use citybrain_appeals::consultation::{Adoption, Comment, Consultation, Draft, Stage, Tally};
use citybrain_appeals::{Actor, ActorKind, AppealsError};
use citybrain_hub::BatchOp;
use citybrain_ngsild::ErrorKind;
use serde_json::{json, Value};

use crate::{prop, read_json, time, Appeals, Error, Result};

pub const CONSULTATION: &str = "Consultation";
pub const COMMENT: &str = "ConsultationComment";

/// What one does to a comment.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommentAction {
    Answer { text: String, adoption: Adoption },
    Support,
    Report,
    Moderate { hide: bool, reason: String },
}

pub fn consultation_entity_id(id: &str) -> String {
    format!("urn:ngsi-ld:{CONSULTATION}:{id}")
}

/// Zero-padded, so ids sort as comments came.
pub fn comment_entity_id(consultation: &str, seq: u32) -> String {
    format!("urn:ngsi-ld:{COMMENT}:{consultation}-{seq:06}")
}

fn consultation_entity(c: &Consultation) -> Value {
    let mut e = json!({
        "id": consultation_entity_id(&c.id),
        "type": CONSULTATION,
        "record": {"type": "JsonProperty", "json": serde_json::to_value(c).expect("a consultation serialises")},
        "title": prop(c.draft.title.clone()),
        "department": prop(c.draft.department.clone()),
        "opens": time(c.draft.opens),
        "closes": time(c.draft.closes),
        "opensSecs": prop(c.draft.opens.timestamp()),
        "closesSecs": prop(c.draft.closes.timestamp()),
        "concluded": prop(c.conclusion.is_some()),
        "comments": prop(c.comments),
    });
    if let Some(p) = &c.draft.policy {
        e["policy"] = prop(p.clone());
    }
    e
}

fn comment_entity(c: &Comment) -> Value {
    json!({
        "id": comment_entity_id(&c.consultation, c.seq),
        "type": COMMENT,
        "record": {"type": "JsonProperty", "json": serde_json::to_value(c).expect("a comment serialises")},
        "public": {"type": "JsonProperty", "json": serde_json::to_value(c.public()).expect("serialises")},
        "consultation": {"type": "Relationship", "object": consultation_entity_id(&c.consultation)},
        "author": {"type": "Relationship", "object": c.author},
        "seq": prop(c.seq),
        "section": prop(c.section.clone().unwrap_or_default()),
        "hidden": prop(c.hidden),
        "answered": prop(c.answer.is_some()),
        "at": time(c.at),
    })
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace(['"', '\\'], ""))
}

impl Appeals {
    async fn write(&self, items: &[Value]) -> Result<()> {
        let r = self
            .hub()
            .batch_write(self.tenant_name(), items, self.ctx(), BatchOp::Upsert { replace: true })
            .await?;
        match r.errors.into_iter().next() {
            Some(e) => Err(Error::Hub(e.error)),
            None => Ok(()),
        }
    }

    /// A page of `q`'s records (ordered by `order`), with the total.
    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        mut q: citybrain_ngsild::selector::EntityQuery,
        order: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<T>, usize)> {
        q.order = Some(citybrain_ngsild::order::OrderBy::parse(order, self.terms())?);
        let r = self
            .hub()
            .query_entities(
                self.tenant_name(),
                &q,
                citybrain_store::Page {
                    offset,
                    limit: limit.clamp(1, 1000),
                    count: true,
                },
            )
            .await?;
        let total = r.total.unwrap_or(r.entities.len());
        let list = r
            .entities
            .iter()
            .map(|e| read_json(e, self.terms(), "record"))
            .collect::<Result<Vec<T>>>()?;
        Ok((list, total))
    }

    /// Publishes a draft for comment under `id`.
    pub async fn publish(&self, id: &str, draft: Draft, by: &Actor) -> Result<Consultation> {
        let _g = self.lock(id).await;
        let c = Consultation::publish(id, draft, by, self.config(), self.now())?;
        if self.consultation(id).await?.is_some() {
            return Err(AppealsError::Conflict(format!("consultation {id} exists")).into());
        }
        self.write(&[consultation_entity(&c)]).await?;
        Ok(c)
    }

    /// Publishes the drafts shipped in `consultations/` that the hub does
    /// not hold yet (each opens now); returns how many.
    pub async fn publish_shipped(&self) -> Result<usize> {
        let system = Actor::system();
        let mut n = 0;
        for d in &self.config().drafts {
            if self.consultation(&d.id).await?.is_none() {
                self.publish(&d.id, d.draft(self.now()), &system).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    pub async fn consultation(&self, id: &str) -> Result<Option<Consultation>> {
        if !citybrain_appeals::consultation::valid_id(id) {
            return Ok(None);
        }
        match self
            .hub()
            .retrieve_entity(self.tenant_name(), &consultation_entity_id(id))
            .await
        {
            Ok(e) => Ok(Some(read_json(&e, self.terms(), "record")?)),
            Err(e) if e.kind == ErrorKind::ResourceNotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn must_consultation(&self, id: &str) -> Result<Consultation> {
        self.consultation(id)
            .await?
            .ok_or_else(|| AppealsError::NotFound(format!("no consultation {id}")).into())
    }

    /// Consultations at `stage` (any when None), of `department`, newest closing first.
    pub async fn consultations(
        &self,
        stage: Option<Stage>,
        department: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Consultation>, usize)> {
        let now = self.now().timestamp();
        let mut clauses = Vec::new();
        match stage {
            None => {}
            Some(Stage::Upcoming) => clauses.push(format!("opensSecs>{now};concluded==false")),
            Some(Stage::Open) => clauses.push(format!("opensSecs<={now};closesSecs>{now};concluded==false")),
            Some(Stage::Closed) => clauses.push(format!("closesSecs<={now};concluded==false")),
            Some(Stage::Concluded) => clauses.push("concluded==true".into()),
        }
        if let Some(d) = department {
            clauses.push(format!("department=={}", quote(d)));
        }
        self.page(self.query(CONSULTATION, &clauses)?, "closesSecs;desc", offset, limit)
            .await
    }

    /// A page of a consultation's comments in the order they came; the
    /// hidden ones only when `with_hidden` (for moderators).
    pub async fn comments(
        &self,
        id: &str,
        section: Option<&str>,
        with_hidden: bool,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Comment>, usize)> {
        let mut clauses = vec![format!("consultation=={}", quote(&consultation_entity_id(id)))];
        if !with_hidden {
            clauses.push("hidden==false".into());
        }
        if let Some(s) = section {
            clauses.push(format!("section=={}", quote(s)));
        }
        self.page(self.query(COMMENT, &clauses)?, "seq", offset, limit).await
    }

    async fn all_comments(&self, id: &str) -> Result<Vec<Comment>> {
        let mut out = Vec::new();
        loop {
            let (page, total) = self.comments(id, None, true, out.len(), 1000).await?;
            let done = page.is_empty();
            out.extend(page);
            if done || out.len() >= total {
                return Ok(out);
            }
        }
    }

    async fn comment_of(&self, id: &str, seq: u32) -> Result<Comment> {
        match self
            .hub()
            .retrieve_entity(self.tenant_name(), &comment_entity_id(id, seq))
            .await
        {
            Ok(e) => read_json(&e, self.terms(), "record"),
            Err(e) if e.kind == ErrorKind::ResourceNotFound => {
                Err(AppealsError::NotFound(format!("consultation {id} has no comment {seq}")).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A signed-in member of the public comments on the draft (or one section of it).
    pub async fn comment(&self, id: &str, section: Option<&str>, text: &str, by: &Actor) -> Result<Comment> {
        let _g = self.lock(id).await;
        let mut c = self.must_consultation(id).await?;
        let mine = match &by.subject {
            Some(s) => {
                let q = self.query(
                    COMMENT,
                    &[
                        format!("consultation=={}", quote(&consultation_entity_id(id))),
                        format!("author=={}", quote(s)),
                    ],
                )?;
                let r = self
                    .hub()
                    .query_entities(
                        self.tenant_name(),
                        &q,
                        citybrain_store::Page {
                            offset: 0,
                            limit: 1,
                            count: true,
                        },
                    )
                    .await?;
                r.total.unwrap_or(0) as u32
            }
            None => 0,
        };
        let comment = c.comment(by, section, text, mine, self.config(), self.now())?;
        // The comment and the consultation's count in one batch.
        self.write(&[consultation_entity(&c), comment_entity(&comment)]).await?;
        Ok(comment)
    }

    /// Answers, supports, reports or moderates comment `seq` of consultation `id`.
    pub async fn comment_action(&self, id: &str, seq: u32, action: CommentAction, by: &Actor) -> Result<Comment> {
        let _g = self.lock(id).await;
        let c = self.must_consultation(id).await?;
        let mut comment = self.comment_of(id, seq).await?;
        let now = self.now();
        let changed = match action {
            CommentAction::Answer { text, adoption } => {
                comment.answer(by, &c, &text, adoption, self.config(), now)?;
                true
            }
            CommentAction::Support => comment.support(by, &c, now)?,
            CommentAction::Report => comment.report(by, self.config())?,
            CommentAction::Moderate { hide, reason } => {
                comment.moderate(by, hide, &reason)?;
                true
            }
        };
        if changed {
            self.write(&[comment_entity(&comment)]).await?;
        }
        Ok(comment)
    }

    /// Concludes a closed consultation with what changed, once every visible comment has its answer.
    pub async fn conclude(&self, id: &str, outcome: &str, by: &Actor) -> Result<Consultation> {
        let _g = self.lock(id).await;
        let mut c = self.must_consultation(id).await?;
        if !c.may_answer(by, self.config()) && by.kind != ActorKind::Administrator {
            return Err(AppealsError::Forbidden(format!(
                "only {} (or a department above it) may conclude this consultation",
                c.draft.department
            ))
            .into());
        }
        let tally = Tally::count(&self.all_comments(id).await?);
        c.conclude(by, outcome, tally, self.config(), self.now())?;
        self.write(&[consultation_entity(&c)]).await?;
        Ok(c)
    }

    /// The figures of a consultation so far.
    pub async fn tally(&self, id: &str) -> Result<Tally> {
        Ok(Tally::count(&self.all_comments(id).await?))
    }
}
