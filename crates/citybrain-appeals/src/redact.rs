//! Personal data out of everything public, and moderation.
//!
//! Redaction replaces what identifies a person: resident ID numbers (18
//! characters, GB 11643), mobile and landline numbers, e-mail addresses,
//! and the requester's own name where the text repeats it. Chinese text has
//! no spaces, so digit runs are delimited by "not a digit" rather than by
//! word boundaries.

use std::sync::LazyLock;

use regex::Regex;

static ID_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(^|[^0-9])([1-9][0-9]{16}[0-9Xx])($|[^0-9A-Za-z])").expect("a regex"));
static MOBILE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(^|[^0-9])((?:\+?86[- ]?)?1[3-9][0-9][- ]?[0-9]{4}[- ]?[0-9]{4})($|[^0-9])").expect("a regex")
});
static LANDLINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(^|[^0-9])(0[1-9][0-9]{1,2}[- ]?[0-9]{7,8})($|[^0-9])").expect("a regex"));
static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").expect("a regex"));

/// Replaces group 2 of every match of `re` (groups 1 and 3 are the delimiters).
fn replace_delimited(text: &str, re: &Regex, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut at = 0;
    // Matches may share a delimiter ("138… 139…"): search again from the
    // end of each number, not of its trailing delimiter.
    while let Some(c) = re.captures_at(text, at) {
        let m = c.get(2).expect("group 2");
        out.push_str(&text[last..m.start()]);
        out.push_str(with);
        last = m.end();
        at = m.end();
    }
    out.push_str(&text[last..]);
    out
}

/// The text as the public may read it.
pub fn redact(text: &str, names: &[&str]) -> String {
    let mut t = replace_delimited(text, &ID_NUMBER, "[ID number]");
    t = replace_delimited(&t, &MOBILE, "[phone]");
    t = replace_delimited(&t, &LANDLINE, "[phone]");
    t = EMAIL.replace_all(&t, "[e-mail]").into_owned();
    for name in names {
        let name = name.trim();
        // One character is too little to be sure it is the name.
        if name.chars().count() >= 2 {
            t = t.replace(name, "[name]");
        }
    }
    t
}

/// The first blocked word the text holds (case-insensitive), if any.
pub fn blocked_word<'a>(text: &str, blocked: &'a [String]) -> Option<&'a str> {
    let lower = text.to_lowercase();
    blocked
        .iter()
        .find(|w| !w.is_empty() && lower.contains(&w.to_lowercase()))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_phones_emails_and_names_are_removed() {
        let t = "我是张伟，身份证110105199003071234，电话13812345678，座机010-62345678，邮箱zw@example.cn。路灯不亮。";
        let r = redact(t, &["张伟"]);
        assert_eq!(
            r,
            "我是[name]，身份证[ID number]，电话[phone]，座机[phone]，邮箱[e-mail]。路灯不亮。"
        );
    }

    #[test]
    fn numbers_that_are_not_personal_stay() {
        let t = "Pole 12 on Zhongshan Road, out since 2026-12-01; bus 328.";
        assert_eq!(redact(t, &[]), t);
        // Two phone numbers in a row, one space apart.
        assert_eq!(redact("13812345678 13987654321", &[]), "[phone] [phone]");
        assert_eq!(redact("+86 138-1234-5678", &[]), "[phone]");
    }

    #[test]
    fn blocked_words_are_found_whatever_their_case() {
        let blocked = vec!["Idiot".to_string()];
        assert_eq!(blocked_word("you IDIOTS", &blocked), Some("Idiot"));
        assert_eq!(blocked_word("a fine street", &blocked), None);
    }
}
