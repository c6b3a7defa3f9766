//! Label matchers as PromQL and the remote-read and StoreAPI protocols define them: `=`, `!=`,
//! `=~`, `!~`, where an absent label has the value `""` and a regular expression must match the
//! whole value.

use regex::Regex;

use super::Labels;

/// A label matcher.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// `name="value"`.
    Equal(String, String),
    /// `name!="value"`.
    NotEqual(String, String),
    /// `name=~"regex"`, anchored at both ends.
    Regex(String, Regex),
    /// `name!~"regex"`, anchored at both ends.
    NotRegex(String, Regex),
}

impl Matcher {
    /// `name=~pattern`; the pattern is anchored as Prometheus anchors it.
    pub fn regex(name: &str, pattern: &str) -> Result<Matcher, regex::Error> {
        Ok(Matcher::Regex(name.to_string(), anchored(pattern)?))
    }

    /// `name!~pattern`; the pattern is anchored as Prometheus anchors it.
    pub fn not_regex(name: &str, pattern: &str) -> Result<Matcher, regex::Error> {
        Ok(Matcher::NotRegex(name.to_string(), anchored(pattern)?))
    }

    /// The label name the matcher tests.
    pub fn name(&self) -> &str {
        match self {
            Matcher::Equal(n, _)
            | Matcher::NotEqual(n, _)
            | Matcher::Regex(n, _)
            | Matcher::NotRegex(n, _) => n,
        }
    }

    /// Whether a label value (`""` for an absent label) satisfies the matcher.
    pub fn matches_value(&self, value: &str) -> bool {
        match self {
            Matcher::Equal(_, v) => value == v,
            Matcher::NotEqual(_, v) => value != v,
            Matcher::Regex(_, re) => re.is_match(value),
            Matcher::NotRegex(_, re) => !re.is_match(value),
        }
    }

    /// Whether a label set satisfies the matcher.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(self.name()).unwrap_or(""))
    }
}

fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_follow_promql() {
        let l = Labels::from_strs(&[("__name__", "http_requests"), ("job", "api-1")]);
        let yes = [
            Matcher::Equal("job".into(), "api-1".into()),
            Matcher::NotEqual("job".into(), "api".into()),
            Matcher::regex("job", "api-.*").unwrap(),
            Matcher::regex("job", "api-1|web").unwrap(),
            Matcher::not_regex("job", "api").unwrap(),
            // An absent label is "": it equals "" and matches a regex that accepts "".
            Matcher::Equal("missing".into(), String::new()),
            Matcher::regex("missing", ".*").unwrap(),
        ];
        for m in &yes {
            assert!(m.matches(&l), "{m:?}");
        }
        let no = [
            Matcher::regex("job", "api").unwrap(),
            Matcher::regex("job", "pi-1").unwrap(),
            Matcher::not_regex("job", "api-.*").unwrap(),
            Matcher::regex("missing", ".+").unwrap(),
        ];
        for m in &no {
            assert!(!m.matches(&l), "{m:?}");
        }
        assert!(Matcher::regex("job", "(").is_err());
    }
}
