//! Batch matching: a policy decided for every row of a table at once,
//! column by column over the checked clause trees, in chunks run in
//! parallel. It follows CEL's rules exactly where they matter (an error in
//! one side of `&&`/`||` is absorbed by a false/true on the other; integer
//! overflow and division by zero are errors), and the tests hold it to the
//! same results as [`crate::Policy::decide`].

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use rayon::prelude::*;

use crate::check::{Arith, Cmp, DateFn, Expr, Kind, Quantifier, Slot};
use crate::policy::{Input, Policy};
use crate::types::{Ty, Value};

/// Rows per chunk, at most: a chunk's columns stay in cache between operations.
const CHUNK: usize = 1 << 15;
/// Rows per chunk, at least: below this a chunk's fixed cost shows.
const MIN_CHUNK: usize = 1 << 10;

/// A shared, immutable run of values: a column or a chunk's view of one
/// (slicing a table into chunks copies nothing).
#[derive(Debug, Clone)]
pub struct Buf<T> {
    data: Arc<Vec<T>>,
    start: usize,
    end: usize,
}

impl<T> From<Vec<T>> for Buf<T> {
    fn from(v: Vec<T>) -> Self {
        let end = v.len();
        Buf {
            data: Arc::new(v),
            start: 0,
            end,
        }
    }
}

impl<T> FromIterator<T> for Buf<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        buf(iter.into_iter().collect::<Vec<T>>())
    }
}

/// A column's values from a vector.
pub fn buf<T>(v: Vec<T>) -> Buf<T> {
    Buf::from(v)
}

impl<T> std::ops::Deref for Buf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.data[self.start..self.end]
    }
}

impl<T> Buf<T> {
    fn view(&self, from: usize, to: usize) -> Buf<T> {
        Buf {
            data: self.data.clone(),
            start: self.start + from,
            end: self.start + to,
        }
    }
}

/// One column of a table.
#[derive(Debug, Clone)]
pub enum Column {
    Bool(Buf<bool>),
    Int(Buf<i64>),
    Double(Buf<f64>),
    /// Days since 1970-01-01.
    Date(Buf<i32>),
    /// Dictionary-coded strings.
    Str(Arc<Vec<Arc<str>>>, Buf<u32>),
    /// Lists: row `i` holds `values[offsets[i]..offsets[i + 1]]`.
    List(Buf<u32>, Box<Column>),
    /// Records: one column per field, in the record type's order.
    Record(Arc<Vec<Column>>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Bool(v) => v.len(),
            Column::Int(v) => v.len(),
            Column::Double(v) => v.len(),
            Column::Date(v) => v.len(),
            Column::Str(_, c) => c.len(),
            Column::List(o, _) => o.len().saturating_sub(1),
            Column::Record(f) => f.first().map_or(0, Column::len),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Strings, dictionary-coded.
    pub fn strings<S: AsRef<str>>(values: &[S]) -> Column {
        let mut dict: Vec<Arc<str>> = Vec::new();
        let mut index: HashMap<&str, u32> = HashMap::new();
        let mut codes = Vec::with_capacity(values.len());
        for v in values {
            let s = v.as_ref();
            let code = *index.entry(s).or_insert_with(|| {
                dict.push(s.into());
                (dict.len() - 1) as u32
            });
            codes.push(code);
        }
        Column::Str(Arc::new(dict), codes.into())
    }

    /// Dates as days since 1970-01-01.
    pub fn dates(values: &[NaiveDate]) -> Column {
        Column::Date(buf(values.iter().map(|d| days(*d)).collect()))
    }

    fn slice(&self, from: usize, to: usize) -> Column {
        match self {
            Column::Bool(v) => Column::Bool(v.view(from, to)),
            Column::Int(v) => Column::Int(v.view(from, to)),
            Column::Double(v) => Column::Double(v.view(from, to)),
            Column::Date(v) => Column::Date(v.view(from, to)),
            Column::Str(d, c) => Column::Str(d.clone(), c.view(from, to)),
            Column::List(o, values) => {
                let (a, b) = (o[from] as usize, o[to] as usize);
                let base = o[from];
                Column::List(
                    o[from..=to].iter().map(|x| x - base).collect(),
                    Box::new(values.slice(a, b)),
                )
            }
            Column::Record(f) => Column::Record(Arc::new(f.iter().map(|c| c.slice(from, to)).collect())),
        }
    }

    /// Lists' offsets start at 0, never decrease and end at their values'
    /// length; records' fields have one length; dictionary codes exist.
    fn check(&self) -> Result<(), String> {
        match self {
            Column::List(off, values) => {
                if off.first() != Some(&0) || off.windows(2).any(|w| w[1] < w[0]) {
                    return Err("list offsets must start at 0 and never decrease".into());
                }
                if *off.last().unwrap_or(&0) as usize != values.len() {
                    return Err(format!(
                        "list offsets end at {}, the values are {}",
                        off.last().unwrap_or(&0),
                        values.len()
                    ));
                }
                values.check()
            }
            Column::Record(fields) => {
                let n = fields.first().map_or(0, Column::len);
                if fields.iter().any(|f| f.len() != n) {
                    return Err("record fields of different lengths".into());
                }
                fields.iter().try_for_each(Column::check)
            }
            Column::Str(dict, codes) => match codes.iter().find(|c| **c as usize >= dict.len()) {
                Some(c) => Err(format!("string code {c} is not in the dictionary of {}", dict.len())),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn conforms(&self, ty: &Ty) -> bool {
        match (self, ty) {
            (Column::Bool(_), Ty::Bool)
            | (Column::Int(_), Ty::Int)
            | (Column::Double(_), Ty::Double)
            | (Column::Date(_), Ty::Date)
            | (Column::Str(..), Ty::String) => true,
            (Column::List(_, v), Ty::List(inner)) => v.conforms(inner),
            (Column::Record(cols), Ty::Record(fields)) => {
                cols.len() == fields.len() && cols.iter().zip(fields.iter()).all(|(c, (_, t))| c.conforms(t))
            }
            _ => false,
        }
    }
}

/// The subjects of a batch: one column per input name, shared by every
/// policy that reads an input of that name.
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: usize,
    columns: HashMap<String, Column>,
    /// Per column, the rows where the hub holds no value.
    absent: HashMap<String, Arc<Vec<bool>>>,
}

impl Table {
    pub fn new(rows: usize) -> Table {
        Table {
            rows,
            ..Table::default()
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds a column; it must have a value for every row.
    pub fn with(mut self, name: &str, column: Column) -> Result<Table, crate::RulesError> {
        if column.len() != self.rows {
            return Err(crate::RulesError::Table(format!(
                "column '{name}' has {} rows, the table {}",
                column.len(),
                self.rows
            )));
        }
        column
            .check()
            .map_err(|e| crate::RulesError::Table(format!("column '{name}': {e}")))?;
        self.columns.insert(name.to_string(), column);
        Ok(self)
    }

    /// Marks the rows of `name` where the value is unknown (the column holds
    /// a placeholder there): the input's default applies, or the row is
    /// incomplete.
    pub fn with_absent(mut self, name: &str, absent: Vec<bool>) -> Result<Table, crate::RulesError> {
        if absent.len() != self.rows {
            return Err(crate::RulesError::Table(format!(
                "the absent rows of '{name}' are {} flags, the table has {} rows",
                absent.len(),
                self.rows
            )));
        }
        self.absent.insert(name.to_string(), Arc::new(absent));
        Ok(self)
    }

    fn slice(&self, from: usize, to: usize) -> Table {
        Table {
            rows: to - from,
            columns: self
                .columns
                .iter()
                .map(|(k, c)| (k.clone(), c.slice(from, to)))
                .collect(),
            absent: self
                .absent
                .iter()
                .map(|(k, a)| (k.clone(), Arc::new(a[from..to].to_vec())))
                .collect(),
        }
    }
}

/// A chunk's rows of a [`BatchResult`], written in place.
struct ChunkOut<'a> {
    eligible: &'a mut [bool],
    amount: &'a mut [f64],
    error: &'a mut [bool],
    incomplete: &'a mut [bool],
}

/// Per row of a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchResult {
    pub eligible: Vec<bool>,
    /// The amount where eligible, else 0.
    pub amount: Vec<f64>,
    /// A clause failed for the row.
    pub error: Vec<bool>,
    /// An input without a default was unknown for the row.
    pub incomplete: Vec<bool>,
    /// Whether the policy was in force on the date (if not, no row is eligible).
    pub in_force: bool,
}

impl BatchResult {
    pub fn eligible_count(&self) -> usize {
        self.eligible.iter().filter(|e| **e).count()
    }

    pub fn total_amount(&self) -> f64 {
        self.amount.iter().sum()
    }

    /// Row `i`'s outcome, as a decision would name it.
    pub fn outcome(&self, i: usize) -> crate::Outcome {
        use crate::Outcome;
        if !self.in_force {
            Outcome::NotInForce
        } else if self.incomplete[i] {
            Outcome::Incomplete
        } else if self.error[i] {
            Outcome::Error
        } else if self.eligible[i] {
            Outcome::Eligible
        } else {
            Outcome::NotEligible
        }
    }
}

impl Policy {
    /// Decides every row of `table` for the date `on`.
    pub fn decide_batch(&self, table: &Table, on: NaiveDate) -> Result<BatchResult, crate::RulesError> {
        for input in &self.inputs {
            match table.columns.get(&input.name) {
                Some(c) if c.conforms(&input.ty) => {}
                Some(_) => {
                    return Err(crate::RulesError::Table(format!(
                        "column '{}' is not a {} as {} declares",
                        input.name, input.ty, self.id
                    )))
                }
                None if input.default.is_some() => {}
                None => {
                    return Err(crate::RulesError::Table(format!(
                        "the table has no column '{}' that {} needs",
                        input.name, self.id
                    )))
                }
            }
        }
        if !self.in_force(on) {
            return Ok(BatchResult {
                eligible: vec![false; table.rows],
                amount: vec![0.0; table.rows],
                error: vec![false; table.rows],
                incomplete: vec![false; table.rows],
                in_force: false,
            });
        }
        // A few chunks per thread, so that the threads finish together.
        let chunk = (table.rows / (4 * rayon::current_num_threads()).max(1)).clamp(MIN_CHUNK, CHUNK);
        let chunks: Vec<(usize, usize)> = (0..table.rows)
            .step_by(chunk)
            .map(|a| (a, (a + chunk).min(table.rows)))
            .collect();
        // Every chunk writes its rows of the result in place.
        let mut out = BatchResult {
            eligible: vec![false; table.rows],
            amount: vec![0.0; table.rows],
            error: vec![false; table.rows],
            incomplete: vec![false; table.rows],
            in_force: true,
        };
        let parts: Vec<(&(usize, usize), ChunkOut)> = chunks
            .iter()
            .zip(out.eligible.chunks_mut(chunk))
            .zip(out.amount.chunks_mut(chunk))
            .zip(out.error.chunks_mut(chunk))
            .zip(out.incomplete.chunks_mut(chunk))
            .map(|((((c, eligible), amount), error), incomplete)| {
                (
                    c,
                    ChunkOut {
                        eligible,
                        amount,
                        error,
                        incomplete,
                    },
                )
            })
            .collect();
        parts.into_par_iter().for_each(|(&(a, b), part_out)| {
            let part = if a == 0 && b == table.rows {
                table.clone()
            } else {
                table.slice(a, b)
            };
            self.decide_chunk(&part, on, part_out);
        });
        Ok(out)
    }

    fn decide_chunk(&self, table: &Table, on: NaiveDate, result: ChunkOut) {
        let n = table.rows;
        let inputs: Vec<Out> = self
            .inputs
            .iter()
            .map(|i| input_column(i, table, result.incomplete))
            .collect();
        let params: Vec<Value> = self
            .parameters
            .iter()
            .map(|p| p.in_force(on).expect("in force").value.clone())
            .collect();
        let rows = RowsCache::default();
        let mut frame = Frame {
            len: n,
            inputs: &inputs,
            params: &params,
            clauses: Vec::new(),
            today: Value::Date(on),
            locals: Vec::new(),
            parent: None,
            rows: &rows,
        };
        for clause in &self.clauses {
            let out = frame.eval(&clause.in_force(on).expect("in force").expr);
            frame.clauses.push(out);
        }
        let eligible = frame.eval(&self.eligible.in_force(on).expect("in force").expr);
        let amount = self
            .amount
            .as_ref()
            .map(|a| frame.eval(&a.in_force(on).expect("in force").expr));
        // The common case: nothing failed, a bool per row and a number per row (or one for all).
        if let (None, Some(Src::Many(e))) = (&eligible.err, eligible.v.bools()) {
            let amounts = match &amount {
                None => Some(Src::One(0.0)),
                Some(a) if a.err.is_none() => a.v.floats(),
                Some(_) => None,
            };
            if let Some(amounts) = amounts {
                // Selects, not branches: these loops vectorise.
                let e = &e[..n];
                let incomplete = &result.incomplete[..n];
                for ((out, yes), inc) in result.eligible.iter_mut().zip(e).zip(incomplete) {
                    *out = *yes & !*inc;
                }
                if amount.is_some() {
                    let eligible = &result.eligible[..n];
                    match amounts {
                        Src::Many(a) => {
                            for ((out, yes), a) in result.amount.iter_mut().zip(eligible).zip(&a[..n]) {
                                *out = if *yes { *a } else { 0.0 };
                            }
                        }
                        Src::One(a) => {
                            for (out, yes) in result.amount.iter_mut().zip(eligible) {
                                *out = if *yes { a } else { 0.0 };
                            }
                        }
                    }
                }
                return;
            }
        }
        for i in 0..n {
            if result.incomplete[i] {
                continue;
            }
            if eligible.err(i) {
                result.error[i] = true;
                continue;
            }
            if !eligible.v.bool(i) {
                continue;
            }
            match &amount {
                Some(a) if a.err(i) => result.error[i] = true,
                Some(a) => {
                    result.eligible[i] = true;
                    result.amount[i] = a.v.num(i);
                }
                None => result.eligible[i] = true,
            }
        }
    }
}

/// The column an input reads, with its default filled in where the hub has
/// no value; rows with neither are marked incomplete.
fn input_column(input: &Input, table: &Table, incomplete: &mut [bool]) -> Out {
    let n = table.rows;
    let Some(col) = table.columns.get(&input.name) else {
        let d = input.default.clone().expect("checked: a missing column has a default");
        return Out::ok(V::Const(d));
    };
    // (Fields of related entities have defaults of their own, which the
    // gatherer fills: a list column is complete here.)
    let mut col = col.clone();
    if let Some(absent) = table.absent.get(&input.name) {
        match &input.default {
            Some(d) => col = fill(&col, absent, d),
            None => {
                for (i, a) in absent.iter().enumerate().take(n) {
                    incomplete[i] |= *a;
                }
            }
        }
    }
    Out::ok(V::Col(col))
}

fn fill(col: &Column, absent: &[bool], d: &Value) -> Column {
    let pick = |i: usize| absent[i];
    match (col, d) {
        (Column::Bool(v), Value::Bool(x)) => Column::Bool(buf(v
            .iter()
            .enumerate()
            .map(|(i, b)| if pick(i) { *x } else { *b })
            .collect())),
        (Column::Int(v), Value::Int(x)) => Column::Int(buf(v
            .iter()
            .enumerate()
            .map(|(i, b)| if pick(i) { *x } else { *b })
            .collect())),
        (Column::Double(v), Value::Double(x)) => Column::Double(buf(v
            .iter()
            .enumerate()
            .map(|(i, b)| if pick(i) { *x } else { *b })
            .collect())),
        (Column::Date(v), Value::Date(x)) => {
            let x = days(*x);
            Column::Date(buf(v
                .iter()
                .enumerate()
                .map(|(i, b)| if pick(i) { x } else { *b })
                .collect()))
        }
        (Column::Str(dict, codes), Value::String(s)) => {
            let mut dict = (**dict).clone();
            let code = dict.iter().position(|d| d == s).unwrap_or_else(|| {
                dict.push(s.clone());
                dict.len() - 1
            }) as u32;
            Column::Str(
                Arc::new(dict),
                codes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| if pick(i) { code } else { *c })
                    .collect(),
            )
        }
        (Column::List(o, values), Value::List(items)) => {
            // Rebuild row by row: absent rows get the default list.
            let mut offsets = vec![0u32];
            let mut take: Vec<Option<usize>> = Vec::new();
            for i in 0..o.len() - 1 {
                if pick(i) {
                    take.extend(std::iter::repeat_n(None, items.len()));
                } else {
                    take.extend((o[i] as usize..o[i + 1] as usize).map(Some));
                }
                offsets.push(take.len() as u32);
            }
            Column::List(buf(offsets), Box::new(gather_or(values, &take, items)))
        }
        _ => col.clone(),
    }
}

/// Elements of `values` by index, or (for `None`) the default list's items
/// in turn.
fn gather_or(values: &Column, take: &[Option<usize>], items: &[Value]) -> Column {
    let mut k = 0;
    let mut next_default = || {
        let v = items[k % items.len().max(1)].clone();
        k += 1;
        v
    };
    let idx: Vec<Result<usize, Value>> = take.iter().map(|t| t.ok_or_else(&mut next_default)).collect();
    materialize_mixed(values, &idx)
}

fn materialize_mixed(values: &Column, idx: &[Result<usize, Value>]) -> Column {
    match values {
        Column::Bool(v) => Column::Bool(buf(idx
            .iter()
            .map(|i| match i {
                Ok(i) => v[*i],
                Err(d) => d.as_bool(),
            })
            .collect())),
        Column::Int(v) => Column::Int(buf(idx
            .iter()
            .map(|i| match i {
                Ok(i) => v[*i],
                Err(d) => d.as_int(),
            })
            .collect())),
        Column::Double(v) => Column::Double(buf(idx
            .iter()
            .map(|i| match i {
                Ok(i) => v[*i],
                Err(d) => d.as_double(),
            })
            .collect())),
        Column::Date(v) => Column::Date(buf(idx
            .iter()
            .map(|i| match i {
                Ok(i) => v[*i],
                Err(d) => days(d.as_date()),
            })
            .collect())),
        Column::Str(dict, codes) => {
            let strings: Vec<Arc<str>> = idx
                .iter()
                .map(|i| match i {
                    Ok(i) => dict[codes[*i] as usize].clone(),
                    Err(Value::String(s)) => s.clone(),
                    Err(_) => "".into(),
                })
                .collect();
            Column::strings(&strings)
        }
        other => other.clone(),
    }
}

impl Value {
    fn as_bool(&self) -> bool {
        matches!(self, Value::Bool(true))
    }
    fn as_int(&self) -> i64 {
        if let Value::Int(i) = self {
            *i
        } else {
            0
        }
    }
    fn as_double(&self) -> f64 {
        match self {
            Value::Double(d) => *d,
            Value::Int(i) => *i as f64,
            _ => 0.0,
        }
    }
    fn as_date(&self) -> NaiveDate {
        if let Value::Date(d) = self {
            *d
        } else {
            NaiveDate::default()
        }
    }
}

/// Days since 1970-01-01.
pub(crate) fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// (year, month, day) from days since 1970-01-01 (H. Hinnant's civil_from_days).
fn civil(z: i32) -> (i32, u32, u32) {
    let z = z as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

/// Completed years up to a fixed day, by table: `last[y]` is the latest
/// day of birth that has completed `y` years by then (29 February falls
/// back to the 28th), so a day's years are found with a comparison or two
/// instead of a calendar conversion.
struct Anniversaries {
    to: i32,
    last: Vec<i32>,
}

impl Anniversaries {
    const YEARS: i32 = 150;

    fn new(to: NaiveDate) -> Anniversaries {
        let last = (0..=Self::YEARS + 1)
            .map(|y| {
                let year = to.year() - y;
                let day = (1..=to.day())
                    .rev()
                    .find_map(|d| NaiveDate::from_ymd_opt(year, to.month(), d))
                    .expect("a day of the month exists");
                days(day)
            })
            .collect();
        Anniversaries { to: days(to), last }
    }

    fn years(&self, z: i32) -> i64 {
        let d = self.to - z;
        if !(0..Self::YEARS * 365).contains(&d) {
            return between(DateFn::Years, z, self.to);
        }
        // Days over 365.25 is within one year of the truth, either way
        // (the calendar's leap days drift by less than two days in 150
        // years); one comparison each way corrects it, without a branch.
        let guess = (d as usize * 4) / 1461;
        guess as i64 - i64::from(z > self.last[guess]) + i64::from(z <= self.last[guess + 1])
    }
}

fn between(f: DateFn, a: i32, b: i32) -> i64 {
    match f {
        DateFn::Days => b as i64 - a as i64,
        DateFn::Months | DateFn::Years => {
            let (ya, ma, da) = civil(a);
            let (yb, mb, db) = civil(b);
            let months = (yb as i64 - ya as i64) * 12 + mb as i64 - ma as i64 - i64::from(db < da);
            if f == DateFn::Years {
                months.div_euclid(12)
            } else {
                months
            }
        }
    }
}

/// A value during evaluation: one for all rows, or a column.
#[derive(Debug, Clone)]
enum V {
    Const(Value),
    Col(Column),
}

/// A value with the rows where computing it failed.
#[derive(Debug, Clone)]
struct Out {
    v: V,
    err: Option<Arc<Vec<bool>>>,
}

impl Out {
    fn ok(v: V) -> Out {
        Out { v, err: None }
    }
    fn err(&self, i: usize) -> bool {
        self.err.as_ref().is_some_and(|e| e[i])
    }
}

impl V {
    fn bool(&self, i: usize) -> bool {
        match self {
            V::Const(Value::Bool(b)) => *b,
            V::Col(Column::Bool(v)) => v[i],
            _ => false,
        }
    }
    fn int(&self, i: usize) -> i64 {
        match self {
            V::Const(Value::Int(x)) => *x,
            V::Col(Column::Int(v)) => v[i],
            _ => 0,
        }
    }
    /// As f64: ints convert (numeric comparisons may mix types).
    fn num(&self, i: usize) -> f64 {
        match self {
            V::Const(Value::Int(x)) => *x as f64,
            V::Const(Value::Double(x)) => *x,
            V::Col(Column::Int(v)) => v[i] as f64,
            V::Col(Column::Double(v)) => v[i],
            _ => 0.0,
        }
    }
    fn date(&self, i: usize) -> i32 {
        match self {
            V::Const(Value::Date(d)) => days(*d),
            V::Col(Column::Date(v)) => v[i],
            _ => 0,
        }
    }
    fn str(&self, i: usize) -> &str {
        match self {
            V::Const(Value::String(s)) => s,
            V::Col(Column::Str(d, c)) => &d[c[i] as usize],
            _ => "",
        }
    }
    fn is_int(&self) -> bool {
        matches!(self, V::Const(Value::Int(_)) | V::Col(Column::Int(_)))
    }
}

/// A column's values or one value for every row: what the tight loops read.
enum Src<'a, T> {
    Many(&'a [T]),
    One(T),
}

impl V {
    fn ints(&self) -> Option<Src<'_, i64>> {
        match self {
            V::Col(Column::Int(v)) => Some(Src::Many(v)),
            V::Const(Value::Int(x)) => Some(Src::One(*x)),
            _ => None,
        }
    }
    fn floats(&self) -> Option<Src<'_, f64>> {
        match self {
            V::Col(Column::Double(v)) => Some(Src::Many(v)),
            V::Const(Value::Double(x)) => Some(Src::One(*x)),
            V::Const(Value::Int(x)) => Some(Src::One(*x as f64)),
            _ => None,
        }
    }
    fn bools(&self) -> Option<Src<'_, bool>> {
        match self {
            V::Col(Column::Bool(v)) => Some(Src::Many(v)),
            V::Const(Value::Bool(x)) => Some(Src::One(*x)),
            _ => None,
        }
    }
    fn date_src(&self) -> Option<Src<'_, i32>> {
        match self {
            V::Col(Column::Date(v)) => Some(Src::Many(v)),
            V::Const(Value::Date(d)) => Some(Src::One(days(*d))),
            _ => None,
        }
    }
}

/// `f` over two sources, one monomorphised loop per shape.
macro_rules! zip {
    ($l:expr, $r:expr, $n:expr, |$a:ident, $b:ident| $body:expr) => {
        match ($l, $r) {
            (Src::Many(x), Src::Many(y)) => x.iter().zip(y.iter()).map(|(&$a, &$b)| $body).collect::<Vec<_>>(),
            (Src::Many(x), Src::One($b)) => x.iter().map(|&$a| $body).collect::<Vec<_>>(),
            (Src::One($a), Src::Many(y)) => y.iter().map(|&$b| $body).collect::<Vec<_>>(),
            (Src::One($a), Src::One($b)) => vec![$body; $n],
        }
    };
}

/// A comparison of two sources of one ordered type.
macro_rules! compare {
    ($op:expr, $l:expr, $r:expr, $n:expr) => {
        match $op {
            Cmp::Eq => zip!($l, $r, $n, |a, b| a == b),
            Cmp::Ne => zip!($l, $r, $n, |a, b| a != b),
            Cmp::Lt => zip!($l, $r, $n, |a, b| a < b),
            Cmp::Le => zip!($l, $r, $n, |a, b| a <= b),
            Cmp::Gt => zip!($l, $r, $n, |a, b| a > b),
            Cmp::Ge => zip!($l, $r, $n, |a, b| a >= b),
        }
    };
}

/// (address, length) of an offsets run → each element's row.
type RowsByOffsets = Vec<(usize, usize, Arc<Vec<u32>>)>;

#[derive(Default)]
struct RowsCache(std::cell::RefCell<RowsByOffsets>);

impl RowsCache {
    fn of(&self, off: &[u32]) -> Arc<Vec<u32>> {
        let key = (off.as_ptr() as usize, off.len());
        if let Some((_, _, r)) = self.0.borrow().iter().find(|(p, l, _)| (*p, *l) == key) {
            return r.clone();
        }
        let r = Arc::new(parent_index(off));
        self.0.borrow_mut().push((key.0, key.1, r.clone()));
        r
    }
}

/// What a chunk's evaluation sees.
struct Frame<'a> {
    len: usize,
    inputs: &'a [Out],
    params: &'a [Value],
    clauses: Vec<Out>,
    today: Value,
    /// Comprehension variables, innermost last (flat element columns).
    locals: Vec<Out>,
    /// For a comprehension body: the frame around it and, per element, its row there.
    parent: Option<(&'a Frame<'a>, &'a [u32])>,
    /// Per list offsets seen in this chunk (by address), each element's row:
    /// lists derived from one another share their offsets.
    rows: &'a RowsCache,
}

fn or_masks(a: &Option<Arc<Vec<bool>>>, b: &Option<Arc<Vec<bool>>>) -> Option<Arc<Vec<bool>>> {
    match (a, b) {
        (None, None) => None,
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (Some(x), Some(y)) => Some(Arc::new(x.iter().zip(y.iter()).map(|(p, q)| *p || *q).collect())),
    }
}

fn mask(v: Vec<bool>) -> Option<Arc<Vec<bool>>> {
    if v.iter().any(|e| *e) {
        Some(Arc::new(v))
    } else {
        None
    }
}

fn col_bool(v: Vec<bool>) -> V {
    V::Col(Column::Bool(buf(v)))
}

impl Frame<'_> {
    fn var(&self, slot: Slot) -> Out {
        match slot {
            Slot::Local(d) if d < self.locals.len() => self.locals[self.locals.len() - 1 - d].clone(),
            _ => match self.parent {
                Some((outer, off)) => {
                    let shifted = match slot {
                        Slot::Local(d) => Slot::Local(d - self.locals.len()),
                        s => s,
                    };
                    let o = outer.var(shifted);
                    if matches!(o.v, V::Const(_)) && o.err.is_none() {
                        return o;
                    }
                    gather(&o, &self.rows.of(off))
                }
                None => match slot {
                    Slot::Input(i) => self.inputs[i].clone(),
                    Slot::Parameter(i) => Out::ok(V::Const(self.params[i].clone())),
                    Slot::Clause(i) => self.clauses[i].clone(),
                    Slot::Today => Out::ok(V::Const(self.today.clone())),
                    Slot::Local(_) => unreachable!("the checker binds every local"),
                },
            },
        }
    }

    fn eval(&self, e: &Expr) -> Out {
        let n = self.len;
        match &e.kind {
            Kind::Bool(b) => Out::ok(V::Const(Value::Bool(*b))),
            Kind::Int(i) => Out::ok(V::Const(Value::Int(*i))),
            Kind::Double(d) => Out::ok(V::Const(Value::Double(*d))),
            Kind::Str(s) => Out::ok(V::Const(Value::String(s.clone()))),
            Kind::Date(d) => Out::ok(V::Const(Value::Date(*d))),
            Kind::Var(slot) => self.var(*slot),
            Kind::Field(base, i) => {
                let b = self.eval(base);
                let v = match b.v {
                    V::Col(Column::Record(fields)) => V::Col(fields[*i].clone()),
                    V::Const(Value::Record(vals)) => V::Const(vals[*i].clone()),
                    other => other,
                };
                Out { v, err: b.err }
            }
            Kind::Not(x) => {
                let x = self.eval(x);
                let v = match &x.v {
                    V::Const(Value::Bool(b)) => V::Const(Value::Bool(!b)),
                    V::Col(Column::Bool(b)) => col_bool(b.iter().map(|x| !x).collect()),
                    v => col_bool((0..n).map(|i| !v.bool(i)).collect()),
                };
                Out { v, err: x.err }
            }
            Kind::Neg(x) => {
                let x = self.eval(x);
                if x.v.is_int() {
                    let mut err = vec![false; n];
                    let vals = (0..n)
                        .map(|i| {
                            x.v.int(i).checked_neg().unwrap_or_else(|| {
                                err[i] = true;
                                0
                            })
                        })
                        .collect();
                    Out {
                        v: V::Col(Column::Int(buf(vals))),
                        err: or_masks(&x.err, &mask(err)),
                    }
                } else {
                    Out {
                        v: V::Col(Column::Double(buf((0..n).map(|i| -x.v.num(i)).collect()))),
                        err: x.err,
                    }
                }
            }
            Kind::And(l, r) | Kind::Or(l, r) => {
                let and = matches!(e.kind, Kind::And(..));
                let (l, r) = (self.eval(l), self.eval(r));
                if let (None, None, Some(a), Some(b)) = (&l.err, &r.err, l.v.bools(), r.v.bools()) {
                    let v = if and {
                        zip!(a, b, n, |x, y| x & y)
                    } else {
                        zip!(a, b, n, |x, y| x | y)
                    };
                    return Out::ok(col_bool(v));
                }
                // The absorbing value (false for &&, true for ||) wins over an error.
                let absorbing = !and;
                let mut err = vec![false; n];
                let vals = (0..n)
                    .map(|i| {
                        let (le, re) = (l.err(i), r.err(i));
                        let (lv, rv) = (l.v.bool(i), r.v.bool(i));
                        if (!le && lv == absorbing) || (!re && rv == absorbing) {
                            absorbing
                        } else if le || re {
                            err[i] = true;
                            false
                        } else {
                            !absorbing
                        }
                    })
                    .collect();
                Out {
                    v: col_bool(vals),
                    err: mask(err),
                }
            }
            Kind::Arith(op, l, r) => {
                let (l, r) = (self.eval(l), self.eval(r));
                let inherited = or_masks(&l.err, &r.err);
                if e.ty == Ty::Int {
                    let mut err = vec![false; n];
                    let vals = (0..n)
                        .map(|i| {
                            let (a, b) = (l.v.int(i), r.v.int(i));
                            let res = match op {
                                Arith::Add => a.checked_add(b),
                                Arith::Sub => a.checked_sub(b),
                                Arith::Mul => a.checked_mul(b),
                                Arith::Div => a.checked_div(b),
                                Arith::Rem => a.checked_rem(b),
                            };
                            res.unwrap_or_else(|| {
                                err[i] = true;
                                0
                            })
                        })
                        .collect();
                    Out {
                        v: V::Col(Column::Int(buf(vals))),
                        err: or_masks(&inherited, &mask(err)),
                    }
                } else {
                    let f = |a: f64, b: f64| match op {
                        Arith::Add => a + b,
                        Arith::Sub => a - b,
                        Arith::Mul => a * b,
                        Arith::Div => a / b,
                        Arith::Rem => a % b,
                    };
                    let vals = match (l.v.floats(), r.v.floats()) {
                        (Some(a), Some(b)) => zip!(a, b, n, |x, y| f(x, y)),
                        _ => (0..n).map(|i| f(l.v.num(i), r.v.num(i))).collect(),
                    };
                    Out {
                        v: V::Col(Column::Double(buf(vals))),
                        err: inherited,
                    }
                }
            }
            Kind::Cmp(op, l, r) => {
                let ty = l.ty.clone();
                let (l, r) = (self.eval(l), self.eval(r));
                let err = or_masks(&l.err, &r.err);
                let ord = |o: std::cmp::Ordering| match op {
                    Cmp::Eq => o.is_eq(),
                    Cmp::Ne => o.is_ne(),
                    Cmp::Lt => o.is_lt(),
                    Cmp::Le => o.is_le(),
                    Cmp::Gt => o.is_gt(),
                    Cmp::Ge => o.is_ge(),
                };
                if let (Some(a), Some(b)) = (l.v.ints(), r.v.ints()) {
                    return Out {
                        v: col_bool(compare!(op, a, b, n)),
                        err,
                    };
                }
                if let (Some(a), Some(b)) = (l.v.floats(), r.v.floats()) {
                    return Out {
                        v: col_bool(compare!(op, a, b, n)),
                        err,
                    };
                }
                if let (Some(a), Some(b)) = (l.v.date_src(), r.v.date_src()) {
                    return Out {
                        v: col_bool(compare!(op, a, b, n)),
                        err,
                    };
                }
                let vals: Vec<bool> = match ty {
                    Ty::Int | Ty::Double => (0..n)
                        .map(|i| {
                            let (a, b) = (l.v.num(i), r.v.num(i));
                            match op {
                                Cmp::Eq => a == b,
                                Cmp::Ne => a != b,
                                Cmp::Lt => a < b,
                                Cmp::Le => a <= b,
                                Cmp::Gt => a > b,
                                Cmp::Ge => a >= b,
                            }
                        })
                        .collect(),
                    Ty::Bool => (0..n).map(|i| ord(l.v.bool(i).cmp(&r.v.bool(i)))).collect(),
                    Ty::String => match (&l.v, &r.v) {
                        // Equality against a literal: compare codes only.
                        (V::Col(Column::Str(dict, codes)), V::Const(Value::String(s)))
                        | (V::Const(Value::String(s)), V::Col(Column::Str(dict, codes)))
                            if matches!(op, Cmp::Eq | Cmp::Ne) =>
                        {
                            let code = dict.iter().position(|d| d == s).map(|c| c as u32);
                            let eq = matches!(op, Cmp::Eq);
                            codes.iter().map(|c| (Some(*c) == code) == eq).collect()
                        }
                        _ => (0..n).map(|i| ord(l.v.str(i).cmp(r.v.str(i)))).collect(),
                    },
                    _ => vec![false; n],
                };
                Out { v: col_bool(vals), err }
            }
            Kind::Cond(c, t, f) => {
                let (c, t, f) = (self.eval(c), self.eval(t), self.eval(f));
                let pick: Vec<bool> = (0..n).map(|i| c.v.bool(i)).collect();
                let err = mask(
                    (0..n)
                        .map(|i| c.err(i) || if pick[i] { t.err(i) } else { f.err(i) })
                        .collect(),
                );
                Out {
                    v: select(&pick, &t.v, &f.v, &e.ty, n),
                    err,
                }
            }
            Kind::In(x, list) => {
                let (x, list) = (self.eval(x), self.eval(list));
                let err = or_masks(&x.err, &list.err);
                let vals = match &list.v {
                    V::Const(Value::List(items)) => (0..n)
                        .map(|i| items.iter().any(|it| equal_const(&x.v, i, it)))
                        .collect(),
                    V::Col(Column::List(off, values)) => {
                        let values = V::Col((**values).clone());
                        (0..n)
                            .map(|i| (off[i] as usize..off[i + 1] as usize).any(|k| equal_at(&x.v, i, &values, k)))
                            .collect()
                    }
                    _ => vec![false; n],
                };
                Out { v: col_bool(vals), err }
            }
            Kind::ToInt(x) => {
                let x = self.eval(x);
                if x.v.is_int() {
                    return x;
                }
                let mut err = vec![false; n];
                let vals = (0..n)
                    .map(|i| {
                        let f = x.v.num(i);
                        // CEL: truncation toward zero; out of range is an error.
                        if f.is_finite() && f > i64::MIN as f64 && f < i64::MAX as f64 {
                            f as i64
                        } else {
                            err[i] = true;
                            0
                        }
                    })
                    .collect();
                Out {
                    v: V::Col(Column::Int(buf(vals))),
                    err: or_masks(&x.err, &mask(err)),
                }
            }
            Kind::ToDouble(x) => {
                let x = self.eval(x);
                let v = match &x.v {
                    V::Col(Column::Int(v)) => v.iter().map(|i| *i as f64).collect(),
                    V::Const(Value::Int(i)) => {
                        return Out {
                            v: V::Const(Value::Double(*i as f64)),
                            err: x.err,
                        }
                    }
                    _ => (0..n).map(|i| x.v.num(i)).collect(),
                };
                Out {
                    v: V::Col(Column::Double(buf(v))),
                    err: x.err,
                }
            }
            Kind::Between(f, a, b) => {
                let (a, b) = (self.eval(a), self.eval(b));
                let err = or_masks(&a.err, &b.err);
                let vals = match (&a.v, &b.v) {
                    // The usual case (an age on the decision date): the
                    // constant side's calendar date is computed once.
                    (V::Col(Column::Date(from)), V::Const(Value::Date(to))) if *f == DateFn::Years => {
                        let table = Anniversaries::new(*to);
                        from.iter().map(|z| table.years(*z)).collect()
                    }
                    (V::Col(Column::Date(from)), V::Const(Value::Date(to))) if *f != DateFn::Days => {
                        let (yb, mb, db) = (to.year() as i64, to.month() as i64, to.day());
                        from.iter()
                            .map(|z| {
                                let (ya, ma, da) = civil(*z);
                                let months = (yb - ya as i64) * 12 + mb - ma as i64 - i64::from(db < da);
                                if *f == DateFn::Years {
                                    months.div_euclid(12)
                                } else {
                                    months
                                }
                            })
                            .collect()
                    }
                    _ => (0..n).map(|i| between(*f, a.v.date(i), b.v.date(i))).collect(),
                };
                Out {
                    v: V::Col(Column::Int(buf(vals))),
                    err,
                }
            }
            Kind::Size(l) if matches!(l.kind, Kind::Filter(..)) => {
                // Counting what a filter keeps needs no filtered list.
                let Kind::Filter(list, body) = &l.kind else {
                    unreachable!()
                };
                let (off, inner, lerr) = self.list_parts(list);
                let keep = self.nested(&off, inner, body);
                let err = row_errors(&lerr, &keep.err, &off, self.rows);
                let counts = match (&keep.err, &keep.v) {
                    (None, V::Col(Column::Bool(b))) => count_per_row(&self.rows.of(&off), n, b)
                        .into_iter()
                        .map(i64::from)
                        .collect(),
                    _ => off
                        .windows(2)
                        .map(|w| {
                            (w[0] as usize..w[1] as usize)
                                .filter(|k| keep.v.bool(*k) && !keep.err(*k))
                                .count() as i64
                        })
                        .collect(),
                };
                Out {
                    v: V::Col(Column::Int(buf(counts))),
                    err,
                }
            }
            Kind::Size(l) => {
                let l = self.eval(l);
                let v = match &l.v {
                    V::Const(Value::List(items)) => V::Const(Value::Int(items.len() as i64)),
                    V::Col(Column::List(off, _)) => {
                        V::Col(Column::Int(buf(off.windows(2).map(|w| (w[1] - w[0]) as i64).collect())))
                    }
                    other => other.clone(),
                };
                Out { v, err: l.err }
            }
            Kind::Sum(l) => {
                let l = self.eval(l);
                let v = match &l.v {
                    V::Const(Value::List(items)) => V::Const(Value::Double(items.iter().map(Value::as_double).sum())),
                    V::Col(Column::List(off, values)) if matches!(**values, Column::Double(_)) => {
                        let Column::Double(v) = &**values else { unreachable!() };
                        // In element order, so each row's sum is the sequential one.
                        let mut sums = vec![0.0; off.len() - 1];
                        for (r, x) in self.rows.of(off).iter().zip(v.iter()) {
                            sums[*r as usize] += *x;
                        }
                        V::Col(Column::Double(buf(sums)))
                    }
                    V::Col(Column::List(off, values)) => {
                        let values = V::Col((**values).clone());
                        V::Col(Column::Double(buf(off
                            .windows(2)
                            .map(|w| {
                                let mut total = 0.0;
                                for k in w[0] as usize..w[1] as usize {
                                    total += values.num(k);
                                }
                                total
                            })
                            .collect())))
                    }
                    other => other.clone(),
                };
                Out { v, err: l.err }
            }
            Kind::List(items) => {
                let outs: Vec<Out> = items.iter().map(|x| self.eval(x)).collect();
                if outs.iter().all(|o| matches!(o.v, V::Const(_)) && o.err.is_none()) {
                    let vals = outs
                        .into_iter()
                        .map(|o| match o.v {
                            V::Const(c) => c,
                            V::Col(_) => unreachable!(),
                        })
                        .collect();
                    return Out::ok(V::Const(Value::List(Arc::new(vals))));
                }
                // Row by row: row i holds each item's value at i.
                let k = outs.len();
                let offsets: Vec<u32> = (0..=n).map(|i| (i * k) as u32).collect();
                let index: Vec<(usize, usize)> = (0..n).flat_map(|i| (0..k).map(move |j| (j, i))).collect();
                let elem = match &e.ty {
                    Ty::List(t) => (**t).clone(),
                    t => t.clone(),
                };
                let values = interleave(&outs, &index, &elem);
                let err = mask((0..n).map(|i| outs.iter().any(|o| o.err(i))).collect());
                Out {
                    v: V::Col(Column::List(buf(offsets), Box::new(values))),
                    err,
                }
            }
            Kind::Quantify(q, list, body) => {
                let (off, inner, lerr) = self.list_parts(list);
                let body = self.nested(&off, inner, body);
                if let (None, None, V::Col(Column::Bool(b))) = (&lerr, &body.err, &body.v) {
                    let rows = self.rows.of(&off);
                    let vals = match q {
                        Quantifier::Exists => any_per_row(&rows, n, b),
                        Quantifier::All => {
                            let not: Vec<bool> = b.iter().map(|x| !x).collect();
                            any_per_row(&rows, n, &not).into_iter().map(|x| !x).collect()
                        }
                        Quantifier::ExistsOne => count_per_row(&rows, n, b).into_iter().map(|c| c == 1).collect(),
                    };
                    return Out::ok(col_bool(vals));
                }
                let mut err = vec![false; n];
                let vals = (0..n)
                    .map(|i| {
                        if lerr.as_ref().is_some_and(|m| m[i]) {
                            err[i] = true;
                            return false;
                        }
                        let range = off[i] as usize..off[i + 1] as usize;
                        let (mut t, mut f, mut errs) = (0usize, 0usize, false);
                        for k in range {
                            if body.err(k) {
                                errs = true;
                            } else if body.v.bool(k) {
                                t += 1;
                            } else {
                                f += 1;
                            }
                        }
                        match q {
                            Quantifier::Exists if t > 0 => true,
                            Quantifier::All if f > 0 => false,
                            _ if errs => {
                                err[i] = true;
                                false
                            }
                            Quantifier::Exists => false,
                            Quantifier::All => true,
                            Quantifier::ExistsOne => t == 1,
                        }
                    })
                    .collect();
                Out {
                    v: col_bool(vals),
                    err: mask(err),
                }
            }
            Kind::Map(list, body) => {
                let (off, inner, lerr) = self.list_parts(list);
                let body = self.nested(&off, inner, body);
                let err = row_errors(&lerr, &body.err, &off, self.rows);
                let elem = match &e.ty {
                    Ty::List(t) => (**t).clone(),
                    t => t.clone(),
                };
                let values = materialize(&body.v, *off.last().unwrap_or(&0) as usize, &elem);
                Out {
                    v: V::Col(Column::List(off.clone(), Box::new(values))),
                    err,
                }
            }
            Kind::Filter(list, body) => {
                let (off, inner, lerr) = self.list_parts(list);
                let keep = self.nested(&off, inner.clone(), body);
                let err = row_errors(&lerr, &keep.err, &off, self.rows);
                let mut offsets = vec![0u32];
                let mut picked = Vec::new();
                for i in 0..n {
                    for k in off[i] as usize..off[i + 1] as usize {
                        if keep.v.bool(k) && !keep.err(k) {
                            picked.push(k as u32);
                        }
                    }
                    offsets.push(picked.len() as u32);
                }
                let values = take(&inner, &picked);
                Out {
                    v: V::Col(Column::List(buf(offsets), Box::new(values))),
                    err,
                }
            }
        }
    }

    /// A list's offsets, its flat element column and its row errors.
    fn list_parts(&self, list: &Expr) -> (Buf<u32>, Column, Option<Arc<Vec<bool>>>) {
        let l = self.eval(list);
        let n = self.len;
        match l.v {
            V::Col(Column::List(off, values)) => (off, *values, l.err),
            V::Const(Value::List(items)) => {
                // A literal list: the same elements for every row.
                let k = items.len();
                let offsets: Buf<u32> = (0..=n).map(|i| (i * k) as u32).collect();
                let elem = match &list.ty {
                    Ty::List(t) => (**t).clone(),
                    t => t.clone(),
                };
                let consts: Vec<Out> = items.iter().map(|v| Out::ok(V::Const(v.clone()))).collect();
                let index: Vec<(usize, usize)> = (0..n).flat_map(|_| (0..k).map(|j| (j, 0))).collect();
                (offsets, interleave(&consts, &index, &elem), l.err)
            }
            _ => (buf(vec![0; n + 1]), Column::Int(buf(Vec::new())), l.err),
        }
    }

    /// Evaluates a comprehension's body over the flat elements of a list
    /// whose rows are `off`.
    fn nested(&self, off: &[u32], elements: Column, body: &Expr) -> Out {
        let frame = Frame {
            len: *off.last().unwrap_or(&0) as usize,
            inputs: self.inputs,
            params: self.params,
            clauses: Vec::new(),
            today: self.today.clone(),
            locals: vec![Out::ok(V::Col(elements))],
            parent: Some((self, off)),
            rows: self.rows,
        };
        frame.eval(body)
    }
}

/// A row fails when its list failed or any of its elements did.
fn row_errors(
    list: &Option<Arc<Vec<bool>>>,
    elements: &Option<Arc<Vec<bool>>>,
    off: &[u32],
    rows: &RowsCache,
) -> Option<Arc<Vec<bool>>> {
    let Some(el) = elements else { return list.clone() };
    let per_row = any_per_row(&rows.of(off), off.len() - 1, el);
    or_masks(list, &mask(per_row))
}

/// For each element of a list column, the row it belongs to.
fn parent_index(off: &[u32]) -> Vec<u32> {
    // Branch-free: mark where each row after the first starts, then a
    // running sum (rows are short, so a loop per row mispredicts).
    let total = *off.last().unwrap_or(&0) as usize;
    if off.len() < 2 {
        return Vec::new();
    }
    let mut p = vec![0u32; total + 1];
    for &o in &off[1..off.len() - 1] {
        p[o as usize] += 1;
    }
    let mut acc = 0;
    for x in p.iter_mut() {
        acc += *x;
        *x = acc;
    }
    p.truncate(total);
    p
}

/// Per row, whether any of its elements is true.
fn any_per_row(rows: &[u32], n: usize, b: &[bool]) -> Vec<bool> {
    let mut out = vec![false; n];
    for (r, x) in rows.iter().zip(b) {
        out[*r as usize] |= *x;
    }
    out
}

/// Per row, how many of its elements are true.
fn count_per_row(rows: &[u32], n: usize, b: &[bool]) -> Vec<u32> {
    let mut out = vec![0u32; n];
    for (r, x) in rows.iter().zip(b) {
        out[*r as usize] += u32::from(*x);
    }
    out
}

/// An outer value seen from inside a comprehension: row `index[k]` for element `k`.
fn gather(o: &Out, index: &[u32]) -> Out {
    let err = o
        .err
        .as_ref()
        .map(|m| Arc::new(index.iter().map(|i| m[*i as usize]).collect()));
    let v = match &o.v {
        V::Const(c) => V::Const(c.clone()),
        V::Col(c) => V::Col(take(c, index)),
    };
    Out { v, err }
}

/// Rows of a column by index.
fn take(c: &Column, index: &[u32]) -> Column {
    match c {
        Column::Bool(v) => Column::Bool(buf(index.iter().map(|i| v[*i as usize]).collect())),
        Column::Int(v) => Column::Int(buf(index.iter().map(|i| v[*i as usize]).collect())),
        Column::Double(v) => Column::Double(buf(index.iter().map(|i| v[*i as usize]).collect())),
        Column::Date(v) => Column::Date(buf(index.iter().map(|i| v[*i as usize]).collect())),
        Column::Str(d, codes) => Column::Str(d.clone(), index.iter().map(|i| codes[*i as usize]).collect()),
        Column::Record(fields) => Column::Record(Arc::new(fields.iter().map(|f| take(f, index)).collect())),
        Column::List(off, values) => {
            let mut offsets = vec![0u32];
            let mut inner = Vec::new();
            for i in index {
                inner.extend(off[*i as usize]..off[*i as usize + 1]);
                offsets.push(inner.len() as u32);
            }
            Column::List(buf(offsets), Box::new(take(values, &inner)))
        }
    }
}

/// A value as a column of `n` rows.
fn materialize(v: &V, n: usize, ty: &Ty) -> Column {
    match v {
        V::Col(c) => c.clone(),
        V::Const(c) => {
            let one = Out::ok(V::Const(c.clone()));
            interleave(std::slice::from_ref(&one), &vec![(0, 0); n], ty)
        }
    }
}

/// Builds a column from (which value, which row of it) pairs.
fn interleave(outs: &[Out], index: &[(usize, usize)], ty: &Ty) -> Column {
    match ty {
        Ty::Bool => Column::Bool(buf(index.iter().map(|(j, i)| outs[*j].v.bool(*i)).collect())),
        Ty::Int => Column::Int(buf(index.iter().map(|(j, i)| outs[*j].v.int(*i)).collect())),
        Ty::Double => Column::Double(buf(index.iter().map(|(j, i)| outs[*j].v.num(*i)).collect())),
        Ty::Date => Column::Date(buf(index.iter().map(|(j, i)| outs[*j].v.date(*i)).collect())),
        Ty::String => Column::strings(&index.iter().map(|(j, i)| outs[*j].v.str(*i)).collect::<Vec<_>>()),
        Ty::List(_) | Ty::Record(_) => {
            // Lists of lists and records are built only from columns.
            match outs.first().map(|o| &o.v) {
                Some(V::Col(c)) => take(c, &index.iter().map(|(_, i)| *i as u32).collect::<Vec<_>>()),
                _ => Column::Int(buf(Vec::new())),
            }
        }
    }
}

fn select(pick: &[bool], t: &V, f: &V, ty: &Ty, n: usize) -> V {
    let outs = [Out::ok(t.clone()), Out::ok(f.clone())];
    let index: Vec<(usize, usize)> = (0..n).map(|i| (if pick[i] { 0 } else { 1 }, i)).collect();
    V::Col(interleave(&outs, &index, ty))
}

fn equal_const(x: &V, i: usize, c: &Value) -> bool {
    match c {
        Value::Int(k) => x.int(i) == *k,
        Value::Bool(b) => x.bool(i) == *b,
        Value::String(s) => x.str(i) == &**s,
        Value::Date(d) => x.date(i) == days(*d),
        Value::Double(d) => x.num(i) == *d,
        _ => false,
    }
}

fn equal_at(x: &V, i: usize, values: &V, k: usize) -> bool {
    match values {
        V::Col(Column::Int(_)) => x.int(i) == values.int(k),
        V::Col(Column::Bool(_)) => x.bool(i) == values.bool(k),
        V::Col(Column::Str(..)) => x.str(i) == values.str(k),
        V::Col(Column::Date(_)) => x.date(i) == values.date(k),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anniversaries_count_completed_years_as_the_calendar_does() {
        for to in ["2016-01-01", "2016-02-29", "2017-02-28", "2017-03-01", "2020-12-31"] {
            let to = NaiveDate::parse_from_str(to, "%Y-%m-%d").unwrap();
            let table = Anniversaries::new(to);
            for z in (days(to) - 200 * 366)..(days(to) + 400) {
                assert_eq!(table.years(z), between(DateFn::Years, z, days(to)), "day {z} to {to}");
            }
        }
    }

    #[test]
    fn civil_dates_match_chrono() {
        for z in (-800_000..800_000).step_by(997) {
            let d = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(z as i64);
            assert_eq!(civil(z), (d.year(), d.month(), d.day()), "day {z}");
            assert_eq!(days(d), z);
        }
    }
}
