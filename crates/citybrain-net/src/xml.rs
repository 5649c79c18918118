//! A small streaming layer over quick-xml shared by every SUMO reader:
//! plain or gzip files, size and depth limits, attributes as a map, and
//! errors that name the file, the line and what was wrong.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Largest input file accepted (uncompressed bytes read).
pub const MAX_FILE_BYTES: u64 = 4 << 30;
/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// An input error with its place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct XmlError {
    pub file: PathBuf,
    /// 1-based line; 0 when unknown (e.g. the file could not be opened).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

/// One start (or empty) element: its name, attributes and line.
#[derive(Debug, Clone)]
pub struct Element {
    pub name: String,
    pub attrs: HashMap<String, String>,
    pub line: usize,
    /// Nesting depth (the root element is 1).
    pub depth: usize,
}

/// What the reader yields.
#[derive(Debug, Clone)]
pub enum Item {
    Start(Element),
    End { name: String, depth: usize },
}

/// Newline offsets seen by the byte reader but not yet passed by the parser:
/// turns parser positions into line numbers in constant memory.
#[derive(Default)]
struct Lines {
    read: u64,
    pending: VecDeque<u64>,
    passed: usize,
}

impl Lines {
    fn line_at(&mut self, pos: u64) -> usize {
        while self.pending.front().is_some_and(|&nl| nl < pos) {
            self.pending.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

struct Counting<R> {
    inner: R,
    lines: Rc<RefCell<Lines>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut l = self.lines.borrow_mut();
        let base = l.read;
        for (i, b) in buf[..n].iter().enumerate() {
            if *b == b'\n' {
                l.pending.push_back(base + i as u64);
            }
        }
        l.read += n as u64;
        Ok(n)
    }
}

/// A streaming reader of one XML file.
pub struct XmlFile {
    path: PathBuf,
    reader: Reader<BufReader<Counting<Box<dyn Read>>>>,
    lines: Rc<RefCell<Lines>>,
    buf: Vec<u8>,
    depth: usize,
    pending_end: Option<(String, usize)>,
}

struct Limited<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("file is larger than the 4 GiB limit"));
        }
        let max = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

impl XmlFile {
    /// Opens a file; `.gz` files are decompressed on the fly.
    pub fn open(path: impl AsRef<Path>) -> Result<XmlFile, XmlError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| XmlError {
            file: path.clone(),
            line: 0,
            message: format!("cannot open: {e}"),
        })?;
        let raw: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        Ok(Self::from_reader(
            path,
            Box::new(Limited {
                inner: raw,
                left: MAX_FILE_BYTES,
            }),
        ))
    }

    /// Reads XML from memory (tests, embedded data); `name` is used in errors.
    pub fn from_str(name: &str, text: &str) -> XmlFile {
        Self::from_reader(
            PathBuf::from(name),
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
        )
    }

    fn from_reader(path: PathBuf, r: Box<dyn Read>) -> XmlFile {
        let lines = Rc::new(RefCell::new(Lines::default()));
        let counting = Counting {
            inner: r,
            lines: lines.clone(),
        };
        let mut reader = Reader::from_reader(BufReader::with_capacity(1 << 16, counting));
        reader.config_mut().trim_text(true);
        XmlFile {
            path,
            reader,
            lines,
            buf: Vec::new(),
            depth: 0,
            pending_end: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An error at a line.
    pub fn error(&self, line: usize, message: impl Into<String>) -> XmlError {
        XmlError {
            file: self.path.clone(),
            line,
            message: message.into(),
        }
    }

    /// The next element start or end; None at the end of the document.
    pub fn next_item(&mut self) -> Result<Option<Item>, XmlError> {
        if let Some((name, depth)) = self.pending_end.take() {
            self.depth -= 1;
            return Ok(Some(Item::End { name, depth }));
        }
        loop {
            self.buf.clear();
            let ev = self.reader.read_event_into(&mut self.buf);
            // Disjoint fields: the event borrows `buf`, the position is the reader's.
            let pos = self.reader.buffer_position();
            let line = self.lines.borrow_mut().line_at(pos.saturating_sub(1));
            let ev = match ev {
                Ok(ev) => ev.into_owned(),
                Err(e) => return Err(self.error(line, format!("malformed XML: {e}"))),
            };
            match ev {
                Event::Start(s) => return self.start(&s, line, false).map(Some),
                Event::Empty(s) => return self.start(&s, line, true).map(Some),
                Event::End(e) => {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    let depth = self.depth;
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(Some(Item::End { name, depth }));
                }
                Event::Eof => {
                    if self.depth != 0 {
                        return Err(self.error(line, "unexpected end of file (an element is not closed)"));
                    }
                    return Ok(None);
                }
                _ => {}
            }
        }
    }

    fn start(&mut self, s: &BytesStart<'_>, line: usize, empty: bool) -> Result<Item, XmlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(line, format!("elements nest deeper than {MAX_DEPTH} levels")));
        }
        let el = self.element(s, line)?;
        if empty {
            self.pending_end = Some((el.name.clone(), self.depth));
        }
        Ok(Item::Start(el))
    }

    fn element(&self, s: &BytesStart<'_>, line: usize) -> Result<Element, XmlError> {
        let name = String::from_utf8_lossy(s.name().as_ref()).into_owned();
        let mut attrs = HashMap::new();
        for a in s.attributes() {
            let a = a.map_err(|e| self.error(line, format!("<{name}>: malformed attribute: {e}")))?;
            let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
            let value = a
                .unescape_value()
                .map_err(|e| self.error(line, format!("<{name} {key}>: bad value: {e}")))?
                .into_owned();
            attrs.insert(key, value);
        }
        Ok(Element {
            name,
            attrs,
            line,
            depth: self.depth,
        })
    }
}

impl Element {
    /// A required attribute.
    pub fn req(&self, f: &XmlFile, key: &str) -> Result<&str, XmlError> {
        self.attrs
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| f.error(self.line, format!("<{}> needs a '{key}' attribute", self.name)))
    }

    pub fn opt(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }

    /// A required number.
    pub fn num(&self, f: &XmlFile, key: &str) -> Result<f64, XmlError> {
        let v = self.req(f, key)?;
        parse_num(v).ok_or_else(|| f.error(self.line, format!("<{} {key}=\"{v}\">: not a number", self.name)))
    }

    /// An optional number (None when absent; an error when present but bad).
    pub fn opt_num(&self, f: &XmlFile, key: &str) -> Result<Option<f64>, XmlError> {
        match self.opt(key) {
            None => Ok(None),
            Some(v) => parse_num(v)
                .map(Some)
                .ok_or_else(|| f.error(self.line, format!("<{} {key}=\"{v}\">: not a number", self.name))),
        }
    }
}

fn parse_num(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_depth_and_errors() {
        let mut f = XmlFile::from_str("t.xml", "<a>\n  <b x=\"1\"/>\n  <c>\n  </c>\n</a>\n");
        let mut seen = Vec::new();
        while let Some(i) = f.next_item().unwrap() {
            if let Item::Start(e) = i {
                seen.push((e.name, e.line, e.depth));
            }
        }
        assert_eq!(seen, vec![("a".into(), 1, 1), ("b".into(), 2, 2), ("c".into(), 3, 2)]);
        let mut bad = XmlFile::from_str("bad.xml", "<a>\n<b>\n</a>");
        let err = loop {
            match bad.next_item() {
                Err(e) => break e,
                Ok(None) => panic!("no error"),
                Ok(Some(_)) => {}
            }
        };
        assert!(err.to_string().starts_with("bad.xml:"), "{err}");
        let deep = format!("{}{}", "<a>".repeat(70), "</a>".repeat(70));
        let mut d = XmlFile::from_str("deep.xml", &deep);
        let err = loop {
            match d.next_item() {
                Err(e) => break e,
                Ok(None) => panic!("no error"),
                Ok(Some(_)) => {}
            }
        };
        assert!(err.message.contains("nest deeper"));
    }
}
