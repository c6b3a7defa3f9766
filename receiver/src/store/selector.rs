//! PromQL series selectors (`up`, `{job="a"}`, `http_requests{code=~"5..", path!=""}`), as the
//! `match[]` parameters of Prometheus' HTTP API carry them.

use crate::tsdb::Matcher;

/// Parses a series selector into matchers; a metric name becomes a `__name__` equality.
pub fn parse(selector: &str) -> Result<Vec<Matcher>, String> {
    let mut p = Parser {
        s: selector.trim(),
        pos: 0,
    };
    let mut matchers = Vec::new();
    let name = p.identifier(true);
    if !name.is_empty() {
        matchers.push(Matcher::Equal("__name__".into(), name.to_string()));
    }
    p.skip_spaces();
    if p.eat('{') {
        loop {
            p.skip_spaces();
            if p.eat('}') {
                break;
            }
            let label = p.identifier(false);
            if label.is_empty() {
                return Err(p.error("a label name"));
            }
            p.skip_spaces();
            let op = p.operator().ok_or_else(|| p.error("one of = != =~ !~"))?;
            p.skip_spaces();
            let value = p.string()?;
            let regex_error = |e: regex::Error| format!("{label}{op}{value:?}: {e}");
            matchers.push(match op {
                "=" => Matcher::Equal(label.to_string(), value),
                "!=" => Matcher::NotEqual(label.to_string(), value),
                "=~" => Matcher::regex(label, &value).map_err(regex_error)?,
                _ => Matcher::not_regex(label, &value).map_err(regex_error)?,
            });
            p.skip_spaces();
            if p.eat(',') {
                continue;
            }
            if !p.eat('}') {
                return Err(p.error("',' or '}'"));
            }
            break;
        }
    }
    p.skip_spaces();
    if p.pos != p.s.len() {
        return Err(p.error("the end of the selector"));
    }
    if matchers.is_empty() {
        return Err(format!(
            "{selector:?}: a selector needs a metric name or a matcher"
        ));
    }
    Ok(matchers)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn error(&self, wanted: &str) -> String {
        format!(
            "selector {:?}: expected {wanted} at offset {}",
            self.s, self.pos
        )
    }

    fn skip_spaces(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, c: char) -> bool {
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// A metric name (`colons` allowed) or label name; empty when there is none.
    fn identifier(&mut self, colons: bool) -> &'a str {
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| {
                let ok = c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
                !(ok || (i > 0 && c.is_ascii_digit()))
            })
            .map_or(rest.len(), |(i, _)| i);
        self.pos += len;
        &rest[..len]
    }

    fn operator(&mut self) -> Option<&'static str> {
        for op in ["=~", "!~", "!=", "="] {
            if self.rest().starts_with(op) {
                self.pos += op.len();
                return Some(op);
            }
        }
        None
    }

    /// A double-, single- or back-quoted string; the first two take Go's escapes.
    fn string(&mut self) -> Result<String, String> {
        let quote = self
            .rest()
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\'' | '`'))
            .ok_or_else(|| self.error("a quoted value"))?;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos += i + 1;
                return Ok(out);
            }
            if c == '\\' && quote != '`' {
                let (_, e) = chars.next().ok_or_else(|| self.error("an escape"))?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' | '"' | '\'' => out.push(e),
                    // Regexes keep their own escapes (`\.`, `\d`).
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
                continue;
            }
            out.push(c);
        }
        Err(self.error("a closing quote"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::Labels;

    fn matches(selector: &str, labels: &[(&str, &str)]) -> bool {
        let l = Labels::from_strs(labels);
        parse(selector).unwrap().iter().all(|m| m.matches(&l))
    }

    #[test]
    fn selectors_as_promql_writes_them() {
        let up = [("__name__", "up"), ("job", "api.1"), ("code", "503")];
        assert!(matches("up", &up));
        assert!(matches(r#"up{job="api.1"}"#, &up));
        assert!(matches(r#"{__name__="up", code=~"5.."}"#, &up));
        assert!(matches(r#"up{ job != "web" , code !~ '4..' , }"#, &up));
        assert!(matches(r#"up{job=~"api\\.1"}"#, &up));
        assert!(matches("job:up:rate5m{}", &[("__name__", "job:up:rate5m")]));
        assert!(matches(r#"{job=`api.1`}"#, &up));
        assert!(!matches(r#"up{job="web"}"#, &up));
        assert!(!matches(r#"{code=~"5"}"#, &up), "regexes are anchored");
    }

    #[test]
    fn malformed_selectors_say_where() {
        for bad in [
            "",
            "{}",
            "up{",
            r#"up{job}"#,
            r#"up{job="a""#,
            r#"up{job=a}"#,
            r#"up{job="a" code="b"}"#,
            r#"up{job=~"("}"#,
            "up extra",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
        let e = parse(r#"up{job=a}"#).unwrap_err();
        assert!(e.contains("offset 7"), "{e}");
    }
}
