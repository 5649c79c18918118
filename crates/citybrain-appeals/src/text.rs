//! The appeals' text index (tantivy, jieba tokenisation, in memory).
//!
//! One index holds a document per category (its name, description and
//! keywords) and one per appeal. It answers two questions:
//!
//! - **classification**: an appeal filed without a category is scored
//!   (BM25) against every document; the ten best vote for their category
//!   with their scores, and the winner's share of the votes is the
//!   confidence. A sample of the appeals whose category a person chose
//!   teaches it the words people really use.
//! - **similar appeals** (duplicates): open appeals of the same category in
//!   the grid cells around the location (term postings, no word scoring),
//!   kept where the distance and the token overlap are within the
//!   configured limits.
//!
//! The index is rebuilt from the hub when a server starts.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, INDEXED, STORED, STRING,
};
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, TextAnalyzer, TokenStream};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::config::AppealsConfig;
use crate::AppealsError;

const TOKENIZER: &str = "jieba_lower";
/// The most appeals one duplicate search looks at (a street's worth).
const MAX_CANDIDATES: usize = 20_000;

type Columns = (
    tantivy::columnar::Column<f64>,
    tantivy::columnar::Column<f64>,
    tantivy::columnar::Column<i64>,
);
/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_320.0;

fn index_err(e: impl std::fmt::Display) -> AppealsError {
    AppealsError::Index(e.to_string())
}

/// The classifier's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub category: String,
    /// The winner's share of the ten best matches' scores (0–1).
    pub confidence: f64,
}

/// An appeal as the index sees it.
#[derive(Debug, Clone)]
pub struct Indexed<'a> {
    pub id: &'a str,
    pub category: &'a str,
    pub text: &'a str,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub open: bool,
    /// Unix seconds.
    pub filed: i64,
    /// Whether the classifier learns from it (a category a person chose;
    /// see [`teaches`]).
    pub teach: bool,
}

/// One appeal in this many, of those whose category a person chose,
/// teaches the classifier: enough to learn the words people use, while the
/// neighbours it ranks stay a bounded share of the index.
pub const TEACH_ONE_IN: u64 = 20;

/// Whether an appeal with this id is in the classifier's sample (stable: the
/// same after a restart).
pub fn teaches(id: &str) -> bool {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h % TEACH_ONE_IN == 0
}

/// A similar appeal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Similar {
    pub id: String,
    pub distance_m: f64,
    /// Token overlap (Jaccard) of the two texts, 0–1.
    pub similarity: f64,
}

/// What to look for similar appeals around.
#[derive(Debug, Clone)]
pub struct Around<'a> {
    pub text: &'a str,
    pub category: &'a str,
    pub lat: f64,
    pub lon: f64,
    pub radius_m: f64,
    /// Unix seconds: only appeals filed since.
    pub since: i64,
    pub min_similarity: f64,
    /// Leave this appeal out (the one being filed).
    pub except: Option<&'a str>,
}

struct Fields {
    kind: Field,
    id: Field,
    category: Field,
    text: Field,
    lat: Field,
    lon: Field,
    open: Field,
    filed: Field,
    /// The grid cell of the location (`x:y`), for searches by place.
    cell: Field,
    /// The text's words, space-separated (stored: the overlap is computed
    /// without tokenising again).
    tokens: Field,
    /// "1": the classifier ranks it (categories and a sample of appeals).
    teach: Field,
}

/// An appeal put since the last commit: searched by a scan until then.
struct Pending {
    category: String,
    tokens: BTreeSet<String>,
    at: Option<(f64, f64)>,
    open: bool,
    filed: i64,
}

/// Degrees per side of the buffer's grid cells (about 220 m of latitude).
const CELL: f64 = 0.002;

fn cell(lat: f64, lon: f64) -> (i32, i32) {
    ((lat / CELL).floor() as i32, (lon / CELL).floor() as i32)
}

/// The uncommitted appeals, by id and by grid cell (a search looks at the
/// cells around its point only).
#[derive(Default)]
struct Buffer {
    by_id: HashMap<String, Pending>,
    cells: HashMap<(i32, i32), Vec<String>>,
}

impl Buffer {
    fn insert(&mut self, id: String, p: Pending) {
        if let Some((lat, lon)) = p.at {
            self.cells.entry(cell(lat, lon)).or_default().push(id.clone());
        }
        self.by_id.insert(id, p);
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn clear(&mut self) {
        self.by_id.clear();
        self.cells.clear();
    }

    fn contains_key(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// The ids in the cells a box touches (each once).
    fn near(&self, lat0: f64, lat1: f64, lon0: f64, lon1: f64) -> BTreeSet<&str> {
        let (a, b) = (cell(lat0, lon0), cell(lat1, lon1));
        let mut out = BTreeSet::new();
        for x in a.0..=b.0 {
            for y in a.1..=b.1 {
                if let Some(ids) = self.cells.get(&(x, y)) {
                    out.extend(ids.iter().map(String::as_str));
                }
            }
        }
        out
    }
}

pub struct TextIndex {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    /// Put but not committed yet, by id: what a search must see besides
    /// the committed segments (and in place of their older versions).
    pending: Mutex<Buffer>,
    last_commit: Mutex<std::time::Instant>,
    f: Fields,
}

/// Great-circle distance in metres (haversine, mean Earth radius).
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().asin()
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(tantivy_jieba::JiebaTokenizer::new())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .build()
}

impl TextIndex {
    /// An index holding the categories of `config`.
    pub fn new(config: &AppealsConfig) -> Result<TextIndex, AppealsError> {
        let mut sb = Schema::builder();
        let text_opts = TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(TOKENIZER)
                    .set_index_option(IndexRecordOption::WithFreqs),
            )
            .set_stored();
        let f = Fields {
            kind: sb.add_text_field("kind", STRING),
            id: sb.add_text_field("id", STRING | STORED),
            category: sb.add_text_field("category", STRING | STORED),
            text: sb.add_text_field("text", text_opts),
            lat: sb.add_f64_field("lat", FAST | STORED),
            lon: sb.add_f64_field("lon", FAST | STORED),
            open: sb.add_u64_field("open", INDEXED),
            filed: sb.add_i64_field("filed", FAST | STORED),
            cell: sb.add_text_field("cell", STRING),
            tokens: sb.add_text_field("tokens", STORED),
            teach: sb.add_text_field("teach", STRING),
        };
        let index = Index::create_in_ram(sb.build());
        index.tokenizers().register(TOKENIZER, analyzer());
        let writer = index.writer_with_num_threads(1, 32 << 20).map_err(index_err)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_err)?;
        let t = TextIndex {
            reader,
            writer: Mutex::new(writer),
            pending: Mutex::new(Buffer::default()),
            last_commit: Mutex::new(std::time::Instant::now()),
            f,
        };
        {
            let w = t.writer.lock().expect("the writer lock");
            for c in &config.categories {
                let mut doc = TantivyDocument::default();
                doc.add_text(t.f.kind, "category");
                doc.add_text(t.f.id, format!("category:{}", c.code));
                doc.add_text(t.f.category, &c.code);
                doc.add_text(t.f.teach, "1");
                doc.add_text(
                    t.f.text,
                    format!("{} {} {} {}", c.name, c.group, c.description, c.keywords.join(" ")),
                );
                w.add_document(doc).map_err(index_err)?;
            }
        }
        t.commit()?;
        Ok(t)
    }

    /// The words of a text as the index counts them (no punctuation or spaces).
    pub fn tokens(&self, text: &str) -> Vec<String> {
        let mut a = analyzer();
        let mut s = a.token_stream(text);
        let mut out = Vec::new();
        while let Some(t) = s.next() {
            if t.text.chars().any(char::is_alphanumeric) {
                out.push(t.text.clone());
            }
        }
        out
    }

    fn words_query(&self, text: &str) -> Option<Box<dyn Query>> {
        let words: BTreeSet<String> = self.tokens(text).into_iter().collect();
        if words.is_empty() {
            return None;
        }
        Some(Box::new(BooleanQuery::new(
            words
                .into_iter()
                .map(|w| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(self.f.text, &w),
                        IndexRecordOption::WithFreqs,
                    ));
                    (Occur::Should, q)
                })
                .collect(),
        )))
    }

    /// Adds or replaces an appeal. Searches see it at once (from a buffer
    /// scanned until the next commit, as a near-real-time engine would).
    pub fn put(&self, a: &Indexed) -> Result<(), AppealsError> {
        let tokens = self.tokens(a.text);
        // The buffer's lock is held across the write, so a commit never
        // clears an entry whose document it did not write.
        let mut pending = self.pending.lock().expect("the pending lock");
        pending.insert(
            a.id.to_string(),
            Pending {
                category: a.category.to_string(),
                tokens: tokens.iter().cloned().collect(),
                at: a.lat.zip(a.lon),
                open: a.open,
                filed: a.filed,
            },
        );
        let w = self.writer.lock().expect("the writer lock");
        w.delete_term(Term::from_field_text(self.f.id, a.id));
        let mut doc = TantivyDocument::default();
        doc.add_text(self.f.kind, "appeal");
        doc.add_text(self.f.id, a.id);
        doc.add_text(self.f.category, a.category);
        doc.add_text(self.f.text, a.text);
        doc.add_text(self.f.tokens, tokens.join(" "));
        if a.teach {
            doc.add_text(self.f.teach, "1");
        }
        if let (Some(lat), Some(lon)) = (a.lat, a.lon) {
            doc.add_f64(self.f.lat, lat);
            doc.add_f64(self.f.lon, lon);
            let (x, y) = cell(lat, lon);
            doc.add_text(self.f.cell, format!("{x}:{y}"));
        }
        doc.add_u64(self.f.open, u64::from(a.open));
        doc.add_i64(self.f.filed, a.filed);
        w.add_document(doc).map_err(index_err)?;
        Ok(())
    }

    /// Commits when enough was put or enough time went by since the last
    /// commit (a commit writes a segment: too costly for every appeal).
    pub fn commit_soon(&self, every: usize, after: std::time::Duration) -> Result<bool, AppealsError> {
        let n = self.pending.lock().expect("the pending lock").len();
        let due = n > 0 && (n >= every || self.last_commit.lock().expect("the lock").elapsed() >= after);
        if due {
            self.commit()?;
        }
        Ok(due)
    }

    /// Writes what was put into the index's segments.
    pub fn commit(&self) -> Result<(), AppealsError> {
        let mut pending = self.pending.lock().expect("the pending lock");
        *self.last_commit.lock().expect("the lock") = std::time::Instant::now();
        self.writer
            .lock()
            .expect("the writer lock")
            .commit()
            .map_err(index_err)?;
        self.reader.reload().map_err(index_err)?;
        pending.clear();
        Ok(())
    }

    /// The category the text most likely belongs to.
    pub fn classify(&self, text: &str) -> Result<Option<Classification>, AppealsError> {
        let Some(words) = self.words_query(text) else {
            return Ok(None);
        };
        let q = BooleanQuery::new(vec![
            (Occur::Must, words),
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.f.teach, "1"),
                    IndexRecordOption::Basic,
                )),
            ),
        ]);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&q, &TopDocs::with_limit(10).order_by_score())
            .map_err(index_err)?;
        let mut votes: HashMap<String, f64> = HashMap::new();
        let mut total = 0.0;
        for (score, at) in top {
            let doc: TantivyDocument = searcher.doc(at).map_err(index_err)?;
            if let Some(c) = doc.get_first(self.f.category).and_then(|v| v.as_str()) {
                *votes.entry(c.to_string()).or_default() += f64::from(score);
                total += f64::from(score);
            }
        }
        let best = votes
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
        Ok(best.map(|(category, s)| Classification {
            category,
            confidence: if total > 0.0 { s / total } else { 0.0 },
        }))
    }

    /// Open appeals like this one nearby, most similar first.
    pub fn similar(&self, around: &Around) -> Result<Vec<Similar>, AppealsError> {
        let mine: BTreeSet<String> = self.tokens(around.text).into_iter().collect();
        if mine.is_empty() {
            return Ok(Vec::new());
        }
        let dlat = around.radius_m / M_PER_DEG;
        let dlon = around.radius_m / (M_PER_DEG * around.lat.to_radians().cos().max(0.01));
        // The grid cells the search box touches, as terms: posting lists,
        // not a scan of every document's coordinates.
        let (c0, c1) = (
            cell(around.lat - dlat, around.lon - dlon),
            cell(around.lat + dlat, around.lon + dlon),
        );
        let mut cells: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for x in c0.0..=c1.0 {
            for y in c0.1..=c1.1 {
                cells.push((
                    Occur::Should,
                    Box::new(TermQuery::new(
                        Term::from_field_text(self.f.cell, &format!("{x}:{y}")),
                        IndexRecordOption::Basic,
                    )),
                ));
            }
        }
        let term = |f: Field, v: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(Term::from_field_text(f, v), IndexRecordOption::Basic))
        };
        let q = BooleanQuery::new(vec![
            (Occur::Must, term(self.f.kind, "appeal")),
            (Occur::Must, term(self.f.category, around.category)),
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(self.f.open, 1),
                    IndexRecordOption::Basic,
                )),
            ),
            (Occur::Must, Box::new(BooleanQuery::new(cells))),
        ]);
        // The searcher and the buffer must be of one moment: hold the
        // buffer while searching (a commit clears it after reloading).
        let pending = self.pending.lock().expect("the pending lock");
        let searcher = self.reader.searcher();
        // Every open appeal of the category in the cells: term postings only
        // (no scoring of common words); coordinates and dates from the
        // columns, the stored words only for those close enough.
        let mut found: Vec<tantivy::DocAddress> = searcher
            .search(&q, &tantivy::collector::DocSetCollector)
            .map_err(index_err)?
            .into_iter()
            .collect();
        found.sort_unstable();
        found.truncate(MAX_CANDIDATES);
        let mut out = Vec::new();
        let mut columns: HashMap<u32, Option<Columns>> = HashMap::new();
        for at in found {
            let cols = columns.entry(at.segment_ord).or_insert_with(|| {
                let ff = searcher.segment_reader(at.segment_ord).fast_fields();
                Some((ff.f64("lat").ok()?, ff.f64("lon").ok()?, ff.i64("filed").ok()?))
            });
            let Some((lat_c, lon_c, filed_c)) = cols else { continue };
            let (Some(lat), Some(lon), Some(filed)) =
                (lat_c.first(at.doc_id), lon_c.first(at.doc_id), filed_c.first(at.doc_id))
            else {
                continue;
            };
            if filed < around.since || distance_m(around.lat, around.lon, lat, lon) > around.radius_m {
                continue;
            }
            let doc: TantivyDocument = searcher.doc(at).map_err(index_err)?;
            let (Some(id), Some(words)) = (
                doc.get_first(self.f.id).and_then(|v| v.as_str()),
                doc.get_first(self.f.tokens).and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            if Some(id) == around.except || pending.contains_key(id) {
                continue;
            }
            let theirs: BTreeSet<String> = words.split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect();
            self.keep_if_similar(&mut out, around, &mine, id, lat, lon, &theirs);
        }
        for id in pending.near(
            around.lat - dlat,
            around.lat + dlat,
            around.lon - dlon,
            around.lon + dlon,
        ) {
            let Some(p) = pending.by_id.get(id) else { continue };
            let Some((lat, lon)) = p.at else { continue };
            if Some(id) == around.except || !p.open || p.category != around.category || p.filed < around.since {
                continue;
            }
            self.keep_if_similar(&mut out, around, &mine, id, lat, lon, &p.tokens);
        }
        out.sort_by(|a, b| {
            b.similarity
                .total_cmp(&a.similarity)
                .then(a.distance_m.total_cmp(&b.distance_m))
        });
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn keep_if_similar(
        &self,
        out: &mut Vec<Similar>,
        around: &Around,
        mine: &BTreeSet<String>,
        id: &str,
        lat: f64,
        lon: f64,
        theirs: &BTreeSet<String>,
    ) {
        let distance = distance_m(around.lat, around.lon, lat, lon);
        if distance > around.radius_m {
            return;
        }
        let union = mine.union(theirs).count();
        let similarity = if union == 0 {
            0.0
        } else {
            mine.intersection(theirs).count() as f64 / union as f64
        };
        if similarity >= around.min_similarity {
            out.push(Similar {
                id: id.to_string(),
                distance_m: (distance * 10.0).round() / 10.0,
                similarity: (similarity * 1000.0).round() / 1000.0,
            });
        }
    }

    /// Appeals in the index (categories not counted).
    pub fn appeals(&self) -> u64 {
        let q = TermQuery::new(Term::from_field_text(self.f.kind, "appeal"), IndexRecordOption::Basic);
        self.reader
            .searcher()
            .search(&q, &tantivy::collector::Count)
            .map(|n| n as u64)
            .unwrap_or(0)
    }
}
